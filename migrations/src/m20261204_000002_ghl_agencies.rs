//! Agency installs: one row per GHL company whose agency installed the app for many of its
//! locations. It holds the company token, sealed like every credential (AES-GCM under the
//! keyring, bound to the row), refreshed under its own lock and shared by the company's
//! tenants, which mint their location tokens from it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GhlAgencies {
    Table,
    CompanyId,
    KeyId,
    Nonce,
    Ciphertext,
    ExpiresAt,
    Version,
    InstallToFuture,
    CreatedAt,
    UpdatedAt,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ts = |c: GhlAgencies| {
            ColumnDef::new(c)
                .timestamp_with_time_zone()
                .not_null()
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(GhlAgencies::Table)
                    .col(
                        ColumnDef::new(GhlAgencies::CompanyId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(GhlAgencies::KeyId).text().not_null())
                    .col(ColumnDef::new(GhlAgencies::Nonce).blob().not_null())
                    .col(ColumnDef::new(GhlAgencies::Ciphertext).blob().not_null())
                    .col(
                        ColumnDef::new(GhlAgencies::ExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(GhlAgencies::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GhlAgencies::InstallToFuture)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ts(GhlAgencies::CreatedAt))
                    .col(ts(GhlAgencies::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GhlAgencies::Table).to_owned())
            .await
    }
}
