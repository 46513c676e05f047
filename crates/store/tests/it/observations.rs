//! What the workers observed: one row per subject, each report replacing the last.

use chrono::{SubsecRound, Utc};
use ports::store::{Observations, QueueObservation, RateObservation};
use store::test_support::TestBackend;

use crate::support::{on_both, setup, tid};

on_both!(each_report_replaces_the_last_of_its_subject);

fn rate(resource: &str, remaining: u32) -> RateObservation {
    RateObservation {
        resource: resource.into(),
        max: 100,
        interval_ms: 10_000,
        remaining: Some(remaining),
        daily_limit: 200_000,
        daily_remaining: None,
        throttled: 2,
        at: Utc::now().trunc_subsecs(6),
    }
}

async fn each_report_replaces_the_last_of_its_subject(b: TestBackend) {
    let (_db, store) = setup(b).await;
    assert!(store.rates().await.unwrap().is_empty());
    store.note_rates(&[]).await.unwrap();
    store
        .note_rates(&[rate("loc-a", 90), rate("loc-b", 50)])
        .await
        .unwrap();
    store.note_rates(&[rate("loc-a", 40)]).await.unwrap();
    let mut rates = store.rates().await.unwrap();
    rates.sort_by(|a, b| a.resource.cmp(&b.resource));
    let got: Vec<(&str, Option<u32>, u64)> = rates
        .iter()
        .map(|r| (r.resource.as_str(), r.remaining, r.throttled))
        .collect();
    assert_eq!(got, [("loc-a", Some(40), 2), ("loc-b", Some(50), 2)]);
    assert_eq!(rates[0].remaining, Some(40), "replaced");
    let wait = QueueObservation {
        tenant: tid("acme"),
        taken: 7,
        longest_wait_ms: 1_500,
        last_wait_ms: 20,
        at: Utc::now().trunc_subsecs(6),
    };
    store.note_queue(std::slice::from_ref(&wait)).await.unwrap();
    assert_eq!(store.queue_waits().await.unwrap(), vec![wait.clone()]);
    assert_eq!(store.rates().await.unwrap().len(), 2, "kinds apart");
}
