//! `TenantStore`: one row per tenant, unique on the GHL location.
//!
//! Every message a worker handles and every webhook the ingress takes reads its tenant, so
//! tenants read by id or location are kept in memory for [`TENANT_TTL`] (issue 17: a read and
//! a JSON decode of the settings per message). A write through this store (`upsert`,
//! `set_active`, `apply_lifecycle`: `tenants add`, an install, an uninstall, a pause) empties
//! the cache at once; a write by another process is seen within the TTL.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};

use domain::{LocationId, Tenant, TenantId};
use ports::StoreError;
use ports::store::TenantStore;

use crate::Store;
use crate::entity::tenants::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::{self, json, micros, now};

/// How long a tenant read is used before it is read again.
pub const TENANT_TTL: Duration = Duration::from_secs(5);

/// Tenants by id and by location, each with the moment it was read.
#[derive(Default)]
pub(crate) struct TenantCache {
    entries: Mutex<TenantEntries>,
}

#[derive(Default)]
struct TenantEntries {
    by_id: HashMap<String, (Instant, Tenant)>,
    by_location: HashMap<String, (Instant, Tenant)>,
}

impl TenantCache {
    fn entries(&self) -> MutexGuard<'_, TenantEntries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn by_id(&self, id: &TenantId) -> Option<Tenant> {
        let e = self.entries();
        let (at, t) = e.by_id.get(id.as_str())?;
        (at.elapsed() < TENANT_TTL).then(|| t.clone())
    }

    fn by_location(&self, location: &LocationId) -> Option<Tenant> {
        let e = self.entries();
        let (at, t) = e.by_location.get(location.as_str())?;
        (at.elapsed() < TENANT_TTL).then(|| t.clone())
    }

    fn put(&self, tenant: &Tenant) {
        let mut e = self.entries();
        if e.by_id.len() >= 10_000 {
            e.by_id.clear();
            e.by_location.clear();
        }
        let now = Instant::now();
        e.by_id
            .insert(tenant.id.as_str().to_owned(), (now, tenant.clone()));
        e.by_location.insert(
            tenant.location_id.as_str().to_owned(),
            (now, tenant.clone()),
        );
    }

    /// After any write: the next read goes to the database.
    fn clear(&self) {
        let mut e = self.entries();
        e.by_id.clear();
        e.by_location.clear();
    }
}

#[async_trait]
impl TenantStore for Store {
    #[tracing::instrument(skip_all, fields(tenant = %id))]
    async fn get(&self, id: &TenantId) -> Result<Tenant, StoreError> {
        if let Some(t) = self.tenant_cache().by_id(id) {
            return Ok(t);
        }
        let tenant = self.read_tenant(id).await?;
        self.tenant_cache().put(&tenant);
        Ok(tenant)
    }

    #[tracing::instrument(skip_all, fields(location = %location))]
    async fn by_location(&self, location: &LocationId) -> Result<Option<Tenant>, StoreError> {
        if let Some(t) = self.tenant_cache().by_location(location) {
            return Ok(Some(t));
        }
        let tenant = Entity::find()
            .filter(Column::LocationId.eq(location.as_str()))
            .one(self.db())
            .await
            .map_err(|e| db_err("read tenant by location", e))?
            .map(mapping::tenant)
            .transpose()?;
        if let Some(t) = &tenant {
            self.tenant_cache().put(t);
        }
        Ok(tenant)
    }

