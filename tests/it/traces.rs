//! Traces as a platform team sees them: the real binary, as an `ingress` process and a
//! `worker` process on RabbitMQ, exporting over OTLP/HTTP to a collector stand-in of this test
//! (an HTTP server that decodes the protobuf export requests). One signed webhook must give one
//! trace: the ingress's server span, the worker's consumer span as its child across the broker,
//! and the GHL and eKyte calls the worker made, each named by route and carrying the tenant —
//! and no secret anywhere in what was exported.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use secrecy::ExposeSecret;
use serde_json::json;

use e2e::chaos::services::free_port;
use e2e::support::{AppSpec, TestApp, WebhookSigner, eventually};

const WITHIN: Duration = Duration::from_secs(60);

/// One exported span, flattened with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    kind: SpanKind,
    attributes: Vec<(String, String)>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(kv: &KeyValue) -> (String, String) {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    (kv.key.clone(), value)
}

/// The collector stand-in: `POST /v1/traces` with `application/x-protobuf` bodies, as the
/// OTLP/HTTP specification has it (https://opentelemetry.io/docs/specs/otlp/#otlphttp).
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
    /// Request bodies as received, to search for secrets byte by byte.
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Collector {
    async fn start(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(
    State(c): State<Collector>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    if !protobuf {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    c.raw.lock().unwrap().push(body.to_vec());
    let mut out = c.spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter().map(text))
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Exported {
                    service: service.clone(),
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                    kind: SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified),
                    name: s.name,
                    attributes: s.attributes.iter().map(text).collect(),
                });
            }
        }
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhook_is_one_trace_from_the_ingress_through_the_broker_to_every_api_call() {
    let signer = WebhookSigner::new();
    let mut spec = AppSpec::new("otlp");
    spec.webhook_key_pem = Some(signer.public_pem());
    let t = TestApp::start(spec).await;
    let collector = Collector::default();
    let otlp = collector.clone().start().await;
    let endpoint = format!("http://{otlp}/v1/traces");
    // The SDK's batch processor waits 5 s between exports by default; the test need not.
    let export_env = |service: &str| {
        vec![
            ("GES_TELEMETRY__OTLP_ENDPOINT", endpoint.clone()),
            ("GES_TELEMETRY__SERVICE_NAME", service.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ]
    };
    let ingress_port = free_port().expect("a free port");
    let mut ingress = t
        .command(&["ingress"])
        .await
        .envs(export_env("ges-ingress"))
        .env("GES_HTTP__BIND", format!("127.0.0.1:{ingress_port}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the ingress");
    let mut worker = t
        .command(&["worker", "--consumer-tag", "e2e-otlp"])
        .await
        .envs(export_env("ges-worker"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the worker");
    let ingress_addr: SocketAddr = format!("127.0.0.1:{ingress_port}").parse().unwrap();
    let http = reqwest::Client::new();
    eventually("the ingress to be ready", WITHIN, || async {
        let r = http
            .get(format!("http://{ingress_addr}/readyz"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    let contact = t
        .world
        .ghl
        .act_create_contact(
            &t.world.location,
            json!({
                "firstName": "Traçada",
                "lastName": "Cliente",
                "email": "tracada@client.test",
                "tags": [app::demo::sim::SYNC_TAG],
            }),
        )
        .expect("create a contact in GHL");
    let id = contact["id"].as_str().expect("the contact's id").to_owned();
    let body = WebhookSigner::contact_create(&t.world.location, &id);
    let (status, answer) = signer.post(&http, ingress_addr, &body).await;
    assert_eq!(status, 200, "the ingress refused the webhook: {answer}");
    eventually("the contact's workspace in eKyte", WITHIN, || async {
        t.workspaces_of(&id).into_iter().next()
    })
    .await;

    let tenant = t.tenant.id.to_string();
    let (root, trace) = eventually("one trace across both processes", WITHIN, || async {
        let spans = collector.spans();
        let root = spans.iter().find(|s| {
            s.service == "ges-ingress"
                && s.name == "POST /webhooks/ghl"
                && s.parent_span_id.is_empty()
        })?;
        let trace: Vec<Exported> = spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id)
            .cloned()
            .collect();
        let providers = |p: &str| {
            trace.iter().any(|s| {
                s.service == "ges-worker"
                    && s.kind == SpanKind::Client
                    && s.attr("provider") == Some(p)
            })
        };
        // Spans are exported as they end: the worker's own span, which ends last, closes it.
        let handled = trace
            .iter()
            .any(|s| s.service == "ges-worker" && s.name == "process ghl.event");
        (handled && providers("ghl") && providers("ekyte")).then(|| (root.clone(), trace))
    })
    .await;
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(root.attr("tenant"), Some(tenant.as_str()));
    assert_eq!(root.attr("http.response.status_code"), Some("200"));

    // The worker's span is the ingress span's child, across the broker.
    let consumer = trace
        .iter()
        .find(|s| s.service == "ges-worker" && s.name == "process ghl.event")
        .unwrap_or_else(|| panic!("no worker span in the webhook's trace: {trace:#?}"));
    assert_eq!(
        consumer.parent_span_id, root.span_id,
        "the worker's span must continue the ingress span (W3C trace context in the AMQP headers)"
    );
    assert_eq!(consumer.kind, SpanKind::Consumer);
    assert_eq!(consumer.attr("tenant"), Some(tenant.as_str()));

    // Every API call is a client span named by its route, with the tenant, below the worker.
    let calls: Vec<&Exported> = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert!(
        calls.iter().any(|s| s.name.starts_with("GET /contacts/")),
        "the worker re-fetched the contact: {:?}",
        calls.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for call in &calls {
        assert_eq!(call.service, "ges-worker", "{call:?}");
        assert_eq!(call.attr("tenant"), Some(tenant.as_str()), "{call:?}");
        assert!(
            !call.name.contains('?') && !call.name.contains("://"),
            "a call span is named by route, never by URL: {}",
            call.name
        );
        assert!(call.attr("status").is_some(), "{call:?}");
        assert!(
            matches!(call.attr("provider"), Some("ghl" | "ekyte")),
            "{call:?}"
        );
    }
    let ids: std::collections::HashSet<&Vec<u8>> = trace.iter().map(|s| &s.span_id).collect();
    for s in &trace {
        assert!(
            s.parent_span_id.is_empty() || ids.contains(&s.parent_span_id),
            "a span of the trace hangs off a span that was never exported: {s:?}"
        );
    }

    // No secret in anything exported: the GHL token, the eKyte key and MCP token, the
    // credentials key.
    let (api_key, mcp, pit) = t.world.secrets();
    let mut secrets = vec![
        api_key.expose_secret().to_owned(),
        pit.expose_secret().to_owned(),
        t.crypto_key.clone(),
    ];
    secrets.extend(mcp.map(|m| m.expose_secret().to_owned()));
    let raw = collector.raw.lock().unwrap().clone();
    for secret in &secrets {
        let needle = secret.as_bytes();
        assert!(
            !raw.iter()
                .any(|body| body.windows(needle.len()).any(|w| w == needle)),
            "a secret was exported in a span"
        );
    }

    for child in [&mut ingress, &mut worker] {
        let pid = child.id().expect("pid");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = tokio::time::timeout(WITHIN, child.wait())
            .await
            .expect("the process exits after SIGTERM")
            .expect("wait");
        assert!(status.success(), "{status}");
    }
}
