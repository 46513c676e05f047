//! `TenantStore`: one row per tenant, unique on the GHL location.

use async_trait::async_trait;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use domain::{LocationId, Tenant, TenantId};
use ports::StoreError;
use ports::store::TenantStore;

use crate::Store;
use crate::entity::tenants::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::{self, json, now};

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
}
