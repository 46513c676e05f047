//! The chaos suite (issue 9): the real binary as three workers and an ingress, against an own
//! RabbitMQ node and an own PostgreSQL cluster, and both simulators (in this process) with
//! faults — 20% 5xx on every GHL and eKyte route, 429 bursts, latency with a long tail, 5% of
//! webhooks dropped and 5% duplicated, some reordered.
//!
//! The scenario, on a schedule (the 10 s kill cadence is the test's schedule, not a guess at
//! how long work takes; every wait is on a condition with a deadline):
//! 1. 1,000 contacts with tasks, notes and appointments are seeded in GHL; a full sync starts;
//! 2. while it runs, people edit both sides (GHL edits arrive as webhooks, eKyte edits are
//!    found by polls), a random worker gets `kill -9` every 10 s and is restarted, the broker
//!    is restarted once and PostgreSQL once (crash-stopped), and a few poison messages are
//!    published on purpose;
//! 3. the reconciliation sweep: faults off, wait until quiet, then a full sync and an eKyte
//!    poll, each until quiet;
//! 4. the verdict: both sides agree field by field; nothing exists twice and the counts are
//!    the expected ones; the change behind every webhook that never got in arrived anyway;
//!    every webhook that got in was handled; the dead-letter queue holds exactly the poison;
//!    GHL never earned a 429; every process drains and exits 0 on SIGTERM; no log line of any
//!    process holds a planted secret.
//!
//! It prints one `CHAOS SUMMARY` line of figures, pass or fail, straight to stderr (past the
//! test harness's capture, so `cargo test` shows it).
//!
//! Run alone: `cargo test -p e2e --test chaos -- --nocapture` (progress lines included).

// Test code: an unwrap that fails is a failed test with a location, which is what we want.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database, Statement};
use secrecy::ExposeSecret;
use serde_json::Value;

use app::demo::sim::{World, WorldSpec};
use app::demo::verify::verify;
use domain::TenantId;
use e2e::chaos::fleet::Fleet;
use e2e::chaos::services::{PgCluster, RabbitNode, free_port};
use e2e::chaos::watch::{Queues, data_fingerprint, wait_quiet};
use e2e::security::Planted;
use ports::queue::{Envelope, Payload, SyncMode};
use sandbox::common::{FaultConfig, LatencyProfile};
use sandbox::ghl::WebhookFaults;

const CONTACTS: usize = 1000;

/// `CHAOS_CONTACTS` overrides the number of contacts (a quicker run while working on the
/// suite); the suite's claim is made with 1,000.
fn contacts() -> usize {
    std::env::var("CHAOS_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CONTACTS)
}
/// `CHAOS_SWEEP_BATCH` sets `sync.sweep_batch` (0: a sweep in one message); unset, the
/// fleet runs with the service's default (bounded sweeps of 200).
fn sweep_batch() -> String {
    std::env::var("CHAOS_SWEEP_BATCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| format!("sweep_batch = {n}"))
        .unwrap_or_default()
}
const WORKERS: usize = 3;
/// Queue names of this run's own (the node is ours too, but the names say whose they are).
const PREFIX: &str = "ges-chaos";
/// How long the faults, kills and edits go on.
const CHAOS_FOR: Duration = Duration::from_secs(100);
const KILL_EVERY: Duration = Duration::from_secs(10);
const BROKER_RESTART_AT: Duration = Duration::from_secs(35);
const POSTGRES_RESTART_AT: Duration = Duration::from_secs(65);
const POISON_AT: Duration = Duration::from_secs(20);
/// GHL edits: batches from 10 s on, every 6 s.
const GHL_EDIT_BATCH: usize = 25;
/// eKyte edits: batches once half the workspaces exist, every 8 s, each followed by a poll.
const EKYTE_EDIT_BATCH: usize = 15;
/// Bodies that are not envelopes at all.
const RAW_POISON: [&[u8]; 3] = [
    b"{ this is not JSON",
    br#"{"id":"chaos-poison-json","kind":"no.such.kind","data":{}}"#,
    b"\x00\xff\xfe binary garbage",
];
/// Envelopes for a tenant that does not exist.
const POISON_TENANT: &str = "chaos-poison";
const POISON_ENVELOPES: usize = 2;

fn faults(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        latency: LatencyProfile {
            base_ms: 1,
            jitter_ms: 15,
            tail_probability: 0.02,
            tail_ms: 1500,
        },
        error_rate: 0.20,
        burst_429_probability: 0.004,
        burst_429_length: 6,
        ..FaultConfig::default()
    }
}

/// The binary under test: the product's entry point (`app::cli::main`, exactly what
/// `crates/app/src/main.rs` runs), built by Cargo as a binary of this package so that this
/// test always gets a fresh build (stable Cargo hands a test only its own package's
/// binaries).
fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_ghl-ekyte-sync-e2e"))
}

