//! What the workers last observed and the console shows: a location's GHL rate budget from
//! the last answer's headers, and how long a tenant's messages waited in the queue. One row
//! per (kind, subject), replaced by each report; the body is the observation as JSON.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Observations {
    Table,
    Kind,
    Subject,
    Body,
    ObservedAt,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Observations as O;
        manager
            .create_table(
                Table::create()
                    .table(O::Table)
                    .col(ColumnDef::new(O::Kind).text().not_null())
                    .col(ColumnDef::new(O::Subject).text().not_null())
                    .col(ColumnDef::new(O::Body).text().not_null())
                    .col(
                        ColumnDef::new(O::ObservedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .name("observations_pkey")
                            .col(O::Kind)
                            .col(O::Subject),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Observations::Table).to_owned())
            .await
    }
}
