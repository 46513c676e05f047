//! The benchmarks of issue 9, one command each; every run prints one JSON report on stdout
//! (progress goes to stderr).
//!
//! ```text
//! cargo run --release -p e2e --bin bench -- backfill [--contacts 10000] [--rate-max 100] [--rate-interval-ms 100]
//!                                               [--latency-ms 0] [--queue memory|amqp] [--no-webhooks] [--no-baseline]
//!                                               [--store sqlite|postgres] [--sims here|child]
//! cargo run --release -p e2e --bin bench -- sizes    [--sizes 1000,10000,100000] [--store sqlite|postgres] [--queue memory|amqp]
//! cargo run --release -p e2e --bin bench -- calls    [--contacts 1000] [--no-webhooks]
//! cargo run --release -p e2e --bin bench -- worker   [--contacts 10000] [--queue memory|amqp] [--prefetch 8]
//! cargo run --release -p e2e --bin bench -- ingress  [--requests 20000] [--concurrency 32]
//! cargo run --release -p e2e --bin bench -- events   [--contacts 1000] [--edits 1000] [--rate-max 100] [--rate-interval-ms 100]
//! cargo run --release -p e2e --bin bench -- rate     [--calls 1000] [--tasks 32] [--rounds 5] [--replicas 2] [--store sqlite|postgres] [--shared-window] [--rate-max 100] [--rate-interval-ms 100]
//! cargo run --release -p e2e --bin bench -- console  [--tenants 200] [--requests 50]
//! cargo run --release -p e2e --bin bench -- latency  [--contacts 1000] [--background 2000] [--edits 200] [--every-ms 250]
//!                                               [--latency-ms 100] [--rate-max 100] [--rate-interval-ms 1000] [--queue …] [--store …]
//! cargo run --release -p e2e --bin bench -- locations [--scenario late|many] [--big 600] [--small 30]
//!                                               [--sites 20] [--contacts 500] [--probe-ms 250]
//!                                               [--rate-max 100] [--rate-interval-ms 1000|5000]
//!                                               [--prefetch 32] [--queue memory|amqp] [--store …] [--fair-only]
//! ```
//!
//! `--store` (backfill, calls, events, ingress): the service's store, a SQLite file (the
//! default) or a fresh PostgreSQL database on `TEST_DATABASE_URL`'s server
//! (`postgres://postgres@127.0.0.1:5432/postgres` by default), dropped at the end.
//!
//! With `RUST_LOG` set (e.g. `RUST_LOG=warn`), the service's log lines go to stderr.
//!
//! RabbitMQ runs use 127.0.0.1:5672 (`GES_QUEUE__URL` overrides), a queue prefix of their own
//! (`ges-bench-…`), and delete their queues at the end.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};

use e2e::bench::backfill::BackfillArgs;
use e2e::bench::calls::CallsArgs;
use e2e::bench::console::ConsoleArgs;
use e2e::bench::events::EventsArgs;
use e2e::bench::ingress::IngressArgs;
use e2e::bench::rate::RateArgs;
use e2e::bench::rig::QueueKind;
use e2e::bench::worker::WorkerArgs;
use e2e::bench::{Data, RateLimit};
use store::test_support::TestBackend;

const USAGE: &str = "usage: bench <backfill|sizes|calls|worker|ingress|events|rate|console|locations|latency> [--option value …] (see the module docs, or docs/performance.md)";

