//! The appointments a full sync read from the location's calendars (issue 17): written once
//! per run as the calendars are read, then read back page by page for the never-synced
//! contacts of each page, so that a worker does not hold a whole location's appointments in
//! memory. A run's rows are deleted when it finishes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SweepAppointments {
    Table,
    RunId,
    ContactId,
    AppointmentId,
    Record,
}

// The trait's signature has the elided lifetime; the impl must match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SweepAppointments as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(ColumnDef::new(S::RunId).big_integer().not_null())
                    .col(ColumnDef::new(S::ContactId).text().not_null())
                    .col(ColumnDef::new(S::AppointmentId).text().not_null())
                    // The appointment as JSON (`ports::ghl::GhlAppointment`).
                    .col(ColumnDef::new(S::Record).text().not_null())
                    .primary_key(
                        Index::create()
                            .name("sweep_appointments_pkey")
                            .col(S::RunId)
                            .col(S::ContactId)
                            .col(S::AppointmentId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SweepAppointments::Table).to_owned())
            .await
    }
}
