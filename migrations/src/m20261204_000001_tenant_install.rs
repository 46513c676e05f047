//! A tenant's install: the GHL company it belongs to, how it was installed, when, and the
//! timestamp of the last lifecycle event applied (INSTALL/UNINSTALL are ordered by it).
//!
//! Existing tenants count as installed when they were created, so their first full sync
//! after this migration gives no onboarding tasks to the book they already had.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    GhlCompanyId,
    InstallKind,
    InstalledAt,
    LifecycleAt,
    CreatedAt,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        let columns = [
            ColumnDef::new(Tenants::GhlCompanyId)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Tenants::InstallKind)
                .text()
                .not_null()
                .default("location")
                .to_owned(),
            ColumnDef::new(Tenants::InstalledAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(Tenants::LifecycleAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .exec_stmt(
                Query::update()
                    .table(Tenants::Table)
                    .value(Tenants::InstalledAt, Expr::col(Tenants::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tenants_ghl_company")
                    .table(Tenants::Table)
                    .col(Tenants::GhlCompanyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("tenants_ghl_company")
                    .table(Tenants::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Tenants::LifecycleAt,
            Tenants::InstalledAt,
            Tenants::InstallKind,
            Tenants::GhlCompanyId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
