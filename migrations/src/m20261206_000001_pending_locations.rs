//! Pending locations: the locations an agency install approved that have no tenant yet,
//! because no eKyte company is known for them. Each waits for `tenants map` (or a mapping
//! rule) and is removed when its tenant is made, or when the agency uninstalls.
//!
//! Also the GHL location's time zone on each tenant (`tenants.ghl_timezone`), refreshed by
//! `LocationUpdate`, and the last failed refresh of a tenant's credential
//! (`credential_refresh_failures`, cleared by the next successful refresh).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    GhlTimezone,
}

#[derive(DeriveIden)]
enum CredentialRefreshFailures {
    Table,
    TenantId,
    Provider,
    At,
    Error,
}

#[derive(DeriveIden)]
enum GhlPendingLocations {
    Table,
    LocationId,
    CompanyId,
    Name,
    Reason,
    Since,
    UpdatedAt,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use GhlPendingLocations as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .col(
                        ColumnDef::new(P::LocationId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(P::CompanyId).text().not_null())
                    .col(ColumnDef::new(P::Name).text().null())
                    .col(ColumnDef::new(P::Reason).text().not_null())
                    .col(
                        ColumnDef::new(P::Since)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(P::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ghl_pending_locations_company")
                    .table(P::Table)
                    .col(P::CompanyId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(ColumnDef::new(Tenants::GhlTimezone).text().null())
                    .to_owned(),
            )
            .await?;
        use CredentialRefreshFailures as F;
        manager
            .create_table(
                Table::create()
                    .table(F::Table)
                    .col(ColumnDef::new(F::TenantId).text().not_null())
                    .col(ColumnDef::new(F::Provider).text().not_null())
                    .col(ColumnDef::new(F::At).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(F::Error).text().not_null())
                    .primary_key(Index::create().col(F::TenantId).col(F::Provider))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(CredentialRefreshFailures::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::GhlTimezone)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(GhlPendingLocations::Table).to_owned())
            .await
    }
}
