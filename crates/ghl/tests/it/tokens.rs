//! Tokens against the simulator's OAuth server: single-use refresh tokens, expiry, 401s,
//! `invalid_grant` after another replica refreshed, revoked installs, PITs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use domain::{GhlContactId, TenantId};
use ghl::GhlAdapter;
use ports::ghl::GhlApi;
use ports::store::{
    Credential, CredentialSecret, CredentialStore, DuePredicate, NewCredential, Provider,
    RefreshError, Refresher,
};
use ports::{ApiError, StoreError};
use sandbox::ghl::{OAuthClientSpec, OAuthConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::support::{LOCATION, MemoryCredentials, World, adapter_config, scope, tenant};

/// A location install stored for `tenant` with the given expiry; returns the access token.
async fn install(
    w: &World,
    store: &dyn CredentialStore,
    tenant: &TenantId,
    expires_in: chrono::Duration,
) -> String {
    w.ghl
        .register_oauth_client(OAuthClientSpec::default())
        .unwrap();
    let pair = w
        .ghl
        .issue_tokens("sandbox-client", LOCATION, None)
        .unwrap();
    store
        .put(
            tenant,
            Provider::Ghl,
            &NewCredential {
                secret: CredentialSecret::GhlOAuth {
                    access_token: SecretString::from(pair.access_token.clone()),
                    refresh_token: SecretString::from(pair.refresh_token),
                    scopes: vec![],
                    user_type: "Location".into(),
                    company_id: None,
                },
                expires_at: Some(Utc::now() + expires_in),
            },
        )
        .await
        .unwrap();
    pair.access_token
}

async fn contact(w: &World) -> GhlContactId {
    let id = w
        .ghl
        .seed_contacts(LOCATION, &[json!({"firstName": "Tok"})])
        .unwrap()
        .remove(0);
    GhlContactId::parse(id).unwrap()
}

async fn eight_calls(adapter: &GhlAdapter, t: &Arc<domain::Tenant>, c: &GhlContactId) {
    let calls = (0..8).map(|_| {
        let (adapter, s, c) = (adapter.clone(), scope(t), c.clone());
        tokio::spawn(async move { adapter.get_contact(&s, &c).await })
    });
    for h in futures::future::join_all(calls).await {
        h.unwrap().expect("every call succeeds");
    }
}

#[tokio::test]
async fn eight_calls_with_an_expired_token_refresh_exactly_once() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("oauth", LOCATION);
    let access = install(&w, w.store.as_ref(), &t.id, chrono::Duration::minutes(-1)).await;
    w.ghl.expire_access_token(&access);
    w.ghl.counters().reset();

    eight_calls(&w.adapter, &t, &c).await;

    let counters = w.ghl.counter_snapshot();
    assert_eq!(counters.route_total("POST", "/oauth/token"), 1);
    assert_eq!(counters.event("oauth_refresh"), 1);
    assert_eq!(
        counters.event("oauth_refresh_rejected"),
        0,
        "no invalid_grant"
    );
    assert_eq!(counters.status_total(401), 0, "refreshed before use");
    assert_eq!(
        w.store.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let stored = w.store.current(&t.id).unwrap();
    assert_eq!(stored.version, 2, "persisted");
    assert!(stored.expires_at.unwrap() > Utc::now() + chrono::Duration::hours(23));
}

/// A refresh says `user_type` in GHL's spelling (`Company | Location`, [O2]), whatever the
/// stored credential says: the simulator, by default, refuses a refresh without it or with
/// another value.
#[tokio::test]
async fn a_refresh_sends_the_user_type_in_the_spelling_ghl_takes() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("oauth", LOCATION);
    w.ghl
        .register_oauth_client(OAuthClientSpec::default())
        .unwrap();
    let pair = w
        .ghl
        .issue_tokens("sandbox-client", LOCATION, None)
        .unwrap();
    w.store
        .put(
            &t.id,
            Provider::Ghl,
            &NewCredential {
                secret: CredentialSecret::GhlOAuth {
                    access_token: SecretString::from(pair.access_token.clone()),
                    refresh_token: SecretString::from(pair.refresh_token),
                    scopes: vec![],
                    user_type: "location".into(),
                    company_id: None,
                },
                expires_at: Some(Utc::now() - chrono::Duration::minutes(1)),
            },
        )
        .await
        .unwrap();
    w.ghl.expire_access_token(&pair.access_token);
    w.adapter.get_contact(&scope(&t), &c).await.unwrap();
    let counters = w.ghl.counter_snapshot();
    assert_eq!(counters.event("oauth_refresh"), 1);
    assert_eq!(counters.event("oauth_refresh_rejected"), 0);
    match w.store.current(&t.id).unwrap().secret {
        CredentialSecret::GhlOAuth { user_type, .. } => assert_eq!(user_type, "Location"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn eight_calls_refused_with_401_refresh_exactly_once() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("oauth", LOCATION);
    // The store believes the token is good for a day; GHL has revoked it.
    let access = install(&w, w.store.as_ref(), &t.id, chrono::Duration::days(1)).await;
    w.adapter.get_contact(&scope(&t), &c).await.unwrap();
    w.ghl.expire_access_token(&access);
    w.ghl.counters().reset();

    eight_calls(&w.adapter, &t, &c).await;

    let counters = w.ghl.counter_snapshot();
    assert_eq!(counters.event("oauth_refresh"), 1);
    assert_eq!(counters.event("oauth_refresh_rejected"), 0);
    assert_eq!(counters.status_total(401), 8, "each call met the 401 once");
    assert_eq!(
        counters.status_total(200),
        8 + 1,
        "eight retries and the refresh"
    );
}

#[tokio::test]
async fn two_replicas_racing_to_refresh_use_the_lock_and_refresh_once() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("oauth", LOCATION);
    install(&w, w.store.as_ref(), &t.id, chrono::Duration::minutes(-1)).await;
    let second = w.replica(|c| c);
    let a = eight_calls(&w.adapter, &t, &c);
    let b = eight_calls(&second, &t, &c);
    tokio::join!(a, b);
    assert_eq!(w.ghl.counter_snapshot().event("oauth_refresh"), 1);
    assert_eq!(w.ghl.counter_snapshot().event("oauth_refresh_rejected"), 0);
}

/// A store whose lock hands the refresher an old read, as when another process wrote a newer
/// credential without taking the lock (an `oauth exchange` from the CLI, an older release).
struct StaleUnderLock {
    inner: Arc<MemoryCredentials>,
    stale: std::sync::Mutex<Option<Credential>>,
}

#[async_trait]
impl CredentialStore for StaleUnderLock {
    async fn all(
        &self,
        p: Provider,
    ) -> Result<Vec<(TenantId, ports::store::CredentialRead)>, StoreError> {
        self.inner.all(p).await
    }
    async fn get(&self, t: &TenantId, p: Provider) -> Result<Credential, StoreError> {
        self.inner.get(t, p).await
    }
    async fn put(
        &self,
        t: &TenantId,
        p: Provider,
        c: &NewCredential,
    ) -> Result<Credential, StoreError> {
        self.inner.put(t, p, c).await
    }
    async fn delete(&self, t: &TenantId, p: Provider) -> Result<(), StoreError> {
        self.inner.delete(t, p).await
    }
    async fn with_credential_lock(
        &self,
        t: &TenantId,
        p: Provider,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        let stale = self.stale.lock().unwrap().take();
        let current = match stale {
            Some(old) => old,
            None => self.inner.get(t, p).await?,
        };
        if !due(&current) {
            return Ok(current);
        }
        let new = refresh(current).await?;
        Ok(self.inner.put(t, p, &new).await?)
    }
}

#[tokio::test]
async fn invalid_grant_reads_the_store_again_before_giving_up() {
    let w = World::start().await;
    let c = contact(&w).await;
    let inner = MemoryCredentials::new();
    let store = Arc::new(StaleUnderLock {
        inner: inner.clone(),
        stale: std::sync::Mutex::new(None),
    });
    let t = tenant("oauth", LOCATION);
    let access = install(&w, store.as_ref(), &t.id, chrono::Duration::days(1)).await;
    let adapter = GhlAdapter::new(adapter_config(&w.ghl.base_url()), store.clone()).unwrap();
    adapter.get_contact(&scope(&t), &c).await.unwrap();

    // Another replica refreshes and stores the new pair; our lock will not show it.
    let v1 = inner.current(&t.id).unwrap();
    let refreshed = adapter.oauth().refresh(&v1.secret).await.unwrap();
    inner
        .put(&t.id, Provider::Ghl, &refreshed.credential)
        .await
        .unwrap();
    *store.stale.lock().unwrap() = Some(v1);
    w.ghl.expire_access_token(&access);

    let got = adapter.get_contact(&scope(&t), &c).await.unwrap();
    assert_eq!(got.id, c);
    let counters = w.ghl.counter_snapshot();
    assert_eq!(
        counters.event("oauth_refresh_rejected"),
        1,
        "the spent token was refused"
    );
    assert_eq!(
        counters.event("oauth_refresh"),
        1,
        "only the other replica's refresh"
    );
}

#[tokio::test]
async fn a_revoked_install_asks_for_a_reinstall() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("oauth", LOCATION);
    install(&w, w.store.as_ref(), &t.id, chrono::Duration::days(1)).await;
    w.ghl.act_uninstall(LOCATION, None).unwrap();
    match w.adapter.get_contact(&scope(&t), &c).await {
        Err(ApiError::Unauthorized { message }) => {
            assert!(message.contains("reinstalled"), "{message}");
            assert!(!message.contains("rt-"), "no token in messages: {message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_refresh_grace_window_makes_a_lost_answer_harmless() {
    // GHL answers an identical refresh within 30 s with the same pair ([CHLOG]).
    let w = World::start().await;
    w.ghl.set_oauth_config(OAuthConfig {
        refresh_grace_secs: 30,
        ..OAuthConfig::default()
    });
    let t = tenant("oauth", LOCATION);
    install(&w, w.store.as_ref(), &t.id, chrono::Duration::days(1)).await;
    let v1 = w.store.current(&t.id).unwrap();
    let oauth = w.adapter.oauth();
    let first = oauth.refresh(&v1.secret).await.unwrap();
    let again = oauth.refresh(&v1.secret).await.unwrap();
    let token = |i: &ghl::Installation| match &i.credential.secret {
        CredentialSecret::GhlOAuth { refresh_token, .. } => {
            refresh_token.expose_secret().to_owned()
        }
        _ => unreachable!(),
    };
    assert_eq!(token(&first), token(&again));
}

#[tokio::test]
async fn a_refused_private_token_says_what_to_do() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("pit", LOCATION);
    w.store
        .put(
            &t.id,
            Provider::Ghl,
            &NewCredential {
                secret: CredentialSecret::GhlPrivate {
                    token: SecretString::from("pit-not-registered".to_owned()),
                },
                expires_at: None,
            },
        )
        .await
        .unwrap();
    match w.adapter.get_contact(&scope(&t), &c).await {
        Err(ApiError::Unauthorized { message }) => {
            assert!(message.contains("private integration token"), "{message}");
            assert!(!message.contains("pit-not-registered"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A new PIT stored meanwhile is picked up on the next 401.
    let fresh = w
        .ghl
        .register_pit(sandbox::ghl::PitSpec {
            location_id: Some(LOCATION.into()),
            scopes: ghl::default_scopes(),
            ..Default::default()
        })
        .unwrap();
    w.store
        .put(
            &t.id,
            Provider::Ghl,
            &NewCredential {
                secret: CredentialSecret::GhlPrivate {
                    token: SecretString::from(fresh),
                },
                expires_at: None,
            },
        )
        .await
        .unwrap();
    w.adapter.get_contact(&scope(&t), &c).await.unwrap();
}

#[tokio::test]
async fn a_tenant_without_credentials_is_unauthorized() {
    let w = World::start().await;
    let t = tenant("nobody", LOCATION);
    match w
        .adapter
        .get_contact(&scope(&t), &GhlContactId::parse("x").unwrap())
        .await
    {
        Err(ApiError::Unauthorized { message }) => {
            assert!(message.contains("no GHL credential"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_inactive_location_refuses_refreshes_without_spending_the_token() {
    let w = World::start().await;
    let c = contact(&w).await;
    let t = tenant("oauth", LOCATION);
    install(&w, w.store.as_ref(), &t.id, chrono::Duration::minutes(-1)).await;
    w.ghl
        .update_location(
            LOCATION,
            sandbox::ghl::LocationUpdate {
                active: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    match w.adapter.get_contact(&scope(&t), &c).await {
        Err(ApiError::Unauthorized { message }) => {
            assert!(message.contains("not active"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    w.ghl
        .update_location(
            LOCATION,
            sandbox::ghl::LocationUpdate {
                active: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    // The refresh token was not spent: it works once the location is active again.
    w.adapter.get_contact(&scope(&t), &c).await.unwrap();
    assert_eq!(w.ghl.counter_snapshot().event("oauth_refresh"), 1);
}
