//! What a full sync has seen, in `sweep_seen` (issue 17): a run spread over many messages
//! marks each page's contacts, and at its last page asks which linked contacts it never
//! marked. A run's rows go when it finishes.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use domain::{EntityKind, TenantId};
use ports::StoreError;

use crate::Store;
use crate::error::db_err;

const TABLE: &str = "sweep_seen";

impl Store {
    pub(crate) async fn seen_mark(
        &self,
        run_id: i64,
        ghl_ids: &[String],
    ) -> Result<(), StoreError> {
        if ghl_ids.is_empty() {
            return Ok(());
        }
        // The run id once, then each id.
        let sql = format!(
            "INSERT INTO {TABLE} (run_id, ghl_id) VALUES {} ON CONFLICT DO NOTHING",
            self.rows_sharing_first(ghl_ids.len(), 1)
        );
        let mut values: Vec<Value> = Vec::with_capacity(ghl_ids.len() + 1);
        values.push(run_id.into());
        values.extend(ghl_ids.iter().map(|id| Value::from(id.clone())));
        self.db()
            .execute_raw(Statement::from_sql_and_values(self.backend(), sql, values))
            .await
            .map_err(|e| db_err("mark the contacts a run saw", e))?;
        Ok(())
    }

    pub(crate) async fn seen_unmarked(
        &self,
        tenant: &TenantId,
        run_id: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let sql = match self.backend() {
            DbBackend::Postgres => {
                "SELECT l.id, l.ghl_id FROM links l \
                 WHERE l.tenant_id = $1 AND l.kind = $2 AND l.state = 'linked' \
                   AND l.ghl_id IS NOT NULL AND l.id > $3 \
                   AND NOT EXISTS (SELECT 1 FROM sweep_seen s \
                                   WHERE s.run_id = $4 AND s.ghl_id = l.ghl_id) \
                 ORDER BY l.id LIMIT $5"
            }
            _ => {
                "SELECT l.id, l.ghl_id FROM links l \
                 WHERE l.tenant_id = ? AND l.kind = ? AND l.state = 'linked' \
                   AND l.ghl_id IS NOT NULL AND l.id > ? \
                   AND NOT EXISTS (SELECT 1 FROM sweep_seen s \
                                   WHERE s.run_id = ? AND s.ghl_id = l.ghl_id) \
                 ORDER BY l.id LIMIT ?"
            }
        };
        let rows = self
            .db()
            .query_all_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                [
                    tenant.as_str().into(),
                    EntityKind::Contact.as_str().into(),
                    after_id.into(),
                    run_id.into(),
                    i64::from(limit).into(),
                ],
            ))
            .await
            .map_err(|e| db_err("read the contacts a run did not see", e))?;
        rows.iter()
            .map(|r| {
                let id: i64 = r
                    .try_get("", "id")
                    .map_err(|e| db_err("read the contacts a run did not see", e))?;
                let ghl: String = r
                    .try_get("", "ghl_id")
                    .map_err(|e| db_err("read the contacts a run did not see", e))?;
                Ok((id, ghl))
            })
            .collect()
    }

    pub(crate) async fn seen_forget(&self, run_id: i64) -> Result<(), StoreError> {
        let sql = match self.backend() {
            DbBackend::Postgres => "DELETE FROM sweep_seen WHERE run_id = $1",
            _ => "DELETE FROM sweep_seen WHERE run_id = ?",
        };
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                [run_id.into()],
            ))
            .await
            .map_err(|e| db_err("forget the contacts a run saw", e))?;
        Ok(())
    }
}
