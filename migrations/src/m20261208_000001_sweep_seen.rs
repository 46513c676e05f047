//! What a full sync has seen (issue 17): one row per contact the run's search returned, so
//! that a run spread over many messages (each handles a few pages, then queues its
//! continuation) can still tell, at its last page, which linked contacts the search no longer
//! returns. A run's rows are deleted when it finishes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SweepSeen {
    Table,
    RunId,
    GhlId,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SweepSeen as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(ColumnDef::new(S::RunId).big_integer().not_null())
                    .col(ColumnDef::new(S::GhlId).text().not_null())
                    .primary_key(
                        Index::create()
                            .name("sweep_seen_pkey")
                            .col(S::RunId)
                            .col(S::GhlId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SweepSeen::Table).to_owned())
            .await
    }
}