fn secret(prefix: &str) -> String {
    format!(
        "{prefix}-{}{}",
        uuid::Uuid::new_v4().simple(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Figures for the summary line.
#[derive(Debug, Default)]
struct Figures {
    contacts: usize,
    ghl_edits: BTreeMap<&'static str, usize>,
    ekyte_edits: BTreeMap<&'static str, usize>,
    messages_handled: u64,
    webhooks_accepted: usize,
    kills: u32,
    crashes: usize,
    failed_starts: u32,
    worker_restarts: u32,
    broker_restarts: u32,
    postgres_restarts: u32,
    faults_ghl: u64,
    faults_ekyte: u64,
    webhooks_emitted: u64,
    webhooks_dropped: u64,
    webhooks_not_in: usize,
    webhooks_duplicated: u64,
    webhooks_reordered: u64,
    injected_429: u64,
    earned_429: u64,
    dead_letters: usize,
    poisoned: usize,
    api_calls_ghl: u64,
    api_calls_ekyte: u64,
    chaos_s: f64,
    sweep_s: f64,
    duration_s: f64,
    converged: bool,
}

impl Figures {
    fn line(&self) -> String {
        let edits = |m: &BTreeMap<&'static str, usize>| m.values().sum::<usize>();
        format!(
            "CHAOS SUMMARY contacts={} ghl_edits={} ekyte_edits={} messages_handled={} webhooks_accepted={} \
             kills={} crashes={} failed_starts={} restarts=workers:{}+broker:{}+postgres:{} faults_injected=ghl:{}+ekyte:{} \
             webhooks=emitted:{}+dropped:{}+never_in:{}+duplicated:{}+reordered:{} \
             429=injected:{}+earned:{} dead_letters={} (poisoned {}) api_calls=ghl:{}+ekyte:{} \
             chaos={:.0}s sweep={:.0}s duration={:.0}s converged={}",
            self.contacts,
            edits(&self.ghl_edits),
            edits(&self.ekyte_edits),
            self.messages_handled,
            self.webhooks_accepted,
            self.kills,
            self.crashes,
            self.failed_starts,
            self.worker_restarts,
            self.broker_restarts,
            self.postgres_restarts,
            self.faults_ghl,
            self.faults_ekyte,
            self.webhooks_emitted,
            self.webhooks_dropped,
            self.webhooks_not_in,
            self.webhooks_duplicated,
            self.webhooks_reordered,
            self.injected_429,
            self.earned_429,
            self.dead_letters,
            self.poisoned,
            self.api_calls_ghl,
            self.api_calls_ekyte,
            self.chaos_s,
            self.sweep_s,
            self.duration_s,
            self.converged,
        )
    }
}

/// Everything the run holds; dropped at the end (or on a panic) it stops every process and
/// server and removes the folder.
struct Rig {
    fleet: Fleet,
    rabbit: RabbitNode,
    pg: PgCluster,
    _dir: tempfile::TempDir,
}

/// The suite; `CHAOS_KEEP=1` keeps the run's folder (logs, dumps, the PostgreSQL data).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_suite() {
    let started = Instant::now();
    let mut figures = Figures {
        contacts: contacts(),
        ..Figures::default()
    };
    let outcome = run(&mut figures, started).await;
    figures.duration_s = started.elapsed().as_secs_f64();
    // Straight to the process's stderr: the harness captures `println!`/`eprintln!`, and
    // the summary is wanted in CI's output whether the suite passes or not.
    let _ = writeln!(std::io::stderr(), "{}", figures.line());
    match outcome {
        Ok(failures) if failures.is_empty() => {}
        Ok(failures) => panic!(
            "the chaos suite found {} problem(s):\n- {}",
            failures.len(),
            failures.join("\n- ")
        ),
        Err(e) => panic!("the chaos suite could not run: {e:#}"),
    }
}

/// The scenario; returns the failed assertions (an `Err` is a run that could not happen).
async fn run(figures: &mut Figures, started: Instant) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    let dir = tempfile::Builder::new()
        .prefix("ges-chaos-")
        .tempdir()
        .context("creating the run's folder")?;
    // The servers run as their own users and must reach their sub-folders.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;

    // ------------------------------------------------------------------ secrets to plant
    let pg_password = secret("pgpw");
    let rabbit_password = secret("mqpw");
    let client_secret = secret("ghl-client-secret");
    let crypto_key = store::DataKey::generate("k1")
        .map_err(|e| anyhow!("{e}"))?
        .to_base64();

    // ------------------------------------------------------------------ servers
    eprintln!(
        "chaos: starting RabbitMQ and PostgreSQL of our own in {}",
        dir.path().display()
    );
    let boot = Duration::from_secs(120);
    let (rabbit_dir, pg_dir) = (dir.path().join("rabbitmq"), dir.path().join("postgres"));
    let (rabbit, pg) = tokio::join!(
        RabbitNode::start(&rabbit_dir, &rabbit_password, boot),
        PgCluster::start(&pg_dir, &pg_password, boot),
    );
    let (rabbit, pg) = (rabbit?, pg?);

    // ------------------------------------------------------------------ simulators
    let n = contacts();
    let spec = WorldSpec {
        contacts: n,
        tasks_per_contact: 2,
        notes_per_contact: 1,
        appointments_per_contact: 1,
        businesses: 20,
        seed: 9,
        ghl_faults: faults(11),
        ekyte_faults: faults(12),
        // GHL's 100 requests per 10 s, time compressed ten-fold (as the demo does).
        ghl_rate_max: 100,
        ghl_rate_interval_ms: 1000,
        onboarding: true,
        ..WorldSpec::default()
    };
    let mut world = World::start(&spec).await?;
    world.ghl.set_webhook_faults(WebhookFaults {
        seed: 13,
        drop_probability: 0.05,
        duplicate_probability: 0.05,
        reorder_probability: 0.05,
        ..WebhookFaults::default()
    });
    // GHL retries a webhook only on 429, about every 10 minutes up to 6 times; compressed,
    // so a webhook refused during the broker's restart comes back.
    world.ghl.set_webhook_retry(6, Duration::from_secs(5));
    let (api_key, mcp_token, pit) = world.secrets();
    let mcp_token = mcp_token.context("the simulated eKyte admin has no MCP token")?;

    let mut planted = Planted::new();
    planted
        .add("PostgreSQL password", &pg_password)
        .add("RabbitMQ password", &rabbit_password)
        .add("GHL client secret", &client_secret)
        .add("crypto key", crypto_key.expose_secret())
        .add("eKyte API key", api_key.expose_secret())
        .add("eKyte MCP token", mcp_token.expose_secret())
        .add("GHL private integration token", pit.expose_secret());

    // ------------------------------------------------------------------ configuration
    let http_port = free_port()?;
    let retry_delays = vec![
        Duration::from_secs(1),
        Duration::from_secs(3),
        Duration::from_secs(8),
    ];
    let config_file = dir.path().join("chaos.toml");
    std::fs::write(
        &config_file,
        format!(
            r#"[database]
max_connections = 20
acquire_timeout = "10s"

[queue]
backend = "amqp"
prefix = "{PREFIX}"
prefetch = 8
max_attempts = 10
retry_delays = ["1s", "3s", "8s"]
confirm_timeout = "5s"

[ghl]
api_base = "{ghl}"
client_id = "chaos-client"
webhook_ed25519_key = """{key}"""
rate_max = {rate_max}
rate_interval = "{rate_interval}ms"
request_timeout = "10s"

[ekyte]
api_base = "{ekyte}"
request_timeout = "10s"

[sync]
# A claim left by a killed worker is taken over after this long (5 min in production;
# this run compresses time).
claim_stale_after = "30s"
{sweep_batch}

[worker]
drain_timeout = "20s"

[telemetry]
format = "json"
level = "info,app=debug,engine=debug,ghl=debug,ekyte=debug,store=debug"
"#,
            ghl = world.ghl.base_url(),
            key = world.ghl.webhook_public_key_pem(),
            ekyte = world.ekyte.base_url(),
            rate_max = spec.ghl_rate_max,
            rate_interval = spec.ghl_rate_interval_ms,
            sweep_batch = sweep_batch(),
        ),
    )?;
    // Secrets through the environment, as a Kubernetes Secret would hand them in.
    let env = vec![
        ("GES_CONFIG".to_owned(), config_file.display().to_string()),
        ("GES_DATABASE__URL".to_owned(), pg.url()),
        ("GES_QUEUE__URL".to_owned(), rabbit.url()),
        (
            "GES_CRYPTO__KEY".to_owned(),
            crypto_key.expose_secret().to_owned(),
        ),
        ("GES_GHL__CLIENT_SECRET".to_owned(), client_secret.clone()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    let mut rig = Rig {
        fleet: Fleet::new(&binary(), env, &dir.path().join("logs"))?,
        rabbit,
        pg,
        _dir: dir,
    };
    let fleet = &mut rig.fleet;
    let cmd_limit = Duration::from_secs(60);

    fleet.run(&["migrate"], &[], cmd_limit).await?;
    let tenant = world.tenant(&spec)?;
    let settings_file = rig._dir.path().join("tenant.json");
    std::fs::write(&settings_file, serde_json::to_vec(&tenant.settings)?)?;
    fleet
        .run(
            &[
                "tenants",
                "add",
                "--id",
                tenant.id.as_str(),
                "--location",
                &world.location,
                "--ekyte-company",
                &world.company.company_id.to_string(),
                "--settings",
                &settings_file.display().to_string(),
            ],
            &[
                ("GES_TENANT_EKYTE_API_KEY", api_key.expose_secret()),
                ("GES_TENANT_EKYTE_MCP_TOKEN", mcp_token.expose_secret()),
                ("GES_TENANT_GHL_TOKEN", pit.expose_secret()),
            ],
            cmd_limit,
        )
        .await?;

    // Each process serves health and metrics on a port of its own.
    for i in 1..=WORKERS {
        let bind = format!("127.0.0.1:{}", free_port()?);
        fleet.start(
            &format!("worker-{i}"),
            &["worker"],
            &[("GES_HTTP__BIND", bind.as_str())],
        )?;
    }
    let bind = format!("127.0.0.1:{http_port}");
    fleet.start(
        "ingress",
        &["ingress"],
        &[("GES_HTTP__BIND", bind.as_str())],
    )?;
    let ingress = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let ready_until = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("{ingress}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if Instant::now() > ready_until {
            anyhow::bail!("the ingress was not ready on {ingress}/readyz within 60 s");
        }
        // The polling interval of a readiness check with a deadline.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world
        .ghl
        .set_webhook_target(Some(format!("{ingress}/webhooks/ghl")));
    let queues = Queues::new(&rig.rabbit.url(), PREFIX, retry_delays)?;
    let db = Database::connect(rig.pg.url())
        .await
        .context("connecting to the chaos suite's PostgreSQL")?;

    // ------------------------------------------------------------------ chaos
    eprintln!("chaos: {n} contacts seeded; full sync, edits, kills and restarts for {CHAOS_FOR:?}");
    let chaos_started = Instant::now();
    fleet.run(&["sync", "full"], &[], cmd_limit).await?;
    let mut rng = StdRng::seed_from_u64(17);
    let mut next_kill = KILL_EVERY;
    let mut next_ghl_edit = Duration::from_secs(10);
    let mut next_ekyte_edit = Duration::from_secs(0);
    let mut next_progress = Duration::from_secs(5);
    let mut broker_restarted = false;
    let mut postgres_restarted = false;
    let mut poisoned: Option<Vec<String>> = None;
    let poison_envelopes: Vec<Envelope> = (0..POISON_ENVELOPES)
        .map(|i| {
            Envelope::new(
                format!("chaos-poison-envelope-{i}"),
                TenantId::parse(POISON_TENANT).expect("a valid tenant id"),
                Payload::SyncFull {
                    mode: SyncMode::Full,
                    dry_run: false,
                },
                chrono::Utc::now(),
            )
        })
        .collect();
    while chaos_started.elapsed() < CHAOS_FOR {
        let t = chaos_started.elapsed();
        rig.fleet.reap_and_revive()?;
        if t >= next_kill {
            let workers = rig.fleet.names("worker-");
            let victim = &workers[rng.gen_range(0..workers.len())];
            rig.fleet.kill_and_restart(victim).await?;
            next_kill += KILL_EVERY;
        }
        if !broker_restarted && t >= BROKER_RESTART_AT {
            eprintln!("chaos: restarting RabbitMQ at {t:?}");
            rig.rabbit.restart(Duration::from_secs(120)).await?;
            broker_restarted = true;
        }
        if !postgres_restarted && t >= POSTGRES_RESTART_AT {
            eprintln!("chaos: crash-restarting PostgreSQL at {t:?}");
            rig.pg.restart(Duration::from_secs(120)).await?;
            postgres_restarted = true;
        }
        if poisoned.is_none() && t >= POISON_AT {
            let raw: Vec<Vec<u8>> = RAW_POISON.iter().map(|b| b.to_vec()).collect();
            queues.publish_raw("bulk", &raw[..2]).await?;
            queues.publish_raw("realtime", &raw[2..]).await?;
            for env in &poison_envelopes {
                ports::queue::Publisher::publish(&queues.broker, env)
                    .await
                    .map_err(|e| anyhow!("publishing poison: {e}"))?;
            }
            poisoned = Some(poison_envelopes.iter().map(|e| e.id.clone()).collect());
        }
        if t >= next_ghl_edit {
            for (k, v) in world.ghl_edits(GHL_EDIT_BATCH)? {
                *figures.ghl_edits.entry(k).or_default() += v;
            }
            next_ghl_edit += Duration::from_secs(6);
        }
        if t >= next_ekyte_edit {
            let linked = world
                .ekyte
                .dump(world.company.company_id)
                .map_err(|e| anyhow!("{e:?}"))?
                .workspaces
                .iter()
                .filter(|w| w.external_id.is_some())
                .count();
            // People edit what the sync has already made: once a tenth of the workspaces
            // exist (the backfill takes most of the chaos phase).
            if linked >= n / 10 {
                for (k, v) in world.ekyte_edits(EKYTE_EDIT_BATCH)? {
                    *figures.ekyte_edits.entry(k).or_default() += v;
                }
                rig.fleet.run(&["poll-ekyte"], &[], cmd_limit).await?;
            }
            next_ekyte_edit = t + Duration::from_secs(8);
        }
        if t >= next_progress {
            let linked = world
                .ekyte
                .dump(world.company.company_id)
                .map(|d| {
                    d.workspaces
                        .iter()
                        .filter(|w| w.external_id.is_some())
                        .count()
                })
                .unwrap_or_default();
            eprintln!(
                "chaos: t={:>3}s workspaces linked {linked}/{n} queues {:?} kills {} api calls {} \
                 earned 429s {}",
                t.as_secs(),
                queues.depths().await,
                rig.fleet.kills,
                e2e::chaos::watch::api_requests(&world),
                world.ghl.counter_snapshot().event("rate_limited_earned"),
            );
            next_progress += Duration::from_secs(10);
        }
        // The schedule's tick.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    figures.chaos_s = chaos_started.elapsed().as_secs_f64();
    figures.kills = rig.fleet.kills;
    figures.broker_restarts = rig.rabbit.restarts;
    figures.postgres_restarts = rig.pg.restarts;

    // ------------------------------------------------------------------ the sweep
    eprintln!("chaos: faults off; reconciliation sweep");
    let sweep_started = Instant::now();
    world.ghl.set_faults(FaultConfig::default());
    world.ekyte.faults().set(FaultConfig::default());
    world.ghl.set_webhook_faults(WebhookFaults::default());
    let still = Duration::from_secs(3);
    let settle = Duration::from_secs(240);
    let earned = || world.ghl.counter_snapshot().event("rate_limited_earned");
    wait_quiet(&queues, &world, still, settle).await?;
    eprintln!("chaos: quiet after the faults; earned 429s {}", earned());
    rig.fleet.reap_and_revive()?;
    rig.fleet.run(&["sync", "full"], &[], cmd_limit).await?;
    wait_quiet(&queues, &world, still, settle).await?;
    eprintln!("chaos: full sync done; earned 429s {}", earned());
    rig.fleet.run(&["poll-ekyte"], &[], cmd_limit).await?;
    wait_quiet(&queues, &world, still, settle).await?;
    eprintln!("chaos: eKyte poll done; earned 429s {}", earned());
    let before_check = data_fingerprint(&world)?;
    figures.sweep_s = sweep_started.elapsed().as_secs_f64();

    // ------------------------------------------------------------------ the verdict
    let verdict = verify(&world)?;
    figures.converged = verdict.converged;
    if !verdict.converged {
        failures.push(format!(
            "GHL and eKyte disagree after the sweep ({} problems); the first: {}",
            verdict.problem_count,
            verdict.problems.join(" | ")
        ));
    }

    // Counts: nothing created twice, nothing missing.
    let ghl_dump = world
        .ghl
        .dump_location(&world.location)
        .map_err(|e| anyhow!("{e:?}"))?;
    let ek_dump = world
        .ekyte
        .dump(world.company.company_id)
        .map_err(|e| anyhow!("{e:?}"))?;
    let count = |v: &Value, k: &str| v[k].as_array().map_or(0, Vec::len);
    let ek_edit = |k: &str| figures.ekyte_edits.get(k).copied().unwrap_or(0);
    let ghl_edit = |k: &str| figures.ghl_edits.get(k).copied().unwrap_or(0);
    // The simulator's company starts with one workspace of its own ("Cliente Demo"), which
    // the poller carries to GHL like any workspace created in eKyte.
    let contacts_expected = n + 1 + ek_edit("workspace created");
    let onboarding = usize::from(spec.onboarding);
    let tasks_expected = n * spec.tasks_per_contact
        + contacts_expected * onboarding
        + ghl_edit("task created")
        + ek_edit("task created");
    let checks = [
        (
            "GHL contacts",
            count(&ghl_dump, "contacts"),
            contacts_expected,
        ),
        (
            "eKyte workspaces",
            ek_dump.workspaces.len(),
            contacts_expected,
        ),
        ("GHL tasks", count(&ghl_dump, "tasks"), tasks_expected),
        ("eKyte tasks", ek_dump.tasks.len(), tasks_expected),
    ];
    let mut counts_off = false;
    for (what, got, want) in checks {
        if got != want {
            counts_off = true;
            failures.push(format!("{what}: {got}, expected {want}"));
        }
    }
    if counts_off {
        // What an investigation needs first: the edits made, and the contacts whose
        // onboarding task is missing or doubled.
        let mut onboarding_per_contact: BTreeMap<String, usize> = count_by(&ghl_dump, "contacts")
            .into_iter()
            .map(|id| (id, 0))
            .collect();
        for t in ghl_dump["tasks"].as_array().into_iter().flatten() {
            if let (true, Some(c)) = (t["title"] == "Welcome call", t["contactId"].as_str()) {
                *onboarding_per_contact.entry(c.to_owned()).or_default() += 1;
            }
        }
        let odd: Vec<String> = onboarding_per_contact
            .iter()
            .filter(|(_, n)| **n != 1)
            .map(|(c, n)| format!("{c}:{n}"))
            .take(20)
            .collect();
        failures.push(format!(
            "edits: GHL {:?}, eKyte {:?}; contacts with other than one onboarding task: {odd:?}",
            figures.ghl_edits, figures.ekyte_edits
        ));
    }

    // Webhooks: which got in (the ingress remembers each accepted id), which never did.
    let rows = |sql: &str| {
        let db = &db;
        let sql = sql.to_owned();
        async move {
            let rows = db
                .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
                .await?;
            anyhow::Ok(
                rows.iter()
                    .filter_map(|r| r.try_get_by_index::<String>(0).ok())
                    .collect::<BTreeSet<String>>(),
            )
        }
    };
    let accepted = rows("SELECT dedupe_key FROM inbox WHERE source = 'webhook'").await?;
    let handled = rows("SELECT dedupe_key FROM inbox WHERE source = 'message'").await?;
    figures.webhooks_accepted = accepted.len();
    figures.messages_handled = handled.len() as u64;
    let log = world.ghl.webhook_log();
    let emitted = world.ghl.counter_snapshot().event("webhooks_emitted");
    if (log.len() as u64) < emitted {
        failures.push(format!(
            "the GHL simulator's webhook log kept {} of {emitted} events: the dropped-webhook check is incomplete",
            log.len()
        ));
    }
    let never_in: Vec<&Value> = log
        .iter()
        .filter(|w| {
            w["webhookId"]
                .as_str()
                .is_some_and(|id| !accepted.contains(id))
        })
        .collect();
    figures.webhooks_not_in = never_in.len();
    for problem in changes_missing(&never_in, &ghl_dump, &ek_dump, &world.location) {
        failures.push(format!(
            "a change behind a webhook that never got in is missing: {problem}"
        ));
    }
    let unhandled: Vec<&String> = accepted
        .iter()
        .filter(|id| !handled.contains(*id))
        .collect();
    if !unhandled.is_empty() {
        let kinds: BTreeMap<String, usize> = log
            .iter()
            .filter(|w| {
                w["webhookId"]
                    .as_str()
                    .is_some_and(|id| unhandled.iter().any(|u| u.as_str() == id))
            })
            .fold(BTreeMap::new(), |mut m, w| {
                *m.entry(w["type"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
                m
            });
        failures.push(format!(
            "{} accepted webhook(s) were never handled by a worker (lost messages): {kinds:?}",
            unhandled.len()
        ));
    }

    // GHL's rate limit.
    let g = world.ghl.counter_snapshot();
    let e = world.ekyte.counters().snapshot();
    figures.earned_429 = g.event("rate_limited_earned");
    figures.injected_429 = g.event("rate_limited_injected") + e.event("rate_limited_injected");
    figures.faults_ghl = g.event("fault_server_error") + g.event("rate_limited_injected");
    figures.faults_ekyte = e.event("fault_server_error") + e.event("rate_limited_injected");
    figures.webhooks_emitted = g.event("webhooks_emitted");
    figures.webhooks_dropped = g.event("webhooks_dropped");
    figures.webhooks_duplicated = g.event("webhooks_duplicated");
    figures.webhooks_reordered = g.event("webhooks_reordered");
    figures.api_calls_ghl = g.total_requests();
    figures.api_calls_ekyte = e.total_requests();
    if figures.earned_429 > 0 {
        failures.push(format!(
            "GHL answered {} 429(s) the service earned by exceeding its budget",
            figures.earned_429
        ));
    }
    if e.event("rate_limited_earned") > 0 {
        failures.push(format!(
            "eKyte answered {} 429(s) the service earned",
            e.event("rate_limited_earned")
        ));
    }

    // Nothing changed while we looked (the checks above read a settled system).
    if data_fingerprint(&world)? != before_check {
        failures.push("GHL or eKyte changed after the system was quiet".into());
    }

    // The data as it ended, next to the logs (kept with CHAOS_KEEP=1).
    std::fs::write(
        rig._dir.path().join("ghl-dump.json"),
        serde_json::to_vec_pretty(&ghl_dump)?,
    )?;
    std::fs::write(
        rig._dir.path().join("ekyte-dump.json"),
        serde_json::to_vec_pretty(&ek_dump)?,
    )?;
    std::fs::write(
        rig._dir.path().join("webhook-log.json"),
        serde_json::to_vec_pretty(&log)?,
    )?;

    // Shutdown: SIGTERM drains; every process exits 0.
    let exits = rig.fleet.stop_all(Duration::from_secs(40)).await;
    for x in exits {
        failures.push(format!(
            "{} did not exit cleanly on SIGTERM ({}); its last lines:\n{}",
            x.name, x.status, x.log_tail
        ));
    }
    for x in &rig.fleet.crashes {
        failures.push(format!(
            "{} died without being killed ({}); its last lines:\n{}",
            x.name, x.status, x.log_tail
        ));
    }
    figures.worker_restarts = rig.fleet.restarts;
    figures.crashes = rig.fleet.crashes.len();
    figures.failed_starts = rig.fleet.failed_starts;

    // The dead letters: exactly the poison, in the queue and in the store.
    let poisoned = poisoned.unwrap_or_default();
    figures.poisoned = RAW_POISON.len() + poisoned.len();
    let dead = queues.take_dead().await?;
    figures.dead_letters = dead.len();
    let is_poison = |body: &[u8]| {
        RAW_POISON.contains(&body)
            || Envelope::from_json(body).is_ok_and(|e| poisoned.contains(&e.id))
    };
    let mut found: BTreeSet<Vec<u8>> = BTreeSet::new();
    for d in &dead {
        if is_poison(&d.body) {
            found.insert(d.body.clone());
        } else {
            failures.push(format!(
                "the dead-letter queue holds a message nobody poisoned: {} (error: {})",
                String::from_utf8_lossy(&d.body)
                    .chars()
                    .take(300)
                    .collect::<String>(),
                d.error_chain.join(": ")
            ));
        }
    }
    let mut missing_poison: Vec<String> = RAW_POISON
        .iter()
        .filter(|p| !found.contains(**p))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    missing_poison.extend(
        poisoned
            .iter()
            .filter(|id| {
                !found
                    .iter()
                    .any(|b| Envelope::from_json(b).is_ok_and(|e| &e.id == *id))
            })
            .cloned(),
    );
    if !missing_poison.is_empty() {
        failures.push(format!(
            "the dead-letter queue lacks poisoned message(s): {missing_poison:?}"
        ));
    }
    let listed = rig
        .fleet
        .run(
            &["dlq", "list", "--all", "--json", "--limit", "10000"],
            &[],
            cmd_limit,
        )
        .await?;
    let listed: Vec<Value> = serde_json::from_str(&listed).context("dlq list --json")?;
    let stored: Vec<&Value> = listed
        .iter()
        .filter(|d| d["tenant"].as_str() != Some(POISON_TENANT) && d["kind"] != "unparsable")
        .collect();
    for d in &stored {
        failures.push(format!(
            "the store's dead letters hold one nobody poisoned: kind {} message {} error {}",
            d["kind"], d["message_id"], d["error"]
        ));
    }
    if listed.len() < figures.poisoned {
        failures.push(format!(
            "the store's dead letters hold {} entries for {} poisoned messages",
            listed.len(),
            figures.poisoned
        ));
    }

    // Secrets: every line every process wrote.
    let mut files = rig.fleet.log_files();
    files.sort();
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let leaks = planted.scan_files(&paths)?;
    for leak in leaks.iter().take(20) {
        failures.push(format!("a secret reached a log: {leak}"));
    }
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).map_or(0, |t| t.lines().count()))
        .sum();
    eprintln!(
        "chaos: scanned {lines} log lines in {} files for {} planted secrets; {} leak(s)",
        files.len(),
        planted.labels().len(),
        leaks.len()
    );
    let _ = started;
    if std::env::var_os("CHAOS_KEEP").is_some() {
        let kept = rig._dir.path().to_path_buf();
        let Rig {
            fleet,
            rabbit,
            pg,
            _dir,
        } = rig;
        drop((fleet, rabbit, pg));
        let _ = _dir.keep();
        eprintln!(
            "chaos: CHAOS_KEEP is set; logs and dumps kept in {}",
            kept.display()
        );
    }
    Ok(failures)
}

/// For each webhook that never got in, the change it announced, looked up on both sides
/// (current values: a later edit of the same entity may have superseded it, and then it is
/// the later value that must be there).
/// The ids of one collection of a GHL dump.
fn count_by(dump: &Value, key: &str) -> Vec<String> {
    dump[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

fn changes_missing(
    never_in: &[&Value],
    ghl: &Value,
    ek: &sandbox::ekyte::CompanyDump,
    location: &str,
) -> Vec<String> {
    let empty = vec![];
    let by_id = |k: &str| -> HashMap<String, &Value> {
        ghl[k]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(|v| Some((v["id"].as_str()?.to_owned(), v)))
            .collect()
    };
    let contacts = by_id("contacts");
    let tasks = by_id("tasks");
    let notes = by_id("notes");
    let prefix = format!("ghl:{location}:");
    let workspace_of = |contact: &str| {
        ek.workspaces
            .iter()
            .find(|w| w.external_id.as_deref() == Some(&format!("{prefix}{contact}")))
    };
    let text = |html: &str| domain::normalise::html_to_text(html);
    let mut missing = Vec::new();
    for w in never_in {
        let kind = w["type"].as_str().unwrap_or_default();
        let contact = w["contactId"]
            .as_str()
            .or_else(|| w["id"].as_str().filter(|_| kind.starts_with("Contact")));
        match kind {
            "ContactCreate" | "ContactUpdate" | "ContactTagUpdate" => {
                let Some(c) = contact.and_then(|c| contacts.get(c)) else {
                    continue;
                };
                let id = c["id"].as_str().unwrap_or_default();
                let Some(ws) = workspace_of(id) else {
                    missing.push(format!("{kind} of {id}: no workspace"));
                    continue;
                };
                let profile = ek
                    .boards
                    .iter()
                    .filter(|b| b.workspace_id == Some(ws.id))
                    .flat_map(|b| ek.notes.iter().filter(move |n| n.board_id == b.id))
                    .find(|n| n.title.starts_with("Profile"));
                if let Some(email) = c["email"].as_str()
                    && !profile.is_some_and(|p| p.content.contains(email))
                {
                    missing.push(format!(
                        "{kind} of {id}: the profile note does not show e-mail {email}"
                    ));
                }
            }
            "TaskCreate" | "TaskComplete" => {
                let Some(t) = w["id"].as_str().and_then(|t| tasks.get(t)) else {
                    continue;
                };
                let (Some(c), Some(title)) = (t["contactId"].as_str(), t["title"].as_str()) else {
                    continue;
                };
                let Some(ws) = workspace_of(c) else {
                    missing.push(format!("{kind} {title:?}: contact {c} has no workspace"));
                    continue;
                };
                let done = t["completed"].as_bool().unwrap_or(false);
                let mirrored = ek
                    .tasks
                    .iter()
                    .find(|e| e.workspace_id == ws.id && e.title.trim() == title.trim());
                match mirrored {
                    None => missing.push(format!("{kind} {title:?} of {c}: no eKyte task")),
                    Some(e) if matches!(e.situation.code(), 30 | 40) != done => {
                        missing.push(format!(
                            "{kind} {title:?} of {c}: completed={done} but eKyte situation {}",
                            e.situation.code()
                        ))
                    }
                    Some(_) => {}
                }
            }
            "NoteCreate" | "NoteUpdate" => {
                let Some(n) = w["id"].as_str().and_then(|n| notes.get(n)) else {
                    continue;
                };
                let (Some(c), Some(body)) = (n["contactId"].as_str(), n["body"].as_str()) else {
                    continue;
                };
                let Some(ws) = workspace_of(c) else {
                    missing.push(format!("{kind} of {c}: no workspace"));
                    continue;
                };
                let want = domain::normalise::text_body(body);
                let there = ek
                    .boards
                    .iter()
                    .filter(|b| b.workspace_id == Some(ws.id))
                    .flat_map(|b| ek.notes.iter().filter(move |x| x.board_id == b.id))
                    .any(|x| text(&x.content) == want);
                if !there && !body.starts_with("eKyte comment on") {
                    missing.push(format!("{kind} of {c}: no board note {body:?}"));
                }
            }
            _ => {}
        }
    }
    missing
}
