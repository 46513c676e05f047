//! Agency installs: the company token for the agency's own calls, and the pending locations
//! an install approved before they have a tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, SubsecRound, Utc};
use domain::LocationId;
use ports::StoreError;
use ports::store::{AgencyStore, CredentialSecret, NewCredential, PendingLocation, RefreshError};
use secrecy::{ExposeSecret, SecretString};
use store::test_support::TestBackend;

use crate::support::{on_both, setup};

on_both!(
    pending_locations_are_kept_until_mapped_or_uninstalled,
    the_agency_refreshes_its_own_token_under_the_lock,
    a_refresh_failure_is_kept_until_a_refresh_succeeds,
);

async fn a_refresh_failure_is_kept_until_a_refresh_succeeds(b: TestBackend) {
    use ports::store::{CredentialStore, Provider};
    let (_db, store) = setup(b).await;
    let t = domain::TenantId::parse("acme").unwrap();
    assert_eq!(
        store.refresh_failure(&t, Provider::Ghl).await.unwrap(),
        None
    );
    store
        .note_refresh(&t, Provider::Ghl, Some("invalid_grant".into()))
        .await
        .unwrap();
    store
        .note_refresh(&t, Provider::Ghl, Some("invalid_grant again".into()))
        .await
        .unwrap();
    let f = store
        .refresh_failure(&t, Provider::Ghl)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(f.error, "invalid_grant again", "the last one");
    assert_eq!(
        store.refresh_failure(&t, Provider::Ekyte).await.unwrap(),
        None
    );
    store.note_refresh(&t, Provider::Ghl, None).await.unwrap();
    assert_eq!(
        store.refresh_failure(&t, Provider::Ghl).await.unwrap(),
        None
    );
}

fn company_token(access: &str) -> NewCredential {
    NewCredential {
        secret: CredentialSecret::GhlOAuth {
            access_token: SecretString::from(access.to_owned()),
            refresh_token: SecretString::from(format!("{access}-refresh")),
            scopes: vec!["oauth.readonly".into(), "oauth.write".into()],
            user_type: "Company".into(),
            company_id: Some("co1".into()),
        },
        expires_at: Some(Utc::now().trunc_subsecs(0) + Duration::hours(1)),
    }
}

fn pending(location: &str, company: &str, name: &str) -> PendingLocation {
    PendingLocation {
        location_id: LocationId::parse(location).unwrap(),
        company_id: company.into(),
        name: Some(name.into()),
        since: Utc::now().trunc_subsecs(0),
        reason: "no mapping rule".into(),
    }
}

async fn pending_locations_are_kept_until_mapped_or_uninstalled(b: TestBackend) {
    let (_db, store) = setup(b).await;
    store
        .put_agency("co1", &company_token("at-1"), false)
        .await
        .unwrap();
    let first = pending("locB", "co1", "Client B");
    store.put_pending(&first).await.unwrap();
    store
        .put_pending(&pending("locA", "co1", "Client A"))
        .await
        .unwrap();
    store
        .put_pending(&pending("locZ", "co2", "Other"))
        .await
        .unwrap();

    // Recorded again (a second install): the new name and reason, the first `since`.
    let mut again = pending("locB", "co1", "Client B renamed");
    again.since = first.since + Duration::hours(2);
    again.reason = "the mapped tenant failed its checks".into();
    store.put_pending(&again).await.unwrap();
    let all = store.pending_locations().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|p| p.location_id.as_str()).collect();
    assert_eq!(ids, ["locA", "locB", "locZ"], "in location order");
    let b_row = &all[1];
    assert_eq!(b_row.name.as_deref(), Some("Client B renamed"));
    assert_eq!(b_row.reason, "the mapped tenant failed its checks");
    assert_eq!(b_row.since, first.since, "the first sighting stays");

    // Mapped: gone; taking it twice is no error.
    store.take_pending(&first.location_id).await.unwrap();
    store.take_pending(&first.location_id).await.unwrap();
    let ids: Vec<String> = store
        .pending_locations()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.location_id.to_string())
        .collect();
    assert_eq!(ids, ["locA", "locZ"]);

    // The agency uninstalls: its pending locations go with its token, no one else's.
    store.delete_agency("co1").await.unwrap();
    let left = store.pending_locations().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].company_id, "co2");
}

async fn the_agency_refreshes_its_own_token_under_the_lock(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let store = Arc::new(store);
    let missing = store
        .with_agency_lock(
            "co1",
            Box::new(|_| true),
            Box::new(|_| Box::pin(async { unreachable!("nothing to refresh") })),
        )
        .await;
    assert!(
        matches!(
            missing,
            Err(RefreshError::Store(StoreError::NotFound { .. }))
        ),
        "{missing:?}"
    );
    let stored = store
        .put_agency("co1", &company_token("at-1"), false)
        .await
        .unwrap();

    // Not due: the stored token, no refresh.
    let calls = Arc::new(AtomicUsize::new(0));
    let refresher = |calls: Arc<AtomicUsize>| -> ports::store::Refresher {
        Box::new(move |current| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                assert_eq!(
                    access(&current.secret),
                    "at-1",
                    "refreshes the stored token"
                );
                Ok(company_token("at-2"))
            })
        })
    };
    let c = store
        .with_agency_lock("co1", Box::new(|_| false), refresher(calls.clone()))
        .await
        .unwrap();
    assert_eq!(access(&c.secret), "at-1");
    assert_eq!(c.version, stored.version);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Four at once, due while the token is the first one: one refresh between them.
    let runs = (0..4).map(|_| {
        let (store, calls) = (store.clone(), calls.clone());
        async move {
            store
                .with_agency_lock(
                    "co1",
                    Box::new(|c| access(&c.secret) == "at-1"),
                    refresher(calls),
                )
                .await
                .unwrap()
        }
    });
    for c in futures::future::join_all(runs).await {
        assert_eq!(access(&c.secret), "at-2");
        assert_eq!(c.version, stored.version + 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(
        store.agency_install("co1").await.unwrap().version,
        stored.version + 1
    );
}

fn access(secret: &CredentialSecret) -> String {
    match secret {
        CredentialSecret::GhlOAuth { access_token, .. } => access_token.expose_secret().to_owned(),
        other => panic!("not OAuth: {other:?}"),
    }
}
