//! The one telemetry set-up: pretty logs on a terminal, JSON lines otherwise (in the cluster),
//! `RUST_LOG` over the configured level; and, when `telemetry.otlp_endpoint` is set, the same
//! spans exported as OpenTelemetry traces over OTLP/HTTP.
//!
//! The services (`run`, `worker`, `ingress`) log as `telemetry.format` and `telemetry.level`
//! say. One-shot commands ([`Profile::Command`]: `status`, `tenants`, `dlq`, `sync`, …) are
//! read by a person: they log at `telemetry.command_level` (warnings by default, so their
//! routine steps say nothing), in a short human form on stderr — always at a terminal, and
//! elsewhere unless `telemetry.format` is `json` (a CronJob's logs, for the collector).
//!
//! A trace crosses the broker in the message's headers as W3C trace context
//! (<https://www.w3.org/TR/trace-context/>): [`inject`] writes `traceparent`/`tracestate` from
//! the current span when a message is published, and [`adopt`] makes the worker's span a child
//! of them. Without export nothing is written (there is no span context to carry).
//!
//! Secrets never reach a log line or a span: they live in `SecretString`s, whose `Debug` prints
//! `[REDACTED]`, URLs are logged through `config::mask_url`, and the API-call spans are named by
//! route (`GET /contacts/{id}`), never by URL, so no query string (eKyte's `apiKey`, the MCP
//! `token`) is ever exported.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use secrecy::ExposeSecret;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// The trace pipeline, when one is configured: flush it with [`Traces::shutdown`] before the
/// runtime goes away, so the last spans (the shutdown's own) reach the collector.
#[must_use = "call shutdown() at exit, or the last spans are lost"]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Export what is buffered and stop. Call it outside the runtime's worker threads (the
    /// exporter's requests run on the runtime while this waits).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: the last traces may not have reached the collector: {e}");
        }
    }
}

impl TelemetryConfig {
    /// Logs only, no trace export (tools that log through the service's set-up).
    pub fn logs(format: LogFormat, level: impl Into<String>) -> Self {
        let level = level.into();
        Self {
            format,
            command_level: level.clone(),
            level,
            otlp_endpoint: String::new(),
            otlp_headers: Default::default(),
            otlp_timeout: Duration::from_secs(10),
            otlp_sample_ratio: 1.0,
            service_name: "ghl-ekyte-sync".into(),
        }
    }
}

/// Who logs: a long-running service, or a one-shot command a person (or a CronJob) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Service,
    Command,
}

/// How the logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// One JSON object per line.
    Json,
    /// The services' human form: time, level, target, fields.
    Pretty,
    /// The one-shot commands' human form: level, message, fields.
    Brief,
}

/// The style and the filter (before `RUST_LOG`, which wins) of a profile.
fn style(config: &TelemetryConfig, profile: Profile, terminal: bool) -> (Style, &str) {
    match profile {
        Profile::Service => {
            let json = match config.format {
                LogFormat::Json => true,
                LogFormat::Pretty => false,
                LogFormat::Auto => !terminal,
            };
            (
                if json { Style::Json } else { Style::Pretty },
                &config.level,
            )
        }
        Profile::Command => {
            let json = !terminal && config.format == LogFormat::Json;
            (
                if json { Style::Json } else { Style::Brief },
                &config.command_level,
            )
        }
    }
}

/// [`init_for`] a service.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<Traces> {
    init_for(config, Profile::Service)
}

/// Install the global subscriber (and the trace exporter when configured). Safe to call more
/// than once (later calls install nothing), so tests that start the app in-process can call it
/// freely. Trace export needs a Tokio runtime entered (its requests run on it).
pub fn init_for(config: &TelemetryConfig, profile: Profile) -> anyhow::Result<Traces> {
    let terminal = std::io::stderr().is_terminal();
    let (style, level) = style(config, profile, terminal);
    // A command closes its broker connection and exits at once; lapin's I/O thread may then
    // log that the runtime is going away. The command reports broker failures itself (it
    // fails, with the cause), so lapin's own lines are left to `RUST_LOG`.
    let level = match profile {
        Profile::Command => format!("{level},lapin=off"),
        Profile::Service => level.to_owned(),
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = if config.otlp_endpoint.trim().is_empty() {
        None
    } else {
        Some(tracer_provider(config)?)
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("ghl-ekyte-sync")));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // An error here only means a subscriber is already installed.
    let installed = match style {
        Style::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        Style::Pretty => registry.with(fmt.compact()).try_init(),
        Style::Brief => registry
            .with(
                fmt.compact()
                    .without_time()
                    .with_target(false)
                    .with_ansi(terminal),
            )
            .try_init(),
    };
    if installed.is_ok() && provider.is_some() {
        tracing::info!(
            endpoint = %crate::config::mask_url(&config.otlp_endpoint),
            "exporting traces over OTLP"
        );
    }
    Ok(Traces {
        provider: provider.filter(|_| installed.is_ok()),
    })
}

