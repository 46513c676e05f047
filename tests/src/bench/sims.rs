//! Where a benchmark's simulators run: in the benchmark's process ([`World`] itself), or in a
//! child process of their own (`__sims-child`), so that the CPU time and peak RSS the
//! benchmark's process reports are the service's alone.
//!
//! The child starts and seeds a [`World`], prints one line of JSON on stdout (where the
//! simulators listen and the tenant's credentials), and then answers one request per line on
//! stdin with one line on stdout until stdin closes.

use std::process::Stdio;

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

use app::config::Config;
use app::demo::sim::{World, WorldSpec};
use domain::Tenant;

use super::machine::{cpu_seconds, peak_rss_mib};
use super::{Data, RateLimit, Traffic, round3};

/// The hidden sub-command the child runs.
pub const CHILD: &str = "__sims-child";

/// `--sims here|child`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimsPlace {
    /// In the benchmark's process (its CPU and RSS include the simulators').
    Here,
    /// In a child process of their own.
    Child,
}

impl SimsPlace {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        match raw {
            "here" => Ok(Self::Here),
            "child" => Ok(Self::Child),
            other => bail!("--sims must be here or child, not {other:?}"),
        }
    }
}

/// What a benchmark needs of the simulators while the service runs against them.
#[async_trait]
pub trait Sims: Send + Sync {
    /// Point a configuration at the simulators.
    fn configure(&self, config: Config) -> anyhow::Result<Config>;
    /// The tenant of the seeded location.
    fn tenant(&self, spec: &WorldSpec) -> anyhow::Result<Tenant>;
    /// eKyte API key and MCP token, GHL token.
    fn secrets(&self) -> (SecretString, Option<SecretString>, SecretString);
    /// Send GHL's webhooks to `url` (or nowhere).
    async fn set_webhook_target(&self, url: Option<String>) -> anyhow::Result<()>;
    /// Webhooks GHL has emitted and not yet delivered.
    async fn webhooks_in_flight(&self) -> anyhow::Result<u64>;
    async fn reset_counters(&self) -> anyhow::Result<()>;
    async fn traffic(&self) -> anyhow::Result<Traffic>;
    /// Whether both sides agree (`app::demo::verify`): `{converged, problems, …}`.
    async fn verify(&self) -> anyhow::Result<Value>;
}

#[async_trait]
impl Sims for World {
    fn configure(&self, config: Config) -> anyhow::Result<Config> {
        World::configure(self, config)
    }

    fn tenant(&self, spec: &WorldSpec) -> anyhow::Result<Tenant> {
        World::tenant(self, spec)
    }

    fn secrets(&self) -> (SecretString, Option<SecretString>, SecretString) {
        World::secrets(self)
    }

    async fn set_webhook_target(&self, url: Option<String>) -> anyhow::Result<()> {
        self.ghl.set_webhook_target(url);
        Ok(())
    }

    async fn webhooks_in_flight(&self) -> anyhow::Result<u64> {
        Ok(self.ghl.webhooks_in_flight())
    }

    async fn reset_counters(&self) -> anyhow::Result<()> {
        super::reset_counters(self);
        Ok(())
    }

    async fn traffic(&self) -> anyhow::Result<Traffic> {
        Ok(Traffic::of(self))
    }

    async fn verify(&self) -> anyhow::Result<Value> {
        Ok(json!(app::demo::verify::verify(self)?))
    }
}

/// What the child is started with (one argument, JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    data: Data,
    rate_max: u32,
    rate_interval_ms: u64,
}

/// The child's first line: where the simulators listen and what the tenant needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ready {
    ghl_url: String,
    ghl_webhook_key: String,
    ekyte_url: String,
    tenant: Tenant,
    ekyte_api_key: String,
    ekyte_mcp_token: Option<String>,
    ghl_token: String,
    seed_s: f64,
}

/// One request to the child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    WebhookTarget {
        url: Option<String>,
    },
    InFlight,
    Reset,
    Traffic,
    Verify,
    /// The child's own CPU seconds and peak RSS.
    Usage,
}

/// The simulators in a child process.
pub struct ChildSims {
    ready: Ready,
    io: Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>)>,
    child: Mutex<Child>,
}

