//! `Inbox`: processed message keys, unique on (tenant, source, key), pruned by age.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use domain::TenantId;
use ports::StoreError;
use ports::store::Inbox;

use crate::Store;
use crate::entity::inbox::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::now;

/// A key already recorded stays as it is: the first writer wins, the others do nothing.
fn keep_the_first() -> OnConflict {
    OnConflict::columns([Column::TenantId, Column::Source, Column::DedupeKey])
        .do_nothing()
        .to_owned()
}

#[async_trait]
impl Inbox for Store {
    async fn seen(&self, tenant: &TenantId, source: &str, key: &str) -> Result<bool, StoreError> {
        Ok(Entity::find_by_id((
            tenant.as_str().to_owned(),
            source.to_owned(),
            key.to_owned(),
        ))
        .one(self.db())
        .await
        .map_err(|e| db_err("read inbox", e))?
        .is_some())
    }

    async fn record(&self, tenant: &TenantId, source: &str, key: &str) -> Result<bool, StoreError> {
        let row = inbox::ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            source: Set(source.to_owned()),
            dedupe_key: Set(key.to_owned()),
            created_at: Set(now()),
        };
        // One statement decides: the first writer inserts, every other one does nothing.
        let inserted = Entity::insert(row)
            .on_conflict(keep_the_first())
            .exec_without_returning(self.db())
            .await
            .map_err(|e| db_err("record inbox key", e))?;
        Ok(inserted == 1)
    }

    async fn record_many(
        &self,
        source: &str,
        keys: &[(TenantId, String)],
    ) -> Result<(), StoreError> {
        let at = now();
        let mut unique = std::collections::BTreeSet::new();
        let rows: Vec<inbox::ActiveModel> = keys
            .iter()
            .filter(|(t, k)| unique.insert((t.as_str(), k.as_str())))
            .map(|(tenant, key)| inbox::ActiveModel {
                tenant_id: Set(tenant.as_str().to_owned()),
                source: Set(source.to_owned()),
                dedupe_key: Set(key.clone()),
                created_at: Set(at),
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        Entity::insert_many(rows)
            .on_conflict(keep_the_first())
            .exec_without_returning(self.db())
            .await
            .map_err(|e| db_err("record inbox keys", e))?;
        Ok(())
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = Entity::delete_many()
            .filter(Column::CreatedAt.lt(before))
            .exec(self.db())
            .await
            .map_err(|e| db_err("prune inbox", e))?;
        Ok(res.rows_affected)
    }
}
