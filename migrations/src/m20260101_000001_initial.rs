//! The first schema: tenants, credentials, links, inbox, sync runs, audit log, dead letters.
//!
//! Conventions that hold for every table:
//! - Timestamps are `timestamp with time zone` on PostgreSQL and RFC 3339 text on SQLite,
//!   always written in UTC by the store, so text comparison on SQLite orders them correctly.
//! - Small closed sets that will not grow (link state, provider, run status) carry a CHECK
//!   constraint. Open sets that grow with the domain (entity kinds, audit actions) do not:
//!   adding a kind must not need a table rebuild on SQLite; the store rejects unknown values
//!   when it reads them.
//! - Uniqueness on columns that may be NULL (a link's id on the side it does not exist on yet)
//!   relies on NULLs being distinct in unique indexes, which is the default on both PostgreSQL
//!   and SQLite: two links without an eKyte id never clash, two with the same one always do.
//!
//! This file is a snapshot: once released it is never edited; later changes are new
//! migrations.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    LocationId,
    EkyteCompanyId,
    Active,
    Settings,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    TenantId,
    Provider,
    KeyId,
    Nonce,
    Ciphertext,
    ExpiresAt,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Links {
    Table,
    Id,
    TenantId,
    Kind,
    GhlId,
    EkyteId,
    GhlParent,
    EkyteParent,
    State,
    Base,
    GhlFp,
    EkyteFp,
    Version,
    ClaimedBy,
    ClaimedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    TenantId,
    Source,
    DedupeKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SyncRuns {
    Table,
    Id,
    TenantId,
    Kind,
    Status,
    Cursor,
    Since,
    Counts,
    Error,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    TenantId,
    At,
    Target,
    Kind,
    Action,
    ContactId,
    GhlId,
    EkyteId,
    Fields,
    Reason,
    MessageId,
    DryRun,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    TenantId,
    MessageId,
    Kind,
    Envelope,
    ErrorChain,
    Attempts,
    CreatedAt,
    ReplayedAt,
}

fn one_of<C: IntoIden + 'static>(col: C, values: &[&'static str]) -> SimpleExpr {
    Expr::col(col).is_in(values.iter().copied())
}

fn tenant_fk<T: IntoIden + 'static, C: IntoIden + 'static>(
    name: &str,
    table: T,
    col: C,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(Tenants::Table, Tenants::Id)
        // Tenants are deactivated, not deleted, in normal operation; an operator who does
        // delete one by hand should not leave its secrets and links behind.
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

fn timestamp<C: IntoIden + 'static>(col: C) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn timestamp_null<C: IntoIden + 'static>(col: C) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn text<C: IntoIden + 'static>(col: C) -> ColumnDef {
    ColumnDef::new(col).text().not_null().to_owned()
}

fn text_null<C: IntoIden + 'static>(col: C) -> ColumnDef {
    ColumnDef::new(col).text().null().to_owned()
}

fn big_pk<C: IntoIden + 'static>(col: C) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn index(name: &str) -> IndexCreateStatement {
    Index::create().name(name).if_not_exists().to_owned()
}