/// `--name value` and `--flag` options.
struct Options {
    values: BTreeMap<String, String>,
    flags: Vec<String>,
    used: std::cell::RefCell<Vec<String>>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        let mut flags = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}\n{USAGE}");
            };
            if let Some((k, v)) = name.split_once('=') {
                values.insert(k.to_owned(), v.to_owned());
            } else if name.starts_with("no-") || it.peek().is_none_or(|n| n.starts_with("--")) {
                flags.push(name.to_owned());
            } else if let Some(v) = it.next() {
                values.insert(name.to_owned(), v.clone());
            }
        }
        Ok(Self {
            values,
            flags,
            used: std::cell::RefCell::new(Vec::new()),
        })
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.used.borrow_mut().push(name.to_owned());
        match self.values.get(name) {
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("--{name} {v:?}: {e}")),
            None => Ok(default),
        }
    }

    fn text(&self, name: &str, default: &str) -> String {
        self.used.borrow_mut().push(name.to_owned());
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    fn flag(&self, name: &str) -> bool {
        self.used.borrow_mut().push(name.to_owned());
        self.flags.iter().any(|f| f == name)
    }

    /// Refuse options no benchmark asked for (a typo would silently change nothing).
    fn finish(&self) -> anyhow::Result<()> {
        let used = self.used.borrow();
        for k in self.values.keys().chain(self.flags.iter()) {
            if !used.contains(k) {
                bail!("unknown option --{k}\n{USAGE}");
            }
        }
        Ok(())
    }

    fn data(&self, contacts: usize) -> anyhow::Result<Data> {
        let mut d = Data::new(self.num("contacts", contacts)?);
        d.tasks_per_contact = self.num("tasks", d.tasks_per_contact)?;
        d.notes_per_contact = self.num("notes", d.notes_per_contact)?;
        d.appointments_per_contact = self.num("appointments", d.appointments_per_contact)?;
        d.latency_ms = self.num("latency-ms", 0)?;
        Ok(d)
    }

    fn rate(&self, max: u32, interval_ms: u64) -> anyhow::Result<RateLimit> {
        Ok(RateLimit::new(
            self.num("rate-max", max)?,
            self.num("rate-interval-ms", interval_ms)?,
        ))
    }

    fn queue(&self, default: &str) -> anyhow::Result<QueueKind> {
        QueueKind::parse(&self.text("queue", default))
    }

    fn store(&self) -> anyhow::Result<TestBackend> {
        e2e::bench::rig::parse_store(&self.text("store", "sqlite"))
    }
}

