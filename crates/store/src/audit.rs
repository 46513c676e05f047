//! `AuditLog`: append-only, read newest first by tenant (and contact), paged by id.

use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use ports::StoreError;
use ports::store::{AuditEntry, AuditLog, AuditQuery, AuditRecord};

use crate::Store;
use crate::entity::audit_log::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::{self, json, micros};

fn row(entry: &AuditEntry) -> Result<audit_log::ActiveModel, StoreError> {
    Ok(audit_log::ActiveModel {
        id: Default::default(),
        tenant_id: Set(entry.tenant.as_str().to_owned()),
        at: Set(micros(entry.at)),
        target: Set(entry.target.map(|s| s.as_str().to_owned())),
        kind: Set(entry.kind.as_str().to_owned()),
        action: Set(entry.action.as_str().to_owned()),
        contact_id: Set(entry.contact.as_ref().map(|c| c.as_str().to_owned())),
        ghl_id: Set(entry.ghl_id.clone()),
        ekyte_id: Set(entry.ekyte_id.clone()),
        fields: Set(json("audit fields", &entry.fields)?),
        reason: Set(entry.reason.clone()),
        message_id: Set(entry.message_id.clone()),
        dry_run: Set(entry.dry_run),
    })
}

#[async_trait]
impl AuditLog for Store {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = entries.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        // One multi-row insert: all entries or none.
        Entity::insert_many(rows)
            .exec_without_returning(self.db())
            .await
            .map_err(|e| db_err("append audit entries", e))?;
        Ok(())
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut select = Entity::find().filter(Column::TenantId.eq(query.tenant.as_str()));
        if let Some(contact) = &query.contact {
            select = select.filter(Column::ContactId.eq(contact.as_str()));
        }
        if let Some(before) = query.before_id {
            select = select.filter(Column::Id.lt(before));
        }
        select
            .order_by_desc(Column::Id)
            .limit(u64::from(query.limit))
            .all(self.db())
            .await
            .map_err(|e| db_err("query audit log", e))?
            .into_iter()
            .map(mapping::audit)
            .collect()
    }
}
