//! The one telemetry set-up: pretty logs on a terminal, JSON lines otherwise (in the cluster),
//! `RUST_LOG` over the configured level.
//!
//! Secrets never reach a log line: they live in `SecretString`s, whose `Debug` prints
//! `[REDACTED]`, and URLs are logged through `config::mask_url`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, TelemetryConfig};

/// Install the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests that start the app in-process can call it freely.
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    // An error here only means a subscriber is already installed.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