async fn run(name: &str, o: &Options) -> anyhow::Result<serde_json::Value> {
    match name {
        "backfill" => {
            let args = BackfillArgs {
                data: o.data(10_000)?,
                rate: o.rate(100, 100)?,
                queue: o.queue("memory")?,
                store: o.store()?,
                webhooks: !o.flag("no-webhooks"),
                baseline: !o.flag("no-baseline"),
                prefetch: o
                    .values
                    .get("prefetch")
                    .map(|_| o.num("prefetch", 8))
                    .transpose()?,
                sims: e2e::bench::sims::SimsPlace::parse(&o.text("sims", "here"))?,
            };
            o.finish()?;
            e2e::bench::backfill::run(&args).await
        }
        "sizes" => {
            let args = e2e::bench::sizes::SizesArgs {
                sizes: e2e::bench::sizes::parse_sizes(&o.text("sizes", "1000,10000,100000"))?,
                rate: o.rate(100, 100)?,
                queue: o.queue("memory")?,
                store: o.store()?,
            };
            o.finish()?;
            e2e::bench::sizes::run(&args).await
        }
        "calls" => {
            let args = CallsArgs {
                data: o.data(1_000)?,
                rate: o.rate(100, 100)?,
                queue: o.queue("memory")?,
                store: o.store()?,
                webhooks: !o.flag("no-webhooks"),
            };
            o.finish()?;
            e2e::bench::calls::run(&args).await
        }
        "worker" => {
            let args = WorkerArgs {
                data: o.data(10_000)?,
                queue: o.queue("memory")?,
                prefetch: o.num("prefetch", 8)?,
            };
            o.finish()?;
            e2e::bench::worker::run(&args).await
        }
        "ingress" => {
            let args = IngressArgs {
                requests: o.num("requests", 20_000)?,
                concurrency: o.num("concurrency", 32)?,
                queue: o.queue("amqp")?,
                store: o.store()?,
            };
            o.finish()?;
            e2e::bench::ingress::run(&args).await
        }
        "events" => {
            let args = EventsArgs {
                data: o.data(1_000)?,
                edits: o.num("edits", 1_000)?,
                rate: o.rate(100, 100)?,
                queue: o.queue("memory")?,
                store: o.store()?,
                baseline: !o.flag("no-baseline"),
            };
            o.finish()?;
            e2e::bench::events::run(&args).await
        }
        "rate" => {
            let args = RateArgs {
                rate: o.rate(100, 100)?,
                calls: o.num("calls", 1_000)?,
                tasks: o.num("tasks", 32)?,
                rounds: o.num("rounds", 5)?,
                replicas: o.num("replicas", 2)?,
                store: o.store()?,
                shared_window: o.flag("shared-window"),
            };
            o.finish()?;
            e2e::bench::rate::run(&args).await
        }
        "console" => {
            let args = ConsoleArgs {
                tenants: o.num("tenants", 200)?,
                requests: o.num("requests", 50)?,
            };
            o.finish()?;
            e2e::bench::console::run(&args).await
        }
        "locations" => {
            use e2e::bench::locations::{LocationsArgs, Scenario};
            let scenario = match o.text("scenario", "late").as_str() {
                "late" => Scenario::Late {
                    big: o.num("big", 600)?,
                    small: o.num("small", 30)?,
                },
                "many" => Scenario::Many {
                    sites: o.num("sites", 20)?,
                    contacts: o.num("contacts", 500)?,
                    probe_ms: o.num("probe-ms", 250)?,
                },
                other => bail!("--scenario must be late or many, not {other:?}"),
            };
            // GHL's limit 10× faster for the two-location case; 2× for twenty at once, a
            // pace two cores can carry for all of them.
            let interval = match scenario {
                Scenario::Late { .. } => 1_000,
                Scenario::Many { .. } => 5_000,
            };
            let args = LocationsArgs {
                scenario,
                rate: o.rate(100, interval)?,
                queue: o.queue("memory")?,
                store: o.store()?,
                prefetch: o.num("prefetch", 32)?,
                fair_only: o.flag("fair-only"),
            };
            o.finish()?;
            e2e::bench::locations::run(&args).await
        }
        "latency" => {
            use e2e::bench::latency::LatencyArgs;
            let args = LatencyArgs {
                contacts: o.num("contacts", 1_000)?,
                background: o.num("background", 2_000)?,
                edits: o.num("edits", 200)?,
                every_ms: o.num("every-ms", 250)?,
                latency_ms: o.num("latency-ms", 100)?,
                // GHL's limit 10× faster: the background backfill keeps its budget full.
                rate: o.rate(100, 1_000)?,
                queue: o.queue("memory")?,
                store: o.store()?,
            };
            o.finish()?;
            e2e::bench::latency::run(&args).await
        }
        e2e::bench::sims::CHILD => {
            let spec = o.text("spec", "");
            o.finish()?;
            e2e::bench::sims::child(&spec).await?;
            Ok(serde_json::Value::Null)
        }
        e2e::bench::worker::CHILD => {
            o.finish()?;
            e2e::bench::worker::child().await
        }
        other => bail!("unknown benchmark {other:?}\n{USAGE}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    // The service's own log lines, on stderr, only when asked for (they cost time).
    if std::env::var_os("RUST_LOG").is_some() {
        // Logs only: nothing to export, so nothing to flush at exit.
        let _logs = app::telemetry::init(&app::config::TelemetryConfig::logs(
            app::config::LogFormat::Auto,
            "warn",
        ));
    }
    let outcome = (|| -> anyhow::Result<serde_json::Value> {
        let options = Options::parse(&args[1..])?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")?;
        runtime.block_on(run(&name, &options))
    })();
    match outcome {
        // A child that spoke on its own (the simulators' child) has no report to print.
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
        Ok(report) => match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
