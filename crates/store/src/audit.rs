//! `AuditLog`: append-only, read newest first by tenant (and contact), paged by id; failures
//! counted per tenant and cause.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, LikeExpr};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use domain::TenantId;
use ports::StoreError;
use ports::failure::{NO_ERROR_RECORDED, error_class};
use ports::store::{AuditAction, AuditEntry, AuditLog, AuditQuery, AuditRecord, FailureCount};

use crate::Store;
use crate::entity::audit_log::{self, Column, Entity};
use crate::error::{bad_value, db_err};
use crate::mapping::{self, json, micros};

const TABLE: &str = "audit_log";

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
        ghl_calls: Set(entry
            .calls
            .map(|c| i32::try_from(c.ghl).unwrap_or(i32::MAX))),
        ekyte_calls: Set(entry
            .calls
            .map(|c| i32::try_from(c.ekyte).unwrap_or(i32::MAX))),
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

    async fn by_message_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // LIKE with the pattern's own wildcards escaped, so the prefix is taken literally.
        let escaped: String = prefix
            .chars()
            .flat_map(|c| match c {
                '\\' | '%' | '_' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(
                Expr::col(Column::MessageId)
                    .like(LikeExpr::new(format!("{escaped}%")).escape('\\')),
            )
            .order_by_asc(Column::Id)
            .limit(u64::from(limit))
            .all(self.db())
            .await
            .map_err(|e| db_err("query audit log by message", e))?
            .into_iter()
            .map(mapping::audit)
            // SQLite's LIKE ignores ASCII case: keep the exact prefix only.
            .filter(|r| {
                r.as_ref().map_or(true, |r| {
                    r.entry
                        .message_id
                        .as_deref()
                        .is_some_and(|m| m.starts_with(prefix))
                })
            })
            .collect()
    }

    async fn failures_since(&self, since: DateTime<Utc>) -> Result<Vec<FailureCount>, StoreError> {
        // Counted by the database per exact reason, then merged per cause here: the cause is
        // computed from the text.
        let rows: Vec<(String, Option<String>, i64, DateTime<Utc>)> = Entity::find()
            .filter(Column::Action.eq(AuditAction::Failed.as_str()))
            .filter(Column::At.gte(micros(since)))
            .select_only()
            .column(Column::TenantId)
            .column(Column::Reason)
            .column_as(Column::Id.count(), "failures")
            .column_as(Column::At.max(), "last_at")
            .group_by(Column::TenantId)
            .group_by(Column::Reason)
            .into_tuple()
            .all(self.db())
            .await
            .map_err(|e| db_err("count failed audit entries", e))?;
        let mut counts: BTreeMap<(String, String), FailureCount> = BTreeMap::new();
        for (tenant, reason, failures, last_at) in rows {
            let count = u64::try_from(failures).map_err(|e| bad_value(TABLE, "count(id)", e))?;
            let cause = reason
                .as_deref()
                .map_or_else(|| NO_ERROR_RECORDED.to_owned(), |r| error_class(&[r]));
            let parsed =
                TenantId::parse(tenant.as_str()).map_err(|e| bad_value(TABLE, "tenant_id", e))?;
            let entry = counts
                .entry((tenant, cause.clone()))
                .or_insert_with(|| FailureCount {
                    tenant: parsed,
                    cause,
                    count: 0,
                    last_at,
                });
            entry.count += count;
            entry.last_at = Ord::max(entry.last_at, last_at);
        }
        let mut out: Vec<FailureCount> = counts.into_values().collect();
        out.sort_by(|a, b| {
            a.tenant
                .as_str()
                .cmp(b.tenant.as_str())
                .then(b.count.cmp(&a.count))
                .then_with(|| a.cause.cmp(&b.cause))
        });
        Ok(out)
    }
}
