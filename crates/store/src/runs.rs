//! `RunStore`: full-sync and poll checkpoints. At most one run per tenant and kind is
//! `running` (a partial unique index), so two schedulers that start the same run at once
//! both resume one row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use domain::TenantId;
use ports::StoreError;
use ports::store::{RunCounts, RunKind, RunStatus, RunStore, SyncRun};

use crate::Store;
use crate::entity::sync_runs::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::{self, StoredCounts, json, micros, now, run_status_str};

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: format!("sync run {id}"),
    }
}

impl Store {
    async fn newest_run(
        &self,
        tenant: &TenantId,
        kind: RunKind,
        status: RunStatus,
    ) -> Result<Option<SyncRun>, StoreError> {
        Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::Kind.eq(kind.as_str()))
            .filter(Column::Status.eq(run_status_str(status)))
            .order_by_desc(Column::Id)
            .one(self.db())
            .await
            .map_err(|e| db_err("read sync run", e))?
            .map(mapping::run)
            .transpose()
    }
}

#[async_trait]
impl RunStore for Store {
    #[tracing::instrument(skip_all, fields(tenant = %tenant, kind = kind.as_str()))]
    async fn start_or_resume(
        &self,
        tenant: &TenantId,
        kind: RunKind,
        since: Option<DateTime<Utc>>,
    ) -> Result<SyncRun, StoreError> {
        // Read, else insert; an insert that loses to a concurrent one (unique violation on
        // the one-running index) reads the winner's row on the next turn.
        for _ in 0..3 {
            if let Some(run) = self.newest_run(tenant, kind, RunStatus::Running).await? {
                return Ok(run);
            }
            let at = now();
            let row = sync_runs::ActiveModel {
                id: Default::default(),
                tenant_id: Set(tenant.as_str().to_owned()),
                kind: Set(kind.as_str().to_owned()),
                status: Set(run_status_str(RunStatus::Running).to_owned()),
                cursor: Set(None),
                since: Set(since.map(micros)),
                counts: Set(json("run counts", &StoredCounts::default())?),
                error: Set(None),
                started_at: Set(at),
                updated_at: Set(at),
                finished_at: Set(None),
            };
            match row.insert(self.db()).await {
                Ok(stored) => return mapping::run(stored),
                Err(e) => match db_err("start sync run", e) {
                    StoreError::Conflict { .. } => continue,
                    other => return Err(other),
                },
            }
        }
        Err(StoreError::Conflict {
            message: format!(
                "the running {} run of tenant {tenant} kept changing; try again",
                kind.as_str()
            ),
        })
    }

