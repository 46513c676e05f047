use chrono::{TimeZone, Utc};
use domain::{EntityKind, GhlContactId, Side};
use ports::store::{AuditAction, AuditEntry, AuditLog, AuditQuery, FailureCount};
use store::test_support::TestBackend;

use crate::support::{on_both, tid, with_tenants};

on_both!(
    append_and_query_newest_first,
    failures_since_per_tenant_and_cause,
    by_message_prefix_takes_the_prefix_literally,
);

fn entry(tenant: &str, contact: Option<&str>, n: u32) -> AuditEntry {
    AuditEntry {
        tenant: tid(tenant),
        // Sub-microsecond digits are dropped by the store on both backends.
        at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(i64::from(n) * 1001),
        target: n.is_multiple_of(2).then_some(Side::Ekyte),
        kind: EntityKind::Task,
        action: if n.is_multiple_of(3) {
            AuditAction::Conflict
        } else {
            AuditAction::Update
        },
        contact: contact.map(|c| GhlContactId::parse(c).unwrap()),
        ghl_id: Some(format!("g{n}")),
        ekyte_id: None,
        fields: vec!["title".into(), format!("f{n}")],
        reason: (n == 3).then(|| "both sides changed".into()),
        message_id: Some(format!("m{n}")),
        dry_run: n == 4,
        calls: (n == 5).then_some(ports::store::ApiCalls { ghl: 2, ekyte: 3 }),
    }
}

fn query(contact: Option<&str>, before_id: Option<i64>, limit: u32) -> AuditQuery {
    AuditQuery {
        tenant: tid("acme"),
        contact: contact.map(|c| GhlContactId::parse(c).unwrap()),
        before_id,
        limit,
    }
}

async fn append_and_query_newest_first(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    store.append(&[]).await.unwrap();
    let entries = [
        entry("acme", Some("c1"), 1),
        entry("acme", Some("c2"), 2),
        entry("acme", Some("c1"), 3),
        entry("other", Some("c1"), 4),
        entry("acme", None, 5),
        entry("acme", Some("c1"), 6),
    ];
    store.append(&entries[..3]).await.unwrap();
    store.append(&entries[3..]).await.unwrap();

    let all = store.query(&query(None, None, 100)).await.unwrap();
    let got: Vec<_> = all.iter().map(|r| r.entry.clone()).collect();
    let want: Vec<_> = entries
        .iter()
        .rev()
        .filter(|e| e.tenant.as_str() == "acme")
        .cloned()
        .collect();
    assert_eq!(got, want, "newest first, only this tenant, stored as given");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));

    let c1 = store.query(&query(Some("c1"), None, 2)).await.unwrap();
    let ns: Vec<_> = c1.iter().map(|r| r.entry.ghl_id.clone().unwrap()).collect();
    assert_eq!(ns, ["g6", "g3"]);
    let next = store
        .query(&query(Some("c1"), Some(c1[1].id), 2))
        .await
        .unwrap();
    let ns: Vec<_> = next
        .iter()
        .map(|r| r.entry.ghl_id.clone().unwrap())
        .collect();
    assert_eq!(ns, ["g1"]);
    assert!(
        store
            .query(&query(Some("c1"), Some(next[0].id), 2))
            .await
            .unwrap()
            .is_empty()
    );
}

fn failed(tenant: &str, minutes_ago: i64, reason: Option<&str>) -> AuditEntry {
    AuditEntry {
        at: Utc::now() - chrono::Duration::minutes(minutes_ago),
        action: AuditAction::Failed,
        reason: reason.map(str::to_owned),
        ..entry(tenant, Some("c1"), 1)
    }
}

async fn failures_since_per_tenant_and_cause(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let since = Utc::now() - chrono::Duration::hours(1);
    assert!(store.failures_since(since).await.unwrap().is_empty());
    let forbidden = |what: &str| {
        format!("GHL create onboarding task failed: forbidden: the token lacks {what}.write")
    };
    store
        .append(&[
            failed("acme", 5, Some(&forbidden("tasks"))),
            failed("acme", 10, Some(&forbidden("contacts"))),
            failed(
                "acme",
                20,
                Some("eKyte create note failed: invalid request: field 12 is empty"),
            ),
            failed("acme", 30, None),
            // Too old, and not a failure.
            failed("acme", 90, Some(&forbidden("tasks"))),
            entry("acme", Some("c1"), 2),
            failed("other", 1, Some(&forbidden("tasks"))),
        ])
        .await
        .unwrap();
    let got = store.failures_since(since).await.unwrap();
    let counts: Vec<_> = got
        .iter()
        .map(|f| (f.tenant.as_str(), f.cause.as_str(), f.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("acme", "GHL create onboarding task failed: forbidden", 2),
            ("acme", "eKyte create note failed: invalid request", 1),
            ("acme", "no error recorded", 1),
            ("other", "GHL create onboarding task failed: forbidden", 1),
        ],
        "by tenant, the most frequent cause first, then by cause"
    );
    let newest: &FailureCount = &got[0];
    let five_ago = Utc::now() - chrono::Duration::minutes(5);
    assert!(
        newest.last_at <= five_ago && newest.last_at > five_ago - chrono::Duration::minutes(1),
        "the newest of the group: {}",
        newest.last_at
    );
    assert!(
        store
            .failures_since(Utc::now() + chrono::Duration::minutes(1))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A dry-run's entries share a message-id prefix: they are read oldest first, of one tenant,
/// and the prefix's `_` and `%` match only themselves.
async fn by_message_prefix_takes_the_prefix_literally(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let with_id = |tenant: &str, n: u32, id: &str| AuditEntry {
        message_id: Some(id.to_owned()),
        ..entry(tenant, Some("c1"), n)
    };
    store
        .append(&[
            with_id("acme", 1, "dry_1:c1"),
            with_id("acme", 2, "dryX1:c2"),
            with_id("acme", 3, "dry_1:c3"),
            with_id("other", 4, "dry_1:c4"),
            with_id("acme", 5, "dry%1:c5"),
            with_id("acme", 6, "dry_1"),
            with_id("acme", 7, "xdry_1:c7"),
        ])
        .await
        .unwrap();
    let ids = |records: Vec<ports::store::AuditRecord>| -> Vec<String> {
        records
            .into_iter()
            .map(|r| r.entry.message_id.unwrap())
            .collect()
    };
    assert_eq!(
        ids(store
            .by_message_prefix(&tid("acme"), "dry_1", 10)
            .await
            .unwrap()),
        ["dry_1:c1", "dry_1:c3", "dry_1"]
    );
    assert_eq!(
        ids(store
            .by_message_prefix(&tid("acme"), "dry_1:", 1)
            .await
            .unwrap()),
        ["dry_1:c1"],
        "at most the limit, oldest first"
    );
    assert_eq!(
        ids(store
            .by_message_prefix(&tid("acme"), "dry%", 10)
            .await
            .unwrap()),
        ["dry%1:c5"]
    );
    assert!(
        store
            .by_message_prefix(&tid("acme"), "nothing", 10)
            .await
            .unwrap()
            .is_empty()
    );
}
