use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::{SubsecRound, Utc};
use futures::future::join_all;
use ports::store::{
    Credential, CredentialSecret, CredentialStore, NewCredential, Provider, RefreshError,
};
use ports::{ApiError, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::{ExposeSecret, SecretString};
use store::test_support::{TestBackend, TestDb};
use store::{DataKey, Keyring};

use crate::support::{on_both, raw, tid, with_tenants};

on_both!(
    every_secret_kind_round_trips,
    tokens_are_not_stored_in_clear,
    another_key_fails_with_crypto,
    rotated_keys_read_old_rows_and_write_new_ones,
    reseal_moves_every_row_to_the_current_key,
    reseal_names_a_key_the_keyring_lacks,
    eight_refreshers_refresh_once,
    refresh_only_when_still_due_and_failures_change_nothing,
    agency_tenants_share_one_company_token_refreshed_once,
    all_reads_every_tenants_credential_at_once,
);

fn s(v: &str) -> SecretString {
    SecretString::from(v.to_owned())
}

fn oauth(access: &str, refresh: &str) -> NewCredential {
    NewCredential {
        secret: CredentialSecret::GhlOAuth {
            access_token: s(access),
            refresh_token: s(refresh),
            scopes: vec!["contacts.readonly".into(), "contacts.write".into()],
            user_type: "Location".into(),
            company_id: Some("comp-1".into()),
        },
        expires_at: Some(Utc::now().trunc_subsecs(6) + chrono::Duration::hours(1)),
    }
}

fn access_token(c: &Credential) -> String {
    match &c.secret {
        CredentialSecret::GhlOAuth { access_token, .. } => access_token.expose_secret().to_owned(),
        other => panic!("not OAuth: {other:?}"),
    }
}

fn keyring(id: &str) -> (Keyring, SecretString) {
    let key = DataKey::generate(id).unwrap();
    let b64 = key.to_base64();
    (Keyring::new(key), b64)
}

async fn every_secret_kind_round_trips(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    assert!(matches!(
        store.get(&t, Provider::Ghl).await,
        Err(StoreError::NotFound { .. })
    ));

    let first = oauth("at-1", "rt-1");
    let stored = store.put(&t, Provider::Ghl, &first).await.unwrap();
    assert_eq!(stored.version, 1);
    let read = store.get(&t, Provider::Ghl).await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.expires_at, first.expires_at);
    assert_eq!(read.updated_at, stored.updated_at);
    match &read.secret {
        CredentialSecret::GhlOAuth {
            access_token,
            refresh_token,
            scopes,
            user_type,
            company_id,
        } => {
            assert_eq!(access_token.expose_secret(), "at-1");
            assert_eq!(refresh_token.expose_secret(), "rt-1");
            assert_eq!(scopes.len(), 2);
            assert_eq!(user_type, "Location");
            assert_eq!(company_id.as_deref(), Some("comp-1"));
        }
        other => panic!("{other:?}"),
    }

    // Replacing bumps the version; the other provider is another row.
    let private = NewCredential {
        secret: CredentialSecret::GhlPrivate { token: s("pit-1") },
        expires_at: None,
    };
    assert_eq!(
        store
            .put(&t, Provider::Ghl, &private)
            .await
            .unwrap()
            .version,
        2
    );
    let read = store.get(&t, Provider::Ghl).await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.expires_at, None);
    assert!(
        matches!(&read.secret, CredentialSecret::GhlPrivate { token } if token.expose_secret() == "pit-1")
    );

    let ekyte = NewCredential {
        secret: CredentialSecret::Ekyte {
            api_key: s("ek-1"),
            mcp_token: Some(s("mcp-1")),
        },
        expires_at: None,
    };
    store.put(&t, Provider::Ekyte, &ekyte).await.unwrap();
    let read = store.get(&t, Provider::Ekyte).await.unwrap();
    assert!(matches!(
        &read.secret,
        CredentialSecret::Ekyte { api_key, mcp_token: Some(m) }
            if api_key.expose_secret() == "ek-1" && m.expose_secret() == "mcp-1"
    ));
    // Debug output of what the store returns never shows a secret.
    assert!(!format!("{read:?}").contains("ek-1"));

    store.delete(&t, Provider::Ghl).await.unwrap();
    assert!(matches!(
        store.get(&t, Provider::Ghl).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.get(&t, Provider::Ekyte).await.is_ok());
    store.delete(&t, Provider::Ghl).await.unwrap();
    // Credentials of a tenant that does not exist are refused.
    assert!(matches!(
        store.put(&tid("ghost"), Provider::Ghl, &private).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Every byte of every credentials row, as stored: binary columns as bytes, the rest as text.
async fn dump_credentials(db: &TestDb) -> Vec<Vec<u8>> {
    let conn = raw(db).await;
    let backend = conn.get_database_backend();
    let sql = match backend {
        // The whole row as text (bytea renders as hex there), plus the binary columns raw.
        DbBackend::Postgres => {
            "SELECT row_to_json(c)::text AS whole, c.nonce, c.ciphertext FROM credentials c"
        }
        _ => {
            "SELECT tenant_id || '|' || provider || '|' || key_id || '|' || \
             coalesce(expires_at, '') || '|' || version || '|' || hex(nonce) || '|' || \
             hex(ciphertext) AS whole, nonce, ciphertext FROM credentials"
        }
    };
    let rows = conn
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    let mut out = Vec::new();
    for row in rows {
        let whole: String = row.try_get("", "whole").unwrap();
        let nonce: Vec<u8> = row.try_get("", "nonce").unwrap();
        let ciphertext: Vec<u8> = row.try_get("", "ciphertext").unwrap();
        assert_eq!(nonce.len(), 12);
        assert!(!ciphertext.is_empty());
        out.extend([whole.into_bytes(), nonce, ciphertext]);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The token's bytes in every form a careless store might write them.
fn forms(token: &str) -> Vec<Vec<u8>> {
    let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        token.as_bytes().to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(token)
            .into_bytes(),
    ]
}

async fn tokens_are_not_stored_in_clear(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    let access = "access-4f1c9e2b7d3a48e6a1b0c5d2e9f87a63";
    let refresh = "refresh-9a8b7c6d5e4f30211f2e3d4c5b6a7988";
    store
        .put(&tid("acme"), Provider::Ghl, &oauth(access, refresh))
        .await
        .unwrap();
    let dump = dump_credentials(&db).await;
    // The check itself can see a token when there is one.
    assert!(contains(
        format!("x{access}x").as_bytes(),
        access.as_bytes()
    ));
    for token in [access, refresh] {
        for form in forms(token) {
            for column in &dump {
                assert!(
                    !contains(column, &form),
                    "a form of {token} is stored in clear"
                );
            }
        }
    }
    // And the row still decrypts.
    let read = store.get(&tid("acme"), Provider::Ghl).await.unwrap();
    assert_eq!(access_token(&read), access);
}

async fn another_key_fails_with_crypto(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    store
        .put(&tid("acme"), Provider::Ghl, &oauth("at", "rt"))
        .await
        .unwrap();

    // Same key id, other key bytes: the configuration changed under us.
    let (same_id, _) = keyring("test-key");
    let other = db.store_with(same_id).await.unwrap();
    match other.get(&tid("acme"), Provider::Ghl).await {
        Err(StoreError::Crypto { message }) => {
            assert!(
                message.contains("test-key") && message.contains("acme"),
                "{message}"
            )
        }
        other => panic!("expected Crypto, got {other:?}"),
    }
    // A key id that is not configured at all.
    let (unknown, _) = keyring("k9");
    let other = db.store_with(unknown).await.unwrap();
    match other.get(&tid("acme"), Provider::Ghl).await {
        Err(StoreError::Crypto { message }) => {
            assert!(message.contains("not in the keyring"), "{message}")
        }
        other => panic!("expected Crypto, got {other:?}"),
    }
}

/// A store whose keyring holds only `k1`, with acme's GHL tokens (`at-old`, `rt-old`) sealed
/// under it; and the key.
async fn sealed_under_k1(db: &TestDb) -> (store::Store, SecretString) {
    let (ring, b64) = keyring("k1");
    let store = db.store_with(ring).await.unwrap();
    store
        .put(&tid("acme"), Provider::Ghl, &oauth("at-old", "rt-old"))
        .await
        .unwrap();
    (store, b64)
}

async fn rotated_keys_read_old_rows_and_write_new_ones(b: TestBackend) {
    let (db, _) = with_tenants(b).await;
    let (old, old_b64) = sealed_under_k1(&db).await;

    let new_key = DataKey::generate("k2").unwrap();
    let spec = format!(
        "k2:{},k1:{}",
        new_key.to_base64().expose_secret(),
        old_b64.expose_secret()
    );
    let rotated = db
        .store_with(Keyring::parse(&SecretString::from(spec)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        access_token(&rotated.get(&tid("acme"), Provider::Ghl).await.unwrap()),
        "at-old"
    );
    rotated
        .put(&tid("acme"), Provider::Ghl, &oauth("at-new", "rt-new"))
        .await
        .unwrap();
    let conn = raw(&db).await;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT key_id FROM credentials",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "key_id").unwrap(), "k2");
    // The old keyring alone can no longer read it.
    assert!(matches!(
        old.get(&tid("acme"), Provider::Ghl).await,
        Err(StoreError::Crypto { .. })
    ));
}

fn ekyte_key(key: &str) -> NewCredential {
    NewCredential {
        secret: CredentialSecret::Ekyte {
            api_key: s(key),
            mcp_token: Some(s("mcp-old")),
        },
        expires_at: None,
    }
}

async fn key_ids(db: &TestDb) -> Vec<String> {
    let conn = raw(db).await;
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT key_id FROM credentials ORDER BY tenant_id, provider",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "key_id").unwrap())
    .collect()
}

async fn reseal_moves_every_row_to_the_current_key(b: TestBackend) {
    let (db, _) = with_tenants(b).await;
    let (old, old_b64) = sealed_under_k1(&db).await;
    let ghl = old.get(&tid("acme"), Provider::Ghl).await.unwrap();
    old.put(&tid("acme"), Provider::Ekyte, &ekyte_key("api-old"))
        .await
        .unwrap();
    // An agency's company token, sealed in its own row.
    ports::store::AgencyStore::put_agency(&old, "co1", &oauth("at-co", "rt-co"), false)
        .await
        .unwrap();

    let new_key = DataKey::generate("k2").unwrap();
    let new_b64 = new_key.to_base64();
    let spec = format!(
        "k2:{},k1:{}",
        new_b64.expose_secret(),
        old_b64.expose_secret()
    );
    let rotated = db
        .store_with(Keyring::parse(&SecretString::from(spec)).unwrap())
        .await
        .unwrap();
    let report = rotated.reseal_credentials().await.unwrap();
    assert_eq!(
        (
            report.resealed,
            report.already_current,
            report.changed_meanwhile
        ),
        (3, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.by_key.get("k2"), Some(&3), "{report:?}");
    assert_eq!(key_ids(&db).await, ["k2", "k2"]);

    // The new key alone reads both, with the same secrets and the same version (so a token
    // refresh that read the row before the re-seal still writes).
    let only_new = db
        .store_with(Keyring::new(DataKey::from_base64("k2", &new_b64).unwrap()))
        .await
        .unwrap();
    let read = only_new.get(&tid("acme"), Provider::Ghl).await.unwrap();
    assert_eq!(access_token(&read), "at-old");
    assert_eq!(read.version, ghl.version);
    assert_eq!(read.expires_at, ghl.expires_at);
    match only_new
        .get(&tid("acme"), Provider::Ekyte)
        .await
        .unwrap()
        .secret
    {
        CredentialSecret::Ekyte { api_key, .. } => assert_eq!(api_key.expose_secret(), "api-old"),
        other => panic!("not eKyte: {other:?}"),
    }
    // The old key alone no longer reads anything.
    assert!(matches!(
        old.get(&tid("acme"), Provider::Ghl).await,
        Err(StoreError::Crypto { .. })
    ));

    // The agency's token too: the new key alone reads it, for its tenants.
    let mut agency_tenant = ports::store::TenantStore::get(&only_new, &tid("other"))
        .await
        .unwrap();
    agency_tenant.install.kind = domain::InstallKind::Agency;
    agency_tenant.install.company_id = Some("co1".into());
    ports::store::TenantStore::upsert(&only_new, &agency_tenant)
        .await
        .unwrap();
    let via_agency = CredentialStore::get(&only_new, &tid("other"), Provider::Ghl)
        .await
        .unwrap();
    assert_eq!(access_token(&via_agency), "at-co");

    // A second run has nothing to do.
    let again = rotated.reseal_credentials().await.unwrap();
    assert_eq!((again.resealed, again.already_current), (0, 3), "{again:?}");
}

async fn reseal_names_a_key_the_keyring_lacks(b: TestBackend) {
    let (db, _) = with_tenants(b).await;
    sealed_under_k1(&db).await;
    let (new_ring, _) = keyring("k2");
    let new = db.store_with(new_ring).await.unwrap();
    match new.reseal_credentials().await {
        Err(StoreError::Crypto { message }) => assert!(message.contains("k1"), "{message}"),
        other => panic!("expected Crypto naming k1, got {other:?}"),
    }
    assert_eq!(key_ids(&db).await, ["k1"], "nothing was rewritten");
}

fn due_within(secs: i64) -> ports::store::DuePredicate {
    Box::new(move |c: &Credential| {
        c.expires_at
            .is_none_or(|t| t < Utc::now() + chrono::Duration::seconds(secs))
    })
}

async fn eight_refreshers_refresh_once(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let mut expired = oauth("at-old", "rt-old");
    expired.expires_at = Some(Utc::now() - chrono::Duration::minutes(1));
    store.put(&t, Provider::Ghl, &expired).await.unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let tasks = (0..8).map(|_| {
        let store = store.clone();
        let calls = calls.clone();
        let t = t.clone();
        tokio::spawn(async move {
            store
                .with_credential_lock(
                    &t,
                    Provider::Ghl,
                    due_within(60),
                    Box::new(move |current: Credential| {
                        Box::pin(async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            // The single-use refresh token is spent here, once.
                            let CredentialSecret::GhlOAuth { refresh_token, .. } = &current.secret
                            else {
                                return Err(ApiError::unsupported("refresh"));
                            };
                            assert_eq!(refresh_token.expose_secret(), "rt-old");
                            // Stands for the HTTP round trip, so the others pile up on the lock.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(oauth("at-new", "rt-new"))
                        })
                    }),
                )
                .await
        })
    });
    let results: Vec<Credential> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refresh must run exactly once"
    );
    for c in &results {
        assert_eq!(access_token(c), "at-new");
        assert_eq!(c.version, 2);
    }
    let stored = store.get(&t, Provider::Ghl).await.unwrap();
    assert_eq!(access_token(&stored), "at-new");
    assert_eq!(stored.version, 2);
}

async fn refresh_only_when_still_due_and_failures_change_nothing(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    assert!(matches!(
        store
            .with_credential_lock(
                &t,
                Provider::Ghl,
                due_within(60),
                Box::new(|_| Box::pin(async { Ok(oauth("x", "y")) })),
            )
            .await,
        Err(RefreshError::Store(StoreError::NotFound { .. }))
    ));

    store
        .put(&t, Provider::Ghl, &oauth("at-1", "rt-1"))
        .await
        .unwrap();
    // Expires in an hour: not due, refresh never called.
    let current = store
        .with_credential_lock(
            &t,
            Provider::Ghl,
            due_within(60),
            Box::new(|_| panic!("refresh called on a credential that is not due")),
        )
        .await
        .unwrap();
    assert_eq!(
        (access_token(&current), current.version),
        ("at-1".into(), 1)
    );

    // Due, but the vendor refuses: the error comes back, the row is unchanged, the lock is free.
    let err = store
        .with_credential_lock(
            &t,
            Provider::Ghl,
            due_within(7200),
            Box::new(|_| {
                Box::pin(async {
                    Err(ApiError::Unauthorized {
                        message: "invalid_grant".into(),
                    })
                })
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        RefreshError::Api(ApiError::Unauthorized { .. })
    ));
    let unchanged = store.get(&t, Provider::Ghl).await.unwrap();
    assert_eq!(
        (access_token(&unchanged), unchanged.version),
        ("at-1".into(), 1)
    );
    let refreshed = tokio::time::timeout(
        Duration::from_secs(10),
        store.with_credential_lock(
            &t,
            Provider::Ghl,
            due_within(7200),
            Box::new(|_| Box::pin(async { Ok(oauth("at-2", "rt-2")) })),
        ),
    )
    .await
    .expect("the lock was left held after a failed refresh")
    .unwrap();
    assert_eq!(
        (access_token(&refreshed), refreshed.version),
        ("at-2".into(), 2)
    );
}

/// Two tenants of one agency install read its company token as their GHL credential, and
/// refresh it under one lock: four refreshers over the two tenants spend the single-use
/// refresh token once. A token of a tenant's own wins; the agency's UNINSTALL removes it.
async fn agency_tenants_share_one_company_token_refreshed_once(b: TestBackend) {
    use ports::store::{AgencyStore, TenantStore};
    let (_db, store) = with_tenants(b).await;
    for id in ["acme", "other"] {
        let mut t = TenantStore::get(&store, &tid(id)).await.unwrap();
        t.install.kind = domain::InstallKind::Agency;
        t.install.company_id = Some("co1".into());
        TenantStore::upsert(&store, &t).await.unwrap();
    }
    let mut company = oauth("at-co", "rt-co");
    if let CredentialSecret::GhlOAuth {
        user_type,
        company_id,
        ..
    } = &mut company.secret
    {
        *user_type = "Company".into();
        *company_id = Some("co1".into());
    }
    company.expires_at = Some(Utc::now() - chrono::Duration::minutes(1));
    let installed = store.put_agency("co1", &company, true).await.unwrap();
    assert!(installed.install_to_future);
    assert_eq!(installed.version, 1);
    for id in ["acme", "other"] {
        let c = CredentialStore::get(&store, &tid(id), Provider::Ghl)
            .await
            .unwrap();
        assert_eq!(access_token(&c), "at-co");
        assert_eq!(c.tenant, tid(id));
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks = ["acme", "other", "acme", "other"].map(|id| {
        let store = store.clone();
        let calls = calls.clone();
        tokio::spawn(async move {
            store
                .with_credential_lock(
                    &tid(id),
                    Provider::Ghl,
                    due_within(60),
                    Box::new(move |current: Credential| {
                        Box::pin(async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            let CredentialSecret::GhlOAuth { refresh_token, .. } = &current.secret
                            else {
                                return Err(ApiError::unsupported("refresh"));
                            };
                            assert_eq!(refresh_token.expose_secret(), "rt-co");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(oauth("at-co-2", "rt-co-2"))
                        })
                    }),
                )
                .await
        })
    });
    for r in join_all(tasks).await {
        let c = r.unwrap().unwrap();
        assert_eq!(access_token(&c), "at-co-2");
        assert_eq!(c.version, 2);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one refresh for the company"
    );
    assert_eq!(store.agency_install("co1").await.unwrap().version, 2);
    // No row of the tenants' own was written: the token lives once, sealed, in the agency's.
    assert_eq!(
        access_token(
            &CredentialStore::get(&store, &tid("other"), Provider::Ghl)
                .await
                .unwrap()
        ),
        "at-co-2"
    );
    // A token of the tenant's own wins over the agency's.
    store
        .put(&tid("acme"), Provider::Ghl, &oauth("at-own", "rt-own"))
        .await
        .unwrap();
    assert_eq!(
        access_token(
            &CredentialStore::get(&store, &tid("acme"), Provider::Ghl)
                .await
                .unwrap()
        ),
        "at-own"
    );
    store.delete_agency("co1").await.unwrap();
    assert!(matches!(
        CredentialStore::get(&store, &tid("other"), Provider::Ghl).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.agency_install("co1").await,
        Err(StoreError::NotFound { .. })
    ));
    // A tenant that is not of an agency never reads one.
    let mut plain = TenantStore::get(&store, &tid("other")).await.unwrap();
    plain.install = Default::default();
    TenantStore::upsert(&store, &plain).await.unwrap();
    store.put_agency("co1", &company, false).await.unwrap();
    assert!(
        CredentialStore::get(&store, &tid("other"), Provider::Ghl)
            .await
            .is_err()
    );
}

/// `all`: every tenant's credential of one provider in one call, each as `get` gives it: a
/// tenant's own row, an agency tenant's company token, and a row that does not decrypt as
/// its error (the others still read). Storing a new credential forgets a failed check.
async fn all_reads_every_tenants_credential_at_once(b: TestBackend) {
    use ports::store::{AgencyStore, TenantStore};
    let (db, store) = with_tenants(b).await;
    let mut third = TenantStore::get(&store, &tid("other")).await.unwrap();
    third.id = tid("third");
    third.location_id = domain::LocationId::parse("loc-third").unwrap();
    third.install.kind = domain::InstallKind::Agency;
    third.install.company_id = Some("co1".into());
    TenantStore::upsert(&store, &third).await.unwrap();
    assert!(store.all(Provider::Ghl).await.unwrap().is_empty());
    store
        .put(&tid("acme"), Provider::Ghl, &oauth("at-acme", "rt-acme"))
        .await
        .unwrap();
    let mut company = oauth("at-co", "rt-co");
    if let CredentialSecret::GhlOAuth {
        user_type,
        company_id,
        ..
    } = &mut company.secret
    {
        *user_type = "Company".into();
        *company_id = Some("co1".into());
    }
    store.put_agency("co1", &company, false).await.unwrap();
    let ekyte = NewCredential {
        secret: CredentialSecret::Ekyte {
            api_key: s("key-other"),
            mcp_token: None,
        },
        expires_at: None,
    };
    store
        .put(&tid("other"), Provider::Ekyte, &ekyte)
        .await
        .unwrap();
    let ghl = store.all(Provider::Ghl).await.unwrap();
    let ids: Vec<&str> = ghl.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(ids, ["acme", "third"], "in tenant order; other has none");
    assert_eq!(access_token(ghl[0].1.as_ref().unwrap()), "at-acme");
    let agency = ghl[1].1.as_ref().unwrap();
    assert_eq!(access_token(agency), "at-co", "the agency's token");
    assert_eq!(agency.tenant, tid("third"));
    let ek = store.all(Provider::Ekyte).await.unwrap();
    assert_eq!(ek.len(), 1);
    assert_eq!(ek[0].0, tid("other"));

    // A row another key sealed: its error, and the others still read.
    let (same_id, _) = keyring("test-key");
    let foreign = db.store_with(same_id).await.unwrap();
    foreign
        .put(&tid("other"), Provider::Ghl, &oauth("at-x", "rt-x"))
        .await
        .unwrap();
    let ghl = store.all(Provider::Ghl).await.unwrap();
    assert_eq!(ghl.len(), 3);
    let other = &ghl.iter().find(|(t, _)| t == &tid("other")).unwrap().1;
    assert!(matches!(other, Err(StoreError::Crypto { .. })), "{other:?}");
    assert_eq!(ghl.iter().filter(|(_, c)| c.is_ok()).count(), 2);

    // A new credential forgets the failure of the old one.
    store
        .note_refresh(&tid("other"), Provider::Ekyte, Some("unauthorized".into()))
        .await
        .unwrap();
    store
        .put(&tid("other"), Provider::Ekyte, &ekyte)
        .await
        .unwrap();
    assert_eq!(
        store
            .refresh_failure(&tid("other"), Provider::Ekyte)
            .await
            .unwrap(),
        None
    );
}
