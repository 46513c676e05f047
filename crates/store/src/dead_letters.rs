//! `DeadLetterStore`: failed messages with their error chain, for listing and replay.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use domain::TenantId;
use ports::StoreError;
use ports::store::{DeadLetter, DeadLetterStore, NewDeadLetter};

use crate::Store;
use crate::entity::dead_letters::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::{self, json, now};

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
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut select = Entity::find();
        if let Some(tenant) = &tenant {
            select = select.filter(Column::TenantId.eq(tenant.as_str()));
        }
        if !include_replayed {
            select = select.filter(Column::ReplayedAt.is_null());
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