fn tracer_provider(config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("trace export needs the Tokio runtime to be running")?;
    let client = reqwest::Client::builder()
        .timeout(config.otlp_timeout)
        .build()
        .context("building the HTTP client of the trace exporter")?;
    let headers: HashMap<String, String> = config
        .otlp_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient { client, runtime })
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.otlp_endpoint.trim())
        .with_timeout(config.otlp_timeout)
        .with_headers(headers)
        .build()
        .context("telemetry.otlp_endpoint: cannot build the OTLP exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.otlp_sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The exporter's transport: the service's own reqwest client. The SDK's batch processor
/// exports from a thread of its own, outside the runtime, so each request is spawned onto the
/// runtime and awaited from there.
#[derive(Debug)]
struct OtlpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let call = async move {
            let mut req = client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                req = req.header(name, value);
            }
            let resp = req.body(body).send().await?;
            let mut out = opentelemetry_http::Response::builder().status(resp.status().as_u16());
            for (name, value) in resp.headers() {
                out = out.header(name.as_str(), value.as_bytes());
            }
            let bytes = resp.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(out.body(bytes)?)
        };
        self.runtime.spawn(call).await?
    }
}

/// The current span's trace context as W3C headers (`traceparent`, `tracestate`), for a
/// message about to be published; empty when no trace is being exported.
pub fn inject() -> Vec<(String, String)> {
    let cx = tracing::Span::current().context();
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.0
}

/// Make `span` a child of the trace context a message carried (nothing when it carried none).
pub fn adopt(span: &tracing::Span, headers: &[(String, String)]) {
    if headers.is_empty() {
        return;
    }
    let carrier = Carrier(headers.to_vec());
    let cx = TraceContextPropagator::new().extract(&carrier);
    // Fails only when the span is disabled (filtered out): nothing to link then.
    let _ = span.set_parent(cx);
}

/// The header names of the W3C trace context, the only headers [`adopt`] reads.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

#[derive(Default)]
struct Carrier(Vec<(String, String)>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carrier_reads_back_what_was_injected_case_insensitively() {
        let mut c = Carrier::default();
        c.set(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        assert_eq!(
            c.get("TraceParent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(c.get("tracestate"), None);
    }

    #[test]
    fn commands_log_briefly_and_quietly_and_services_as_configured() {
        let mut c = TelemetryConfig::logs(LogFormat::Auto, "info");
        c.command_level = "warn".into();
        assert_eq!(
            style(&c, Profile::Service, false),
            (Style::Json, "info"),
            "auto: JSON off a terminal"
        );
        assert_eq!(style(&c, Profile::Service, true), (Style::Pretty, "info"));
        assert_eq!(style(&c, Profile::Command, false), (Style::Brief, "warn"));
        assert_eq!(style(&c, Profile::Command, true), (Style::Brief, "warn"));
        c.format = LogFormat::Json;
        assert_eq!(style(&c, Profile::Service, true), (Style::Json, "info"));
        assert_eq!(
            style(&c, Profile::Command, false),
            (Style::Json, "warn"),
            "a CronJob's logs stay JSON for the collector"
        );
        assert_eq!(
            style(&c, Profile::Command, true),
            (Style::Brief, "warn"),
            "at a terminal a person reads them"
        );
        c.format = LogFormat::Pretty;
        assert_eq!(style(&c, Profile::Service, false), (Style::Pretty, "info"));
        assert_eq!(style(&c, Profile::Command, false), (Style::Brief, "warn"));
    }

    #[test]
    fn without_an_exported_span_nothing_is_injected() {
        assert!(inject().is_empty());
    }
}
