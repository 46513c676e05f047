//! `TenantStore`: one row per tenant, unique on the GHL location.

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

#[async_trait]
impl TenantStore for Store {
    #[tracing::instrument(skip_all, fields(tenant = %id))]
    async fn get(&self, id: &TenantId) -> Result<Tenant, StoreError> {
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

    #[tracing::instrument(skip_all, fields(location = %location))]
    async fn by_location(&self, location: &LocationId) -> Result<Option<Tenant>, StoreError> {
        Entity::find()
            .filter(Column::LocationId.eq(location.as_str()))
            .one(self.db())
            .await
            .map_err(|e| db_err("read tenant by location", e))?
            .map(mapping::tenant)
            .transpose()
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
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(tenant = %id, active = active))]
    async fn set_active(&self, id: &TenantId, active: bool) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::Active, Expr::value(active))
            .col_expr(Column::UpdatedAt, Expr::value(now()))
            .filter(Column::Id.eq(id.as_str()))
            .exec(self.db())
            .await
            .map_err(|e| db_err("set tenant active", e))?;
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
        Ok(res.rows_affected > 0)
    }
}