// The trait's signatures elide the schema manager's lifetime; spelling it out here makes the
// impl disagree with the trait about where the lifetime is bound.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // SQLite would run without a transaction by default; one keeps a crash from leaving
    // half a schema behind (PostgreSQL already runs inside the locked transaction).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(text(Tenants::Id).primary_key())
                    .col(text(Tenants::Name))
                    .col(text(Tenants::LocationId))
                    .col(
                        ColumnDef::new(Tenants::EkyteCompanyId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Tenants::Active).boolean().not_null())
                    .col(ColumnDef::new(Tenants::Settings).json_binary().not_null())
                    .col(timestamp(Tenants::CreatedAt))
                    .col(timestamp(Tenants::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Webhooks name only the location: this is both the lookup and the rule that one
        // location belongs to one tenant.
        manager
            .create_index(
                index("tenants_location_key")
                    .table(Tenants::Table)
                    .col(Tenants::LocationId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .col(text(Credentials::TenantId))
                    .col(
                        text(Credentials::Provider)
                            .check(one_of(Credentials::Provider, &["ghl", "ekyte"])),
                    )
                    .col(text(Credentials::KeyId))
                    .col(ColumnDef::new(Credentials::Nonce).blob().not_null())
                    .col(ColumnDef::new(Credentials::Ciphertext).blob().not_null())
                    .col(timestamp_null(Credentials::ExpiresAt))
                    .col(
                        ColumnDef::new(Credentials::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(timestamp(Credentials::CreatedAt))
                    .col(timestamp(Credentials::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .name("credentials_pkey")
                            .col(Credentials::TenantId)
                            .col(Credentials::Provider),
                    )
                    .foreign_key(&mut tenant_fk(
                        "credentials_tenant_fkey",
                        Credentials::Table,
                        Credentials::TenantId,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Links::Table)
                    .col(big_pk(Links::Id))
                    .col(text(Links::TenantId))
                    .col(text(Links::Kind))
                    .col(text_null(Links::GhlId))
                    .col(text_null(Links::EkyteId))
                    .col(text_null(Links::GhlParent))
                    .col(text_null(Links::EkyteParent))
                    .col(
                        text(Links::State)
                            .check(one_of(Links::State, &["claimed", "linked", "deleted"])),
                    )
                    .col(ColumnDef::new(Links::Base).json_binary().not_null())
                    .col(text_null(Links::GhlFp))
                    .col(text_null(Links::EkyteFp))
                    .col(ColumnDef::new(Links::Version).big_integer().not_null())
                    .col(text_null(Links::ClaimedBy))
                    .col(timestamp_null(Links::ClaimedAt))
                    .col(timestamp(Links::CreatedAt))
                    .col(timestamp(Links::UpdatedAt))
                    // A link is keyed on the side the record exists on; one without any id
                    // could never be found again.
                    .check(
                        Expr::col(Links::GhlId)
                            .is_not_null()
                            .or(Expr::col(Links::EkyteId).is_not_null()),
                    )
                    .foreign_key(&mut tenant_fk(
                        "links_tenant_fkey",
                        Links::Table,
                        Links::TenantId,
                    ))
                    .to_owned(),
            )
            .await?;
        // "Exactly one create" (DESIGN.md §4) rests on these two: a claim is an insert that
        // only one writer can win.
        manager
            .create_index(
                index("links_ghl_key")
                    .table(Links::Table)
                    .col(Links::TenantId)
                    .col(Links::Kind)
                    .col(Links::GhlId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("links_ekyte_key")
                    .table(Links::Table)
                    .col(Links::TenantId)
                    .col(Links::Kind)
                    .col(Links::EkyteId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("links_ghl_parent_idx")
                    .table(Links::Table)
                    .col(Links::TenantId)
                    .col(Links::Kind)
                    .col(Links::GhlParent)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("links_ekyte_parent_idx")
                    .table(Links::Table)
                    .col(Links::TenantId)
                    .col(Links::Kind)
                    .col(Links::EkyteParent)
                    .to_owned(),
            )
            .await?;
        // Paging through one kind in id order.
        manager
            .create_index(
                index("links_kind_idx")
                    .table(Links::Table)
                    .col(Links::TenantId)
                    .col(Links::Kind)
                    .col(Links::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Inbox::Table)
                    .col(text(Inbox::TenantId))
                    .col(text(Inbox::Source))
                    .col(text(Inbox::DedupeKey))
                    .col(timestamp(Inbox::CreatedAt))
                    // The dedupe rule itself.
                    .primary_key(
                        Index::create()
                            .name("inbox_pkey")
                            .col(Inbox::TenantId)
                            .col(Inbox::Source)
                            .col(Inbox::DedupeKey),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruning by age.
        manager
            .create_index(
                index("inbox_created_idx")
                    .table(Inbox::Table)
                    .col(Inbox::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SyncRuns::Table)
                    .col(big_pk(SyncRuns::Id))
                    .col(text(SyncRuns::TenantId))
                    .col(
                        text(SyncRuns::Kind)
                            .check(one_of(SyncRuns::Kind, &["full", "incremental", "poll"])),
                    )
                    .col(text(SyncRuns::Status).check(one_of(
                        SyncRuns::Status,
                        &["running", "completed", "failed"],
                    )))
                    .col(text_null(SyncRuns::Cursor))
                    .col(timestamp_null(SyncRuns::Since))
                    .col(ColumnDef::new(SyncRuns::Counts).json_binary().not_null())
                    .col(text_null(SyncRuns::Error))
                    .col(timestamp(SyncRuns::StartedAt))
                    .col(timestamp(SyncRuns::UpdatedAt))
                    .col(timestamp_null(SyncRuns::FinishedAt))
                    .foreign_key(&mut tenant_fk(
                        "sync_runs_tenant_fkey",
                        SyncRuns::Table,
                        SyncRuns::TenantId,
                    ))
                    .to_owned(),
            )
            .await?;
        // The running run of a kind, the last completed one: both newest first.
        manager
            .create_index(
                index("sync_runs_kind_idx")
                    .table(SyncRuns::Table)
                    .col(SyncRuns::TenantId)
                    .col(SyncRuns::Kind)
                    .col(SyncRuns::Status)
                    .col((SyncRuns::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("sync_runs_recent_idx")
                    .table(SyncRuns::Table)
                    .col(SyncRuns::TenantId)
                    .col((SyncRuns::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        // At most one running run per tenant and kind, so two schedulers starting a full sync
        // at once resume the same run instead of starting two. Partial indexes have the same
        // syntax on both backends; the query builder has no form for them.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS sync_runs_one_running \
                 ON sync_runs (tenant_id, kind) WHERE status = 'running'",
            )
            .await?;

        // The audit log and dead letters are history: no foreign key, so that recording what
        // happened never fails because of what happened to the tenant row.
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk(AuditLog::Id))
                    .col(text(AuditLog::TenantId))
                    .col(timestamp(AuditLog::At))
                    .col(
                        text_null(AuditLog::Target)
                            .check(one_of(AuditLog::Target, &["ghl", "ekyte"])),
                    )
                    .col(text(AuditLog::Kind))
                    .col(text(AuditLog::Action))
                    .col(text_null(AuditLog::ContactId))
                    .col(text_null(AuditLog::GhlId))
                    .col(text_null(AuditLog::EkyteId))
                    .col(ColumnDef::new(AuditLog::Fields).json_binary().not_null())
                    .col(text_null(AuditLog::Reason))
                    .col(text_null(AuditLog::MessageId))
                    .col(ColumnDef::new(AuditLog::DryRun).boolean().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("audit_log_tenant_idx")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col((AuditLog::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("audit_log_contact_idx")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::ContactId)
                    .col((AuditLog::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .col(big_pk(DeadLetters::Id))
                    .col(text_null(DeadLetters::TenantId))
                    .col(text(DeadLetters::MessageId))
                    .col(text(DeadLetters::Kind))
                    .col(text(DeadLetters::Envelope))
                    .col(
                        ColumnDef::new(DeadLetters::ErrorChain)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeadLetters::Attempts)
                            .big_integer()
                            .not_null(),
                    )
                    .col(timestamp(DeadLetters::CreatedAt))
                    .col(timestamp_null(DeadLetters::ReplayedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("dead_letters_tenant_idx")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::TenantId)
                    .col((DeadLetters::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("dead_letters_message_idx")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::MessageId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeadLetters::Table.into_iden(),
            AuditLog::Table.into_iden(),
            SyncRuns::Table.into_iden(),
            Inbox::Table.into_iden(),
            Links::Table.into_iden(),
            Credentials::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
