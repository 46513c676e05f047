//! Benchmark 4: the webhook ingress under a load generator on loopback. Every request is a
//! `ContactUpdate` signed with Ed25519 (`x-ghl-signature`) by a key the ingress is configured
//! to trust, with a fresh `webhookId`; "accepted" means answered 200 after RabbitMQ confirmed
//! the publish (the ingress answers 429 when it cannot accept durably). No worker runs, so the
//! bench can check afterwards that the real-time queue holds exactly the accepted messages.
//!
//! The requests are built and signed before the clock starts, so the generator's own cost is
//! sending and timing only. The generator, the ingress and its store share this process (and
//! the machine's two cores with RabbitMQ).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

use app::demo::sim::{LOCATION, World};

use super::machine::{Load, Machine, cpu_seconds, peak_rss_mib};
use super::rig::{QueueKind, Rig, RigOptions};
use super::{Data, RateLimit, round3};

#[derive(Debug, Clone)]
pub struct IngressArgs {
    pub requests: usize,
    pub concurrency: usize,
    pub queue: QueueKind,
    /// The store's backend (`--store sqlite|postgres`).
    pub store: store::test_support::TestBackend,
}

struct Signed {
    body: Vec<u8>,
    signature: String,
}

fn build(key: &ed25519_dalek::SigningKey, contacts: &[String], n: usize) -> Vec<Signed> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..n)
        .map(|i| {
            let body = serde_json::to_vec(&json!({
                "type": "ContactUpdate",
                "locationId": LOCATION,
                "id": contacts[i % contacts.len()],
                "webhookId": uuid::Uuid::new_v4().to_string(),
                "timestamp": now,
                "lastName": format!("Load {i}"),
            }))
            .unwrap_or_default();
            let signature =
                base64::engine::general_purpose::STANDARD.encode(key.sign(&body).to_bytes());
            Signed { body, signature }
        })
        .collect()
}

/// Send every request with `concurrency` connections; (status, latency µs) per request.
async fn fire(
    url: &str,
    requests: Vec<Signed>,
    concurrency: usize,
) -> anyhow::Result<(Vec<(u16, u32)>, Duration)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, requests, next, url) = (
            client.clone(),
            requests.clone(),
            next.clone(),
            url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = requests.get(i) else {
                    break;
                };
                let start = Instant::now();
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-ghl-signature", &r.signature)
                    .body(r.body.clone())
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
                out.push((status, micros));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("a generator task")?);
    }
    Ok((all, t0.elapsed()))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    round3(f64::from(sorted[super::percentile_index(sorted.len(), p)]) / 1000.0)
}

pub async fn run(args: &IngressArgs) -> anyhow::Result<Value> {
    let data = Data {
        tasks_per_contact: 0,
        notes_per_contact: 0,
        appointments_per_contact: 0,
        ..Data::new(100)
    };
    let rate = RateLimit::new(100, 10_000);
    let spec = data.spec(&rate);
    let world = World::start(&spec).await?;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions {
            queue: args.queue,
            store: args.store,
            worker: false,
            ingress: true,
            webhook_key: Some(pem),
            ..RigOptions::default()
        },
    )
    .await?;
    let addr = rig.ingress.context("the ingress address")?;
    let url = format!("http://{addr}/webhooks/ghl");
    let warmup = (args.requests / 10).clamp(100, 2_000);
    eprintln!(
        "ingress: {} requests ({} warm-up) over {} connections, {:?} broker",
        args.requests, warmup, args.concurrency, args.queue
    );
    let outcome = async {
        let (w, _) = fire(&url, build(&key, &world.contacts, warmup), args.concurrency).await?;
        let load_before = Load::now();
        let cpu0 = cpu_seconds();
        let (results, wall) = fire(
            &url,
            build(&key, &world.contacts, args.requests),
            args.concurrency,
        )
        .await?;
        let cpu = cpu_seconds() - cpu0;
        let load_after = Load::now();
        let accepted = results.iter().filter(|(s, _)| *s == 200).count();
        let mut by_status = std::collections::BTreeMap::<String, usize>::new();
        for (s, _) in &results {
            *by_status.entry(s.to_string()).or_default() += 1;
        }
        let mut lat: Vec<u32> = results.iter().map(|(_, l)| *l).collect();
        lat.sort_unstable();
        let warm_accepted = w.iter().filter(|(s, _)| *s == 200).count();
        let depths = rig.app.broker.depths().await?;
        anyhow::Ok(json!({
            "benchmark": "ingress",
        "store": args.store.to_string(),
            "machine": Machine::read(),
            "load": { "before": load_before, "after": load_after },
            "queue": args.queue,
            "publisher_confirms": args.queue == QueueKind::Amqp,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "wall_s": round3(wall.as_secs_f64()),
            "accepted": accepted,
            "accepted_per_s": round3(accepted as f64 / wall.as_secs_f64()),
            "by_status": by_status,
            "latency_ms": {
                "p50": percentile(&lat, 50.0),
                "p90": percentile(&lat, 90.0),
                "p99": percentile(&lat, 99.0),
                "max": percentile(&lat, 100.0),
            },
            "process_cpu_s": round3(cpu),
            "realtime_queue_depth_after": depths.realtime,
            "accepted_including_warmup": accepted + warm_accepted,
            "every_accepted_message_is_queued": depths.realtime as usize == accepted + warm_accepted,
            "peak_rss_mib": round3(peak_rss_mib()),
        }))
    }
    .await;
    rig.stop().await;
    outcome
}
