//! What the app's end-to-end tests (`tests/it/app_e2e.rs`) stand on: the real RabbitMQ and
//! PostgreSQL of the machine, both simulators, the in-process app and the real binary.
//!
//! Guarantees:
//! - every test gets its own queue prefix ([`TestQueues`], deleted when dropped, also on a
//!   panic) and its own migrated PostgreSQL database ([`fresh_postgres`]), so tests run in
//!   parallel with each other and with other suites;
//! - a service that is not running fails the test with a message saying how to start it
//!   ([`require_rabbitmq`], [`fresh_postgres`]); nothing is skipped;
//! - waits are conditions polled until a deadline ([`eventually`]), never a guessed sleep;
//! - the broker is taken "down" only through a [`LinkProxy`] of the test's own, never by
//!   stopping the machine's RabbitMQ, which other tests share;
//! - [`binary`] builds `ghl-ekyte-sync` once per test run, in the target directory the test
//!   itself was built in, so the binary under test is the current source.

// Test support: a failed expectation is how a test fails, with its message.
#![allow(clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::{Signer as _, SigningKey};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use app::config::{Config, QueueBackend};
use app::demo::sim::{World, WorldSpec};
use app::queue::Broker;
use app::queue::amqp::{AmqpBroker, AmqpSettings};
use app::wiring::{self, App};
use app::worker::WorkerStats;
use domain::Tenant;
use store::test_support::{TestBackend, TestDb};

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Services

