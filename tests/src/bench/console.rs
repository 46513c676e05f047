//! Benchmark 7: the operator console's tenants page for many tenants, over HTTP on loopback,
//! on SQLite and on PostgreSQL. Each tenant has a GHL token, eKyte keys, a full, an
//! incremental and a poll run, a rate budget and a queue wait observed; every tenth has a dead
//! letter. The report gives the page's time to the last byte (median, p95, max of
//! `--requests` loads after one warm-up) and its size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::PasswordHasher as _;
use secrecy::SecretString;
use serde_json::{Value, json};

use app::config::{ConsoleAccount, ConsoleRole};
use app::queue::memory::MemoryBroker;
use app::wiring::{self, App};
use domain::{EkyteCompanyId, LocationId, Tenant, TenantId, TenantSettings};
use ports::store::{
    CredentialSecret, CredentialStore, DeadLetterStore, NewCredential, NewDeadLetter, Observations,
    Provider, QueueObservation, RateObservation, RunCounts, RunKind, RunStatus, RunStore,
    TenantStore,
};
use store::test_support::{TestBackend, TestDb};

use super::rig::base_config;
use super::round3;

#[derive(Debug, Clone)]
pub struct ConsoleArgs {
    pub tenants: usize,
    pub requests: usize,
}

const PASSWORD: &str = "bench-password";

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

async fn seed(app: &App, n: usize) -> anyhow::Result<()> {
    let store = app.store.as_ref();
    for i in 0..n {
        let tenant = Tenant {
            id: TenantId::parse(format!("tenant-{i:04}"))?,
            name: format!("Client {i}"),
            location_id: LocationId::parse(format!("benchLocation{i:06}"))?,
            ekyte_company_id: EkyteCompanyId::new(1000 + (i as u64 % 7))?,
            active: i % 13 != 0,
            settings: TenantSettings::default(),
            install: Default::default(),
        };
        TenantStore::upsert(store, &tenant).await?;
        CredentialStore::put(
            store,
            &tenant.id,
            Provider::Ghl,
            &NewCredential {
                secret: CredentialSecret::GhlPrivate {
                    token: SecretString::from(format!("pit-{i}")),
                },
                expires_at: None,
            },
        )
        .await?;
        CredentialStore::put(
            store,
            &tenant.id,
            Provider::Ekyte,
            &NewCredential {
                secret: CredentialSecret::Ekyte {
                    api_key: SecretString::from(format!("ekyte-key-{i}")),
                    mcp_token: (i % 2 == 0).then(|| SecretString::from(format!("mcp-{i}"))),
                },
                expires_at: None,
            },
        )
        .await?;
        let now = chrono::Utc::now();
        Observations::note_rates(
            store,
            &[RateObservation {
                resource: tenant.location_id.to_string(),
                max: 100,
                interval_ms: 10_000,
                remaining: Some(60),
                daily_limit: 200_000,
                daily_remaining: Some(150_000 - i as u64),
                throttled: 0,
                at: now,
            }],
        )
        .await?;
        Observations::note_queue(
            store,
            &[QueueObservation {
                tenant: tenant.id.clone(),
                taken: 20,
                longest_wait_ms: 1_500,
                last_wait_ms: 40,
                at: now,
            }],
        )
        .await?;
        for kind in [RunKind::Full, RunKind::Incremental, RunKind::Poll] {
            let run = RunStore::start_or_resume(store, &tenant.id, kind, None).await?;
            RunStore::checkpoint(
                store,
                run.id,
                None,
                RunCounts {
                    pages: 3,
                    seen: 250,
                    enqueued: 12,
                    skipped: 238,
                    errors: u64::from(i % 10 == 0),
                    api_calls: 40,
                },
            )
            .await?;
            let failed = kind == RunKind::Poll && i % 17 == 0;
            RunStore::finish(
                store,
                run.id,
                if failed {
                    RunStatus::Failed
                } else {
                    RunStatus::Completed
                },
                failed.then(|| "eKyte answered 503".to_owned()),
            )
            .await?;
        }
        if i % 10 == 0 {
            DeadLetterStore::put(
                store,
                &NewDeadLetter {
                    tenant: Some(tenant.id.clone()),
                    message_id: format!("bench-dead-{i}"),
                    kind: "sync.contact".into(),
                    envelope: "{}".into(),
                    error_chain: vec!["GHL get contact failed".into(), "unauthorized".into()],
                    attempts: 5,
                },
            )
            .await?;
        }
    }
    Ok(())
}

async fn one_backend(backend: TestBackend, args: &ConsoleArgs) -> anyhow::Result<Value> {
    let db = TestDb::fresh(backend)
        .await
        .with_context(|| format!("a fresh {backend} database"))?;
    let mut cfg = base_config()?;
    cfg.database.url = SecretString::from(db.url().to_owned());
    cfg.crypto.key = SecretString::from(store::test_support::random_key_base64());
    cfg.console.enabled = true;
    let salt = argon2::password_hash::SaltString::encode_b64(b"bench-console-salt")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    cfg.console.accounts = vec![ConsoleAccount {
        user: "bench".into(),
        password_hash: SecretString::from(hash),
        role: ConsoleRole::Operator,
        tenants: vec![],
    }];
    let ring = wiring::keyring(&cfg, true)?;
    let store = wiring::connect_store(&cfg, ring).await?;
    let app = App::build(cfg, store, Arc::new(MemoryBroker::new())).await?;
    let started = Instant::now();
    seed(&app, args.tenants).await?;
    eprintln!(
        "console bench ({backend}): {} tenants seeded in {:.1}s",
        args.tenants,
        started.elapsed().as_secs_f64()
    );

    let stop = tokio_util::sync::CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(app::ingress::serve(listener, app.ingress()?, stop.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = http
        .post(format!("{base}/console/login"))
        .form(&[("user", "bench"), ("password", PASSWORD)])
        .send()
        .await?;
    anyhow::ensure!(login.status() == 303, "login: {}", login.status());
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("a session cookie")?
        .to_owned();
    let load = || async {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/console/tenants"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "tenants page: {}", r.status());
        let body = r.text().await?;
        Ok::<_, anyhow::Error>((t.elapsed(), body))
    };
    let (_, body) = load().await?;
    let rows = body.matches("data-tenant=").count();
    anyhow::ensure!(
        rows == args.tenants,
        "{rows} rows for {} tenants",
        args.tenants
    );
    let mut times = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        times.push(load().await?.0);
    }
    // Which load was the slowest (0 = the first after the warm-up).
    let slowest = times
        .iter()
        .enumerate()
        .max_by_key(|(_, t)| **t)
        .map_or(0, |(i, _)| i);
    times.sort();
    stop.cancel();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Ok(json!({
        "backend": backend.to_string(),
        "tenants": args.tenants,
        "requests": args.requests,
        "bytes": body.len(),
        "median_ms": ms(at(0.5)),
        "p95_ms": ms(at(0.95)),
        "max_ms": ms(*times.last().unwrap_or(&Duration::ZERO)),
        "slowest_load": slowest,
    }))
}

pub async fn run(args: &ConsoleArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(args.tenants > 0 && args.requests > 0, "nothing to measure");
    let sqlite = one_backend(TestBackend::Sqlite, args).await?;
    let postgres = one_backend(TestBackend::Postgres, args).await?;
    Ok(json!({ "benchmark": "console", "sqlite": sqlite, "postgres": postgres }))
}