impl ChildSims {
    /// Start the child and wait until it has seeded `data`.
    pub async fn start(data: &Data, rate: &RateLimit) -> anyhow::Result<Self> {
        let spec = ChildSpec {
            data: *data,
            rate_max: rate.max,
            rate_interval_ms: rate.interval_ms,
        };
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = tokio::process::Command::new(exe)
            .arg(CHILD)
            .arg(format!("--spec={}", serde_json::to_string(&spec)?))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the simulators' child process")?;
        let stdin = child.stdin.take().context("the child's stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("the child's stdout")?).lines();
        let first = lines
            .next_line()
            .await
            .context("reading the simulators' first line")?
            .ok_or_else(|| anyhow!("the simulators' child exited before it was ready"))?;
        let ready: Ready = serde_json::from_str(&first)
            .with_context(|| format!("the simulators' first line: {first}"))?;
        Ok(Self {
            ready,
            io: Mutex::new((stdin, lines)),
            child: Mutex::new(child),
        })
    }

    /// Seconds the child took to seed its data.
    pub fn seed_s(&self) -> f64 {
        self.ready.seed_s
    }

    async fn ask(&self, request: &Request) -> anyhow::Result<Value> {
        let mut io = self.io.lock().await;
        let (stdin, lines) = &mut *io;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stdin
            .write_all(&line)
            .await
            .context("writing to the simulators' child")?;
        stdin.flush().await?;
        let answer = lines
            .next_line()
            .await
            .context("reading from the simulators' child")?
            .ok_or_else(|| anyhow!("the simulators' child exited"))?;
        let mut answer: Value = serde_json::from_str(&answer)
            .with_context(|| format!("the simulators' answer: {answer}"))?;
        if let Some(e) = answer.get("error") {
            bail!("the simulators' child: {e}");
        }
        Ok(answer["ok"].take())
    }

    /// The child's CPU seconds and peak RSS (MiB) so far.
    pub async fn usage(&self) -> anyhow::Result<(f64, f64)> {
        let v = self.ask(&Request::Usage).await?;
        Ok((
            v["cpu_s"].as_f64().unwrap_or(0.0),
            v["peak_rss_mib"].as_f64().unwrap_or(0.0),
        ))
    }

    /// Close the child's stdin and wait for it to exit.
    pub async fn stop(self) -> anyhow::Result<()> {
        drop(self.io);
        let status = self.child.into_inner().wait().await?;
        if !status.success() {
            bail!("the simulators' child exited with {status}");
        }
        Ok(())
    }
}

#[async_trait]
impl Sims for ChildSims {
    fn configure(&self, mut config: Config) -> anyhow::Result<Config> {
        config.ghl.api_base = url::Url::parse(&self.ready.ghl_url)?;
        config.ghl.webhook_ed25519_key = self.ready.ghl_webhook_key.clone();
        config.ekyte.api_base = url::Url::parse(&self.ready.ekyte_url)?;
        Ok(config)
    }

    fn tenant(&self, _spec: &WorldSpec) -> anyhow::Result<Tenant> {
        Ok(self.ready.tenant.clone())
    }

    fn secrets(&self) -> (SecretString, Option<SecretString>, SecretString) {
        (
            SecretString::from(self.ready.ekyte_api_key.clone()),
            self.ready.ekyte_mcp_token.clone().map(SecretString::from),
            SecretString::from(self.ready.ghl_token.clone()),
        )
    }

    async fn set_webhook_target(&self, url: Option<String>) -> anyhow::Result<()> {
        self.ask(&Request::WebhookTarget { url }).await.map(drop)
    }

    async fn webhooks_in_flight(&self) -> anyhow::Result<u64> {
        let v = self.ask(&Request::InFlight).await?;
        v.as_u64()
            .ok_or_else(|| anyhow!("webhooks in flight: not a number: {v}"))
    }

    async fn reset_counters(&self) -> anyhow::Result<()> {
        self.ask(&Request::Reset).await.map(drop)
    }

    async fn traffic(&self) -> anyhow::Result<Traffic> {
        Ok(serde_json::from_value(self.ask(&Request::Traffic).await?)?)
    }

    async fn verify(&self) -> anyhow::Result<Value> {
        self.ask(&Request::Verify).await
    }
}

/// The child: start and seed the world, say where it is, answer until stdin closes.
pub async fn child(spec_json: &str) -> anyhow::Result<()> {
    let spec: ChildSpec = serde_json::from_str(spec_json).context("--spec")?;
    let rate = RateLimit::new(spec.rate_max, spec.rate_interval_ms);
    let world_spec = spec.data.spec(&rate);
    let t0 = std::time::Instant::now();
    let world = World::start(&world_spec).await?;
    let company = &world.company;
    let ready = Ready {
        ghl_url: world.ghl.base_url(),
        ghl_webhook_key: world.ghl.webhook_public_key_pem(),
        ekyte_url: world.ekyte.base_url(),
        tenant: world.tenant(&world_spec)?,
        ekyte_api_key: company.api_key.clone(),
        ekyte_mcp_token: company.admin.mcp_token.clone(),
        ghl_token: world.pit.clone(),
        seed_s: round3(t0.elapsed().as_secs_f64()),
    };
    let mut out = tokio::io::stdout();
    let say = |v: Value| {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        line
    };
    out.write_all(&say(json!(ready))).await?;
    out.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Request>(&line) {
            Err(e) => json!({ "error": format!("a request the child does not know: {e}: {line}") }),
            Ok(request) => match answer(&world, request).await {
                Ok(v) => json!({ "ok": v }),
                Err(e) => json!({ "error": format!("{e:#}") }),
            },
        };
        out.write_all(&say(answer)).await?;
        out.flush().await?;
    }
    Ok(())
}

async fn answer(world: &World, request: Request) -> anyhow::Result<Value> {
    Ok(match request {
        Request::WebhookTarget { url } => {
            world.ghl.set_webhook_target(url);
            Value::Null
        }
        Request::InFlight => json!(world.ghl.webhooks_in_flight()),
        Request::Reset => {
            super::reset_counters(world);
            Value::Null
        }
        Request::Traffic => json!(Traffic::of(world)),
        Request::Verify => json!(app::demo::verify::verify(world)?),
        Request::Usage => json!({
            "cpu_s": round3(cpu_seconds()),
            "peak_rss_mib": round3(peak_rss_mib()),
        }),
    })
}
