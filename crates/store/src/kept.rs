//! The appointments a full sync read from the location's calendars, in `sweep_appointments`
//! (issue 17): written as the calendars are read, read back for each page's never-synced
//! contacts, deleted when the run finishes. Held in the worker instead, a location's
//! appointments made its memory grow with the location.

use sea_orm::{ConnectionTrait, Statement, Value};

use ports::StoreError;
use ports::ghl::GhlAppointment;

use crate::Store;
use crate::error::{bad_value, db_err};

const TABLE: &str = "sweep_appointments";
/// Rows per INSERT (four values each) and contacts per SELECT: well under either database's
/// limit on bound values.
const CHUNK: usize = 500;

impl Store {
    pub(crate) async fn appointments_keep(
        &self,
        run_id: i64,
        appointments: &[GhlAppointment],
    ) -> Result<(), StoreError> {
        for chunk in appointments.chunks(CHUNK) {
            // The run id once, then each appointment's three.
            let mut values: Vec<Value> = Vec::with_capacity(1 + 3 * chunk.len());
            values.push(run_id.into());
            for a in chunk {
                let record = serde_json::to_string(a)
                    .map_err(|e| bad_value(TABLE, "record", format!("cannot encode: {e}")))?;
                values.push(a.contact.to_string().into());
                values.push(a.id.to_string().into());
                values.push(record.into());
            }
            let sql = format!(
                "INSERT INTO {TABLE} (run_id, contact_id, appointment_id, record) VALUES {} \
                 ON CONFLICT DO NOTHING",
                self.rows_sharing_first(chunk.len(), 3)
            );
            self.db()
                .execute_raw(Statement::from_sql_and_values(self.backend(), sql, values))
                .await
                .map_err(|e| db_err("keep the appointments a run read", e))?;
        }
        Ok(())
    }

    pub(crate) async fn appointments_kept(
        &self,
        run_id: i64,
        contacts: &[String],
    ) -> Result<Vec<GhlAppointment>, StoreError> {
        let m = self.placeholder();
        let mut out = Vec::new();
        for chunk in contacts.chunks(CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("{m}{}", i + 2)).collect();
            let sql = format!(
                "SELECT record FROM {TABLE} WHERE run_id = {m}1 AND contact_id IN ({})",
                list.join(", ")
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() + 1);
            values.push(run_id.into());
            values.extend(chunk.iter().map(|c| Value::from(c.clone())));
            let rows = self
                .db()
                .query_all_raw(Statement::from_sql_and_values(self.backend(), sql, values))
                .await
                .map_err(|e| db_err("read the appointments a run kept", e))?;
            for r in rows {
                let record: String = r
                    .try_get("", "record")
                    .map_err(|e| db_err("read the appointments a run kept", e))?;
                out.push(
                    serde_json::from_str(&record)
                        .map_err(|e| bad_value(TABLE, "record", format!("cannot decode: {e}")))?,
                );
            }
        }
        Ok(out)
    }

    pub(crate) async fn appointments_forget(&self, run_id: i64) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {TABLE} WHERE run_id = {}1", self.placeholder());
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                [run_id.into()],
            ))
            .await
            .map_err(|e| db_err("forget the appointments a run kept", e))?;
        Ok(())
    }
}
