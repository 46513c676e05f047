//! `DeadLetterStore`: failed messages with their error chain, for listing, summing up and
//! replay.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use domain::TenantId;
use ports::StoreError;
use ports::failure::error_class;
use ports::store::{DeadLetter, DeadLetterGroup, DeadLetterStore, NewDeadLetter};

use crate::Store;
use crate::entity::dead_letters::{self, Column, Entity};
use crate::error::{bad_value, db_err};
use crate::mapping::{self, json, micros, now};

const TABLE: &str = "dead_letters";

/// The letters of one tenant (or all), without the replayed ones unless asked.
fn filtered(tenant: Option<&TenantId>, include_replayed: bool) -> Select<Entity> {
    let mut select = Entity::find();
    if let Some(tenant) = tenant {
        select = select.filter(Column::TenantId.eq(tenant.as_str()));
    }
    if !include_replayed {
        select = select.filter(Column::ReplayedAt.is_null());
    }
    select
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: format!("dead letter {id}"),
    }
}

#[async_trait]
impl DeadLetterStore for Store {
    async fn put(&self, letter: &NewDeadLetter) -> Result<i64, StoreError> {
        let row = dead_letters::ActiveModel {
            id: Default::default(),
            tenant_id: Set(letter.tenant.as_ref().map(|t| t.as_str().to_owned())),
            message_id: Set(letter.message_id.clone()),
            kind: Set(letter.kind.clone()),
            envelope: Set(letter.envelope.clone()),
            error_chain: Set(json("error chain", &letter.error_chain)?),
            attempts: Set(i64::from(letter.attempts)),
            created_at: Set(now()),
            replayed_at: Set(None),
        };
        let stored = row
            .insert(self.db())
            .await
            .map_err(|e| db_err("store dead letter", e))?;
        Ok(stored.id)
    }

    async fn list(
        &self,
        tenant: Option<TenantId>,
        include_replayed: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut select = filtered(tenant.as_ref(), include_replayed);
        if let Some(before) = before_id {
            select = select.filter(Column::Id.lt(before));
        }
        select
            .order_by_desc(Column::Id)
            .limit(u64::from(limit))
            .all(self.db())
            .await
            .map_err(|e| db_err("list dead letters", e))?
            .into_iter()
            .map(mapping::dead_letter)
            .collect()
    }

    async fn summary(
        &self,
        tenant: Option<TenantId>,
        include_replayed: bool,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<DeadLetterGroup>, StoreError> {
        let mut select = filtered(tenant.as_ref(), include_replayed);
        if let Some(since) = since {
            select = select.filter(Column::CreatedAt.gte(micros(since)));
        }
        // Counted by the database per exact chain (letters of one cause often repeat it word
        // for word), then merged per class here: the class is computed from the text.
        let rows: Vec<(Option<String>, serde_json::Value, i64, i64, DateTime<Utc>)> = select
            .select_only()
            .column(Column::TenantId)
            .column(Column::ErrorChain)
            .column_as(Column::Id.count(), "letters")
            .column_as(Column::Id.max(), "newest_id")
            .column_as(Column::CreatedAt.max(), "newest_at")
            .group_by(Column::TenantId)
            .group_by(Column::ErrorChain)
            .into_tuple()
            .all(self.db())
            .await
            .map_err(|e| db_err("sum up dead letters", e))?;
        let mut groups: BTreeMap<(Option<String>, String), DeadLetterGroup> = BTreeMap::new();
        for (tenant, chain, letters, newest_id, newest_at) in rows {
            let chain: Vec<String> =
                serde_json::from_value(chain).map_err(|e| bad_value(TABLE, "error_chain", e))?;
            let count = u64::try_from(letters).map_err(|e| bad_value(TABLE, "count(id)", e))?;
            let class = error_class(&chain);
            let parsed = tenant
                .as_deref()
                .map(TenantId::parse)
                .transpose()
                .map_err(|e| bad_value(TABLE, "tenant_id", e))?;
            let group = groups
                .entry((tenant, class.clone()))
                .or_insert_with(|| DeadLetterGroup {
                    tenant: parsed,
                    class,
                    count: 0,
                    newest_id,
                    newest_at,
                });
            group.count += count;
            if newest_id > group.newest_id {
                group.newest_id = newest_id;
            }
            group.newest_at = group.newest_at.max(newest_at);
        }
        let mut out: Vec<DeadLetterGroup> = groups.into_values().collect();
        out.sort_by(|a, b| {
            (a.tenant.as_ref().map(TenantId::as_str))
                .cmp(&b.tenant.as_ref().map(TenantId::as_str))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.class.cmp(&b.class))
        });
        Ok(out)
    }

    async fn get(&self, id: i64) -> Result<DeadLetter, StoreError> {
        Entity::find_by_id(id)
            .one(self.db())
            .await
            .map_err(|e| db_err("read dead letter", e))?
            .map(mapping::dead_letter)
            .transpose()?
            .ok_or_else(|| not_found(id))
    }

    async fn mark_replayed(&self, id: i64) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::ReplayedAt, Expr::value(now()))
            .filter(Column::Id.eq(id))
            .exec(self.db())
            .await
            .map_err(|e| db_err("mark dead letter replayed", e))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}