    async fn list(&self) -> Result<Vec<Tenant>, StoreError> {
        Entity::find()
            .order_by_asc(Column::Id)
            .all(self.db())
            .await
            .map_err(|e| db_err("list tenants", e))?
            .into_iter()
            .map(mapping::tenant)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant.id))]
    async fn upsert(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.tenant_cache().clear();
        let at = now();
        let row = tenants::ActiveModel {
            id: Set(tenant.id.as_str().to_owned()),
            name: Set(tenant.name.clone()),
            location_id: Set(tenant.location_id.as_str().to_owned()),
            ekyte_company_id: Set(i64::try_from(tenant.ekyte_company_id.get()).map_err(|e| {
                StoreError::Unknown(anyhow::Error::new(e).context("eKyte company id too large"))
            })?),
            active: Set(tenant.active),
            settings: Set(json("tenant settings", &tenant.settings)?),
            created_at: Set(at),
            updated_at: Set(at),
            ghl_company_id: Set(tenant.install.company_id.clone()),
            install_kind: Set(tenant.install.kind.as_str().to_owned()),
            // Kept as they are by a later upsert: `apply_lifecycle` moves them.
            installed_at: Set(tenant.install.installed_at.map(micros)),
            lifecycle_at: Set(tenant.install.changed_at.map(micros)),
            ghl_timezone: Set(tenant.install.timezone.clone()),
        };
        Entity::insert(row)
            .on_conflict(
                OnConflict::column(Column::Id)
                    .update_columns([
                        Column::Name,
                        Column::LocationId,
                        Column::EkyteCompanyId,
                        Column::Active,
                        Column::Settings,
                        Column::UpdatedAt,
                        Column::GhlCompanyId,
                        Column::InstallKind,
                        Column::GhlTimezone,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await
            .map_err(|e| match db_err("store tenant", e) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    message: format!(
                        "GHL location {} already belongs to another tenant",
                        tenant.location_id
                    ),
                },
                other => other,
            })?;
        // Again: a read between the first clear and the commit may have cached the old row.
        self.tenant_cache().clear();
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(tenant = %id, active = active))]
    async fn set_active(&self, id: &TenantId, active: bool) -> Result<(), StoreError> {
        self.tenant_cache().clear();
        let res = Entity::update_many()
            .col_expr(Column::Active, Expr::value(active))
            .col_expr(Column::UpdatedAt, Expr::value(now()))
            .filter(Column::Id.eq(id.as_str()))
            .exec(self.db())
            .await
            .map_err(|e| db_err("set tenant active", e))?;
        self.tenant_cache().clear();
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound {
                what: format!("tenant {id}"),
            });
        }
        Ok(())
    }

    async fn by_company(&self, company_id: &str) -> Result<Vec<Tenant>, StoreError> {
        Entity::find()
            .filter(Column::GhlCompanyId.eq(company_id))
            .order_by_asc(Column::Id)
            .all(self.db())
            .await
            .map_err(|e| db_err("list tenants of a company", e))?
            .into_iter()
            .map(mapping::tenant)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(tenant = %id, active = active))]
    async fn apply_lifecycle(
        &self,
        id: &TenantId,
        active: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.tenant_cache().clear();
        let at = micros(at);
        let row = Entity::find_by_id(id.as_str())
            .one(self.db())
            .await
            .map_err(|e| db_err("read tenant", e))?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("tenant {id}"),
            })?;
        if row.lifecycle_at.is_some_and(|last| last >= at) {
            return Ok(false);
        }
        let mut update = Entity::update_many()
            .col_expr(Column::Active, Expr::value(active))
            .col_expr(Column::LifecycleAt, Expr::value(Some(at)))
            .col_expr(Column::UpdatedAt, Expr::value(now()));
        if active && (!row.active || row.installed_at.is_none()) {
            update = update.col_expr(Column::InstalledAt, Expr::value(Some(at)));
        }
        // The guard again in the statement: of two events applied at once, the newer wins.
        let res = update
            .filter(Column::Id.eq(id.as_str()))
            .filter(
                Condition::any()
                    .add(Column::LifecycleAt.is_null())
                    .add(Column::LifecycleAt.lt(at)),
            )
            .exec(self.db())
            .await
            .map_err(|e| db_err("record a tenant's install or uninstall", e))?;
        self.tenant_cache().clear();
        Ok(res.rows_affected > 0)
    }
}

impl Store {
    async fn read_tenant(&self, id: &TenantId) -> Result<Tenant, StoreError> {
        Entity::find_by_id(id.as_str())
            .one(self.db())
            .await
            .map_err(|e| db_err("read tenant", e))?
            .map(mapping::tenant)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("tenant {id}"),
            })
    }
}