/// The RabbitMQ the tests use (`GES_TEST_AMQP_URL`, default guest on 127.0.0.1:5672).
pub fn amqp_url() -> String {
    std::env::var("GES_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn amqp_addr() -> SocketAddr {
    let url = url::Url::parse(&amqp_url()).expect("GES_TEST_AMQP_URL is not a URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5672);
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve the RabbitMQ host {host}"))
}

/// Fail (never skip) when RabbitMQ does not answer, saying how to start it.
pub fn require_rabbitmq() {
    let addr = amqp_addr();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(),
        "RabbitMQ is not reachable on {addr}. Start it with `rabbitmq-server -detached` \
         (or point GES_TEST_AMQP_URL at one) and run the tests again."
    );
}

/// A new, migrated PostgreSQL database for one test (dropped with the value). Fails with the
/// way to start PostgreSQL when it is not running.
pub async fn fresh_postgres() -> TestDb {
    TestDb::fresh(TestBackend::Postgres)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Poll `probe` until it yields a value; fail naming `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Queues

/// Retry tiers of the test topologies: short, so a retry never outlasts a test.
pub const TIERS: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

/// A queue prefix of one test; its exchange and queues are deleted on drop.
pub struct TestQueues {
    pub prefix: String,
}

impl TestQueues {
    pub fn new(test: &str) -> Self {
        require_rabbitmq();
        Self {
            prefix: format!("ges-e2e-{test}-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Broker settings for this prefix: a unique connection name and a quick reconnect.
    pub fn settings(&self) -> AmqpSettings {
        let mut s = AmqpSettings::new(self.prefix.clone(), TIERS.to_vec(), Duration::from_secs(2));
        s.connection_name = format!("{} {}", self.prefix, uuid::Uuid::new_v4().simple());
        s.connect_timeout = Duration::from_secs(5);
        s.initial_reconnect_backoff = Duration::from_millis(50);
        s.max_reconnect_backoff = Duration::from_millis(400);
        s
    }

    /// A connected broker on `url` with the topology declared.
    pub async fn connect(&self, url: &str) -> Arc<AmqpBroker> {
        let broker = AmqpBroker::connect(SecretString::from(url.to_owned()), self.settings())
            .await
            .unwrap_or_else(|e| panic!("connecting to RabbitMQ at {url}: {e}"));
        broker
            .declare()
            .await
            .unwrap_or_else(|e| panic!("declaring {}: {e}", self.prefix));
        Arc::new(broker)
    }

    /// `queue.retry_delays` for a configuration file or the environment.
    pub fn retry_delays_env(&self) -> String {
        let tiers: Vec<String> = TIERS
            .iter()
            .map(|d| format!("\"{}ms\"", d.as_millis()))
            .collect();
        format!("[{}]", tiers.join(","))
    }
}

impl Drop for TestQueues {
    fn drop(&mut self) {
        let settings = self.settings();
        let prefix = self.prefix.clone();
        // Drop cannot await and may run inside the test's runtime: a thread with its own
        // runtime deletes the topology, and joining it keeps the drop synchronous.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let broker = AmqpBroker::connect(SecretString::from(amqp_url()), settings).await?;
                let result = broker.delete_topology().await;
                broker.close().await;
                result.map_err(anyhow::Error::from)
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not delete the test queues {prefix}.*: {e:#}"),
            Err(_) => eprintln!("deleting the test queues {prefix}.* panicked"),
        }
    }
}

/// Close a connection from RabbitMQ's side (`rabbitmqctl close_connection`), as an operator
/// or a broker restart would; found by its unique connection name.
pub async fn force_close_connection(connection_name: &str) {
    let name = connection_name.to_owned();
    tokio::task::spawn_blocking(move || {
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("run rabbitmqctl (it comes with rabbitmq-server)");
        let listing = String::from_utf8_lossy(&listed.stdout);
        let pid = listing
            .lines()
            .find(|line| line.contains(&name))
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_else(|| panic!("connection {name:?} is not listed by rabbitmqctl"))
            .to_owned();
        let closed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", &pid, "e2e test: connection loss"])
            .output()
            .expect("run rabbitmqctl close_connection");
        assert!(
            closed.status.success(),
            "rabbitmqctl close_connection failed: {}",
            String::from_utf8_lossy(&closed.stderr)
        );
    })
    .await
    .expect("rabbitmqctl task");
}

// ---------------------------------------------------------------------------------------------
// A link to RabbitMQ the test can cut

/// A TCP proxy between the app and RabbitMQ. [`cut`](Self::cut) closes every open link and
/// refuses new ones (to the app, the broker is down); [`restore`](Self::restore) lets
/// connections through again. The machine's RabbitMQ is never touched.
pub struct LinkProxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    acceptor: JoinHandle<()>,
}

impl LinkProxy {
    pub async fn start() -> Self {
        let upstream = amqp_addr();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, watch) = watch::channel(true);
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    // Down: the connection is closed before the AMQP handshake.
                    drop(client);
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, watch.clone()));
            }
        });
        Self { addr, up, acceptor }
    }

    /// The AMQP URL through the proxy (credentials and vhost of [`amqp_url`]).
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&amqp_url()).expect("GES_TEST_AMQP_URL is not a URL");
        url.set_host(Some("127.0.0.1")).expect("set host");
        url.set_port(Some(self.addr.port())).expect("set port");
        url.into()
    }

    /// Close every open link and refuse new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

/// Pass bytes both ways until either side closes or the link is cut; dropping both streams
/// closes both sockets, which RabbitMQ sees as a lost connection.
async fn relay(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    mut up: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Signed webhooks

/// Signs GHL webhooks with a key of the test's own (the app is configured with its public key).
pub struct WebhookSigner {
    key: SigningKey,
}

impl Default for WebhookSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookSigner {
    pub fn new() -> Self {
        Self {
            key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    /// The SPKI PEM for `ghl.webhook_ed25519_key`.
    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the public key")
    }

    /// `x-ghl-signature` of a body: Ed25519 over the raw bytes, base64.
    pub fn sign(&self, body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(body).to_bytes())
    }

    /// A `ContactCreate` payload with a fresh `webhookId` and the current time.
    pub fn contact_create(location: &str, contact: &str) -> Vec<u8> {
        json!({
            "type": "ContactCreate",
            "locationId": location,
            "id": contact,
            "webhookId": uuid::Uuid::new_v4().to_string(),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "firstName": "Webhook",
            "tags": [app::demo::sim::SYNC_TAG],
        })
        .to_string()
        .into_bytes()
    }

    /// POST a signed body to an ingress; returns the status and the body.
    pub async fn post(
        &self,
        http: &reqwest::Client,
        ingress: SocketAddr,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let response = http
            .post(format!("http://{ingress}/webhooks/ghl"))
            .header("content-type", "application/json")
            .header(ghl::webhook::GHL_SIGNATURE_HEADER, self.sign(body))
            .body(body.to_vec())
            .send()
            .await
            .expect("the ingress answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }
}

// ---------------------------------------------------------------------------------------------
// The app against the simulators

/// What a [`TestApp`] is made of.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Short name, part of the queue prefix.
    pub test: &'static str,
    pub world: WorldSpec,
    /// Added to every eKyte request, to stretch the work a message does.
    pub ekyte_latency_ms: u64,
    /// Store the tenant's eKyte credentials (without them eKyte calls are Unauthorized).
    pub ekyte_credentials: bool,
    /// Reach RabbitMQ through a [`LinkProxy`] the test can cut.
    pub through_proxy: bool,
    /// Verify webhooks with this key instead of the GHL simulator's.
    pub webhook_key_pem: Option<String>,
    pub prefetch: u16,
}

impl AppSpec {
    pub fn new(test: &'static str) -> Self {
        Self {
            test,
            world: WorldSpec {
                contacts: 0,
                // Not what these tests are about: GHL's limit is raised so pacing never
                // slows them (the rate suites test it).
                ghl_rate_max: 1000,
                ghl_rate_interval_ms: 1000,
                ..WorldSpec::default()
            },
            ekyte_latency_ms: 0,
            ekyte_credentials: true,
            through_proxy: false,
            webhook_key_pem: None,
            prefetch: 4,
        }
    }
}

/// Both simulators, a fresh database, own queues, and the app built on them (nothing
/// running yet: see [`spawn_worker`](Self::spawn_worker) and [`serve_ingress`](Self::serve_ingress)).
pub struct TestApp {
    pub app: App,
    pub amqp: Arc<AmqpBroker>,
    pub proxy: Option<LinkProxy>,
    pub world: World,
    pub spec: AppSpec,
    pub tenant: Tenant,
    pub config: Config,
    /// The credentials key (base64), for a binary that must read the same credentials.
    pub crypto_key: String,
    // Dropped last: the queues and the database outlive everything that uses them.
    pub queues: TestQueues,
    pub db: TestDb,
}

impl TestApp {
    pub async fn start(spec: AppSpec) -> Self {
        let queues = TestQueues::new(spec.test);
        let db = fresh_postgres().await;
        let mut world_spec = spec.world.clone();
        world_spec.ekyte_faults.latency.base_ms = spec.ekyte_latency_ms;
        let world = World::start(&world_spec)
            .await
            .expect("start the simulators");

        let crypto_key = store::test_support::random_key_base64();
        let mut config = Config::from_figment(Config::figment(None)).expect("default config");
        config = world.configure(config).expect("point at the simulators");
        if let Some(pem) = &spec.webhook_key_pem {
            config.ghl.webhook_ed25519_key = pem.clone();
        }
        config.ghl.rate_max = world_spec.ghl_rate_max;
        config.ghl.rate_interval = Duration::from_millis(world_spec.ghl_rate_interval_ms);
        config.database.url = SecretString::from(db.url().to_owned());
        config.database.max_connections = 4 * u32::from(spec.prefetch) + 4;
        config.crypto.key = SecretString::from(crypto_key.clone());
        config.queue.backend = QueueBackend::Amqp;
        config.queue.url = SecretString::from(amqp_url());
        config.queue.prefix = queues.prefix.clone();
        config.queue.retry_delays = TIERS.to_vec();
        config.queue.prefetch = spec.prefetch;
        config.queue.confirm_timeout = Duration::from_secs(2);
        config.scheduler.enabled = false;
        config.worker.drain_timeout = Duration::from_secs(20);

        let proxy = if spec.through_proxy {
            Some(LinkProxy::start().await)
        } else {
            None
        };
        let url = proxy.as_ref().map_or_else(amqp_url, LinkProxy::url);
        let amqp = queues.connect(&url).await;

        let ring = wiring::keyring(&config, false).expect("keyring");
        let store = wiring::connect_store(&config, ring)
            .await
            .expect("connect the store");
        let app = App::build(config.clone(), store, amqp.clone() as Arc<dyn Broker>)
            .await
            .expect("build the app");
        let tenant = world.tenant(&world_spec).expect("tenant");
        let me = Self {
            app,
            amqp,
            proxy,
            world,
            spec: AppSpec {
                world: world_spec,
                ..spec
            },
            tenant,
            config,
            crypto_key,
            queues,
            db,
        };
        me.add_tenant(me.spec.ekyte_credentials).await;
        me
    }

    /// Save the tenant with its GHL token, and with its eKyte credentials when `ekyte`.
    pub async fn add_tenant(&self, ekyte: bool) {
        let (api_key, mcp, pit) = self.world.secrets();
        let (api_key, mcp) = if ekyte {
            (Some(api_key), mcp)
        } else {
            (None, None)
        };
        app::admin::add_tenant(
            self.app.store.as_ref(),
            self.app.store.as_ref(),
            &self.tenant,
            api_key,
            mcp,
            Some(pit),
        )
        .await
        .expect("add the tenant");
    }

    /// Start a worker on the app's broker.
    pub fn spawn_worker(&self) -> RunningWorker {
        let worker = self.app.worker(format!(
            "e2e-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let stats = worker.stats.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        RunningWorker {
            stats,
            shutdown,
            task,
        }
    }

    /// Serve the ingress on a free port until `shutdown`; returns its address.
    pub async fn serve_ingress(&self, shutdown: CancellationToken) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the ingress");
        let addr = listener.local_addr().expect("ingress address");
        let router = self.app.ingress().expect("the ingress router");
        tokio::spawn(app::ingress::serve(listener, router, shutdown));
        addr
    }

    /// The eKyte `ExternalId` of a GHL contact.
    pub fn external_id(&self, contact: &str) -> String {
        format!("ghl:{}:{contact}", self.world.location)
    }

    /// Workspaces standing for a contact.
    pub fn workspaces_of(&self, contact: &str) -> Vec<sandbox::ekyte::Workspace> {
        self.world
            .ekyte
            .workspaces_by_external_id(self.world.company.company_id, &self.external_id(contact))
    }

    /// The environment that points the binary at this test's database, queues and
    /// simulators (the configuration layer of `GES_…` variables).
    pub fn binary_env(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        vec![
            ("GES_DATABASE__URL", self.db.url().to_owned()),
            (
                "GES_DATABASE__MAX_CONNECTIONS",
                c.database.max_connections.to_string(),
            ),
            ("GES_CRYPTO__KEY", self.crypto_key.clone()),
            ("GES_QUEUE__BACKEND", "amqp".into()),
            ("GES_QUEUE__URL", amqp_url()),
            ("GES_QUEUE__PREFIX", self.queues.prefix.clone()),
            ("GES_QUEUE__RETRY_DELAYS", self.queues.retry_delays_env()),
            ("GES_QUEUE__PREFETCH", c.queue.prefetch.to_string()),
            ("GES_GHL__API_BASE", c.ghl.api_base.to_string()),
            (
                "GES_GHL__WEBHOOK_ED25519_KEY",
                c.ghl.webhook_ed25519_key.clone(),
            ),
            ("GES_GHL__RATE_MAX", c.ghl.rate_max.to_string()),
            (
                "GES_GHL__RATE_INTERVAL",
                format!("{}ms", c.ghl.rate_interval.as_millis()),
            ),
            ("GES_EKYTE__API_BASE", c.ekyte.api_base.to_string()),
            ("GES_SCHEDULER__ENABLED", "false".into()),
            ("GES_HTTP__BIND", "127.0.0.1:0".into()),
            ("GES_WORKER__DRAIN_TIMEOUT", "20s".into()),
            ("GES_TELEMETRY__FORMAT", "json".into()),
            ("GES_TELEMETRY__LEVEL", "info".into()),
        ]
    }

    /// A command running the binary with [`binary_env`](Self::binary_env).
    pub async fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = binary_command().await;
        cmd.args(args).envs(self.binary_env());
        cmd
    }
}

/// A worker running on a task.
pub struct RunningWorker {
    pub stats: Arc<WorkerStats>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    /// Stop consuming, drain, close the broker (the worker closes it when it stops).
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the worker failed: {e:#}"),
            Ok(Err(e)) => panic!("the worker task panicked: {e}"),
            Err(_) => panic!("the worker did not stop within 30 s"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary

/// The `ghl-ekyte-sync` binary, built once per test run.
///
/// `GES_E2E_BIN` names a binary to use instead. Otherwise the test binary's own location
/// (`<target>/<profile>/deps/<test>`) gives the target directory and profile, and
/// `cargo build -p app --bin ghl-ekyte-sync` runs there (cargo is `$CARGO` when `cargo test`
/// started us), so the binary is never stale and shares the already compiled crates.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("GES_E2E_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory has a parent");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("cannot tell the profile from {}", profile_dir.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "app",
                "--bin",
                "ghl-ekyte-sync",
                "--profile",
                &profile,
            ])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the binary");
        assert!(
            status.success(),
            "cargo build -p app --bin ghl-ekyte-sync failed ({status}); set GES_E2E_BIN to a built binary to bypass"
        );
        let binary = profile_dir.join(format!("ghl-ekyte-sync{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// A command for the binary with a clean configuration environment (no `GES_…`,
/// `DATABASE_URL` or `RUST_LOG` from the caller), killed if the test drops it.
pub async fn binary_command() -> tokio::process::Command {
    let path = tokio::task::spawn_blocking(binary)
        .await
        .expect("building the binary");
    let mut cmd = tokio::process::Command::new(path);
    for (key, _) in std::env::vars_os() {
        let inherited = key.to_string_lossy();
        if inherited.starts_with("GES_") || inherited == "DATABASE_URL" || inherited == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.kill_on_drop(true);
    cmd
}
