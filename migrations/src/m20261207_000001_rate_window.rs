//! The GHL rate window every replica shares (issue 17): one row per slot of an (app,
//! resource) window, free again at `free_at` (milliseconds since the epoch, by the database's
//! clock). `holder` is the process that took it, so that a late release cannot free a slot
//! another process took after the first one's hold expired.
//!
//! On PostgreSQL the table is `UNLOGGED`: its rows matter for seconds, so they are not worth
//! a WAL record per GHL call; a crash empties it, and the store creates the slots again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RateWindow {
    Table,
    App,
    Resource,
    Slot,
    FreeAt,
    Holder,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use RateWindow as W;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE UNLOGGED TABLE rate_window ( \
                       app text NOT NULL, resource text NOT NULL, slot integer NOT NULL, \
                       free_at bigint NOT NULL, holder text NOT NULL, \
                       CONSTRAINT rate_window_pkey PRIMARY KEY (app, resource, slot))",
                )
                .await?;
            return Ok(());
        }
        manager
            .create_table(
                Table::create()
                    .table(W::Table)
                    .col(ColumnDef::new(W::App).text().not_null())
                    .col(ColumnDef::new(W::Resource).text().not_null())
                    .col(ColumnDef::new(W::Slot).integer().not_null())
                    .col(ColumnDef::new(W::FreeAt).big_integer().not_null())
                    .col(ColumnDef::new(W::Holder).text().not_null())
                    .primary_key(
                        Index::create()
                            .name("rate_window_pkey")
                            .col(W::App)
                            .col(W::Resource)
                            .col(W::Slot),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RateWindow::Table).to_owned())
            .await
    }
}