    async fn checkpoint(
        &self,
        run_id: i64,
        cursor: Option<String>,
        counts: RunCounts,
    ) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::Cursor, Expr::value(cursor))
            .col_expr(
                Column::Counts,
                Expr::value(json("run counts", &StoredCounts::from(counts))?),
            )
            .col_expr(Column::UpdatedAt, Expr::value(now()))
            .filter(Column::Id.eq(run_id))
            .exec(self.db())
            .await
            .map_err(|e| db_err("checkpoint sync run", e))?;
        if res.rows_affected == 0 {
            return Err(not_found(run_id));
        }
        Ok(())
    }

    async fn finish(
        &self,
        run_id: i64,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let at = now();
        let finished = (status != RunStatus::Running).then_some(at);
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(run_status_str(status)))
            .col_expr(Column::Error, Expr::value(error))
            .col_expr(Column::FinishedAt, Expr::value(finished))
            .col_expr(Column::UpdatedAt, Expr::value(at))
            .filter(Column::Id.eq(run_id))
            .exec(self.db())
            .await
            .map_err(|e| db_err("finish sync run", e))?;
        if res.rows_affected == 0 {
            return Err(not_found(run_id));
        }
        if status != RunStatus::Running {
            self.seen_forget(run_id).await?;
            self.appointments_forget(run_id).await?;
        }
        Ok(())
    }

    async fn running(
        &self,
        tenant: &TenantId,
        kind: RunKind,
    ) -> Result<Option<SyncRun>, StoreError> {
        self.newest_run(tenant, kind, RunStatus::Running).await
    }

    async fn mark_seen(&self, run_id: i64, ghl_ids: &[String]) -> Result<(), StoreError> {
        self.seen_mark(run_id, ghl_ids).await
    }

    async fn unseen_contacts(
        &self,
        tenant: &TenantId,
        run_id: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.seen_unmarked(tenant, run_id, after_id, limit).await
    }

    async fn keep_appointments(
        &self,
        run_id: i64,
        appointments: &[ports::ghl::GhlAppointment],
    ) -> Result<(), StoreError> {
        self.appointments_keep(run_id, appointments).await
    }

    async fn kept_appointments(
        &self,
        run_id: i64,
        contacts: &[String],
    ) -> Result<Vec<ports::ghl::GhlAppointment>, StoreError> {
        self.appointments_kept(run_id, contacts).await
    }

    async fn last_completed(
        &self,
        tenant: &TenantId,
        kind: RunKind,
    ) -> Result<Option<SyncRun>, StoreError> {
        self.newest_run(tenant, kind, RunStatus::Completed).await
    }

    async fn recent(&self, tenant: &TenantId, limit: u32) -> Result<Vec<SyncRun>, StoreError> {
        let mut runs = Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .order_by_desc(Column::Id)
            .limit(u64::from(limit))
            .all(self.db())
            .await
            .map_err(|e| db_err("list sync runs", e))?
            .into_iter()
            .map(mapping::run)
            .collect::<Result<Vec<_>, _>>()?;
        // A sweep's per-contact syncs that failed for good are its errors too.
        for run in &mut runs {
            if matches!(run.kind, RunKind::Full | RunKind::Incremental) {
                run.counts.errors += self.dead_lettered_fan_out(run.id).await?;
            }
        }
        Ok(runs)
    }

    async fn latest_runs(&self) -> Result<Vec<SyncRun>, StoreError> {
        use sea_orm::sea_query::Query;
        let newest = Query::select()
            .expr(Expr::col(Column::Id).max())
            .from(Entity)
            .group_by_col(Column::TenantId)
            .group_by_col(Column::Kind)
            .to_owned();
        let mut runs = Entity::find()
            .filter(Column::Id.in_subquery(newest))
            .order_by_asc(Column::Id)
            .all(self.db())
            .await
            .map_err(|e| db_err("list the latest sync runs", e))?
            .into_iter()
            .map(mapping::run)
            .collect::<Result<Vec<_>, _>>()?;
        // Every sweep's dead-lettered contact syncs in one read, counted by run.
        let fan_out = self.dead_lettered_fan_outs().await?;
        for run in &mut runs {
            if matches!(run.kind, RunKind::Full | RunKind::Incremental) {
                run.counts.errors += fan_out.get(&run.id).copied().unwrap_or(0);
            }
        }
        Ok(runs)
    }
}

impl Store {
    /// Dead-lettered sweep messages per run (see [`ports::queue::sweep_message_prefixes`]).
    async fn dead_lettered_fan_outs(
        &self,
    ) -> Result<std::collections::HashMap<i64, u64>, StoreError> {
        use crate::entity::dead_letters;
        let ids: Vec<String> = dead_letters::Entity::find()
            .select_only()
            .column(dead_letters::Column::MessageId)
            .filter(
                sea_orm::Condition::any()
                    .add(dead_letters::Column::MessageId.starts_with("sync:"))
                    .add(dead_letters::Column::MessageId.starts_with("unseen:")),
            )
            .into_tuple()
            .all(self.db())
            .await
            .map_err(|e| db_err("count the sweeps' dead letters", e))?;
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(run) = id.split(':').nth(1).and_then(|r| r.parse::<i64>().ok()) {
                *out.entry(run).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// How many of a sweep's `sync.contact` messages were dead-lettered.
    async fn dead_lettered_fan_out(&self, run_id: i64) -> Result<u64, StoreError> {
        use crate::entity::dead_letters;
        let [sync, unseen] = ports::queue::sweep_message_prefixes(run_id);
        let n = dead_letters::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(dead_letters::Column::MessageId.starts_with(sync))
                    .add(dead_letters::Column::MessageId.starts_with(unseen)),
            )
            .count(self.db())
            .await
            .map_err(|e| db_err("count a run's dead letters", e))?;
        Ok(n)
    }
}
