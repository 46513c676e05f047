use chrono::{TimeZone, Utc};
use domain::{EntityKind, GhlContactId, Side};
use ports::store::{AuditAction, AuditEntry, AuditLog, AuditQuery};
use store::test_support::TestBackend;

use crate::support::{on_both, tid, with_tenants};

on_both!(append_and_query_newest_first);

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
