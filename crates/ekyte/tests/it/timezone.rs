//! eKyte date-times carry no zone: they are written and read in the tenant's zone, so an
//! instant round-trips, and eKyte stores the instant that was meant.

use chrono::{TimeZone, Utc};
use domain::{EkyteWorkspaceId, FieldChange, FieldValue, Task};
use ports::ekyte::EkyteApi;
use sandbox::ekyte::{EkyteConfig as SimConfig, EkyteSandbox};

use crate::support::{Env, seed_company_in};

async fn round_trip(env: &Env) {
    let c = env.company();
    let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
    // Late in the UTC day, so the local day differs from the UTC day in most zones.
    let due = Utc.with_ymd_and_hms(2026, 3, 5, 23, 45, 30).unwrap();
    let task = Task {
        title: Some("Prazo".into()),
        due: Some(due),
        ..Task::default()
    };
    let id = env
        .adapter
        .create_task(&env.scope, ws, &task)
        .await
        .unwrap();
    // eKyte stored the instant we meant (not the same wall-clock time in another zone)…
    assert_eq!(
        env.sb.task(c, id.get() as i64).unwrap().current_due_date,
        Some(due)
    );
    // …and reading it back gives the same UTC instant.
    let read = env.adapter.get_task(&env.scope, id).await.unwrap();
    assert_eq!(read.task.due, Some(due));

    let due2 = Utc.with_ymd_and_hms(2026, 10, 31, 2, 15, 0).unwrap();
    env.adapter
        .update_task(
            &env.scope,
            id,
            &[FieldChange {
                field: "due",
                from: FieldValue::Time(Some(due)),
                to: FieldValue::Time(Some(due2)),
            }],
            &domain::Task {
                title: Some("Prazo".into()),
                due: Some(due2),
                ..domain::Task::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        env.sb.task(c, id.get() as i64).unwrap().current_due_date,
        Some(due2)
    );
    let listed = env.adapter.list_tasks(&env.scope, ws, false).await.unwrap();
    assert_eq!(
        listed.iter().find(|t| t.id == id).unwrap().task.due,
        Some(due2)
    );
    assert_eq!(env.sb.counters().snapshot().event("zoned_date_input"), 0);
}

#[tokio::test]
async fn due_dates_round_trip_in_sao_paulo() {
    let env = Env::start(true).await;
    assert_eq!(
        env.scope.tenant.settings.ekyte.timezone,
        "America/Sao_Paulo"
    );
    round_trip(&env).await;
}

#[tokio::test]
async fn due_dates_round_trip_in_a_half_hour_zone() {
    let sb = EkyteSandbox::start(SimConfig::default()).await.unwrap();
    let co = seed_company_in(&sb, "Asia/Kolkata");
    let env = Env::over(sb, co, true);
    assert_eq!(env.scope.tenant.settings.ekyte.timezone, "Asia/Kolkata");
    round_trip(&env).await;
}
