//! `Observations`: the latest rate budget per GHL resource and queue wait per tenant, one row
//! per (kind, subject), replaced in one statement per report.

use async_trait::async_trait;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use ports::StoreError;
use ports::store::{Observations, QueueObservation, RateObservation};

use crate::Store;
use crate::entity::observations::{self, Column, Entity};
use crate::error::{bad_value, db_err};

const TABLE: &str = "observations";
const RATE: &str = "ghl_rate";
const QUEUE: &str = "queue_wait";

impl Store {
    async fn note<'a, T: Serialize + 'a>(
        &self,
        kind: &str,
        rows: impl Iterator<Item = (String, &'a T, chrono::DateTime<chrono::Utc>)>,
    ) -> Result<(), StoreError> {
        let rows = rows
            .map(|(subject, body, at)| {
                Ok(observations::ActiveModel {
                    kind: Set(kind.to_owned()),
                    subject: Set(subject),
                    body: Set(
                        serde_json::to_string(body).map_err(|e| StoreError::Corrupt {
                            message: format!("an observation does not serialise: {e}"),
                        })?,
                    ),
                    observed_at: Set(at),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([Column::Kind, Column::Subject])
                    .update_columns([Column::Body, Column::ObservedAt])
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await
            .map_err(|e| db_err("record observations", e))?;
        Ok(())
    }

    async fn observed<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, StoreError> {
        Entity::find()
            .filter(Column::Kind.eq(kind))
            .all(self.db())
            .await
            .map_err(|e| db_err("read observations", e))?
            .into_iter()
            .map(|r| serde_json::from_str(&r.body).map_err(|e| bad_value(TABLE, "body", e)))
            .collect()
    }
}

#[async_trait]
impl Observations for Store {
    async fn note_rates(&self, seen: &[RateObservation]) -> Result<(), StoreError> {
        self.note(RATE, seen.iter().map(|o| (o.resource.clone(), o, o.at)))
            .await
    }

    async fn rates(&self) -> Result<Vec<RateObservation>, StoreError> {
        self.observed(RATE).await
    }

    async fn note_queue(&self, seen: &[QueueObservation]) -> Result<(), StoreError> {
        self.note(QUEUE, seen.iter().map(|o| (o.tenant.to_string(), o, o.at)))
            .await
    }

    async fn queue_waits(&self) -> Result<Vec<QueueObservation>, StoreError> {
        self.observed(QUEUE).await
    }
}
