//! eKyte simulator: one axum server with eKyte's three supported API surfaces, written from
//! `shared/ekyte/API.md` alone.
//!
//! | surface | routes | module |
//! |---|---|---|
//! | A, public BI API (read-only, `apiKey`) | `GET /v1.0/workspaces`, `/v1.1/tasks`, `/v1.2/tasks`, `/v1.0/users`, `/v1.0/task-types`, `/v1.x/projects`, `/v1.1/tickets`, `/v1.0/time-trackings`, `/v1.0/members`, `/v1.0/insights` | `bi.rs` |
//! | B, automation API (`apiKey` + `CompanyId` + `UserEmail`) | `/n8n/polling/*` + `/n8n/*`, and the same under `/zapier/*` | `automation.rs` |
//! | C, MCP (`?token=`) | `POST /mcp` | `mcp.rs` |
//! | control (never faulted or counted) | `/_control/*` | `control.rs` |
//!
//! What it guarantees to its users (the eKyte adapter tests, the end-to-end and chaos suites,
//! the benchmarks and the demo):
//! - one in-memory store behind all surfaces, so a record written on one is read identically
//!   on the others, with eKyte's rules (executor chain, validation, permissions, no delete);
//! - dates served and accepted without a zone, in the company's timezone ([`dates`]);
//! - optional rate limits and seeded faults that never change data, and counters per route
//!   template and status plus named events (`traffic.rs`);
//! - a Rust handle ([`EkyteSandbox`]) with the same operations as the control API.
//!
//! Where API.md is silent the choices made are listed in this folder's `README.md`.

mod automation;
mod bi;
mod config;
mod control;
pub mod dates;
mod mcp;
pub mod model;
mod params;
pub mod seed;
mod state;
mod store;
mod text;
mod traffic;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;

pub use config::{
    CurrentUserShape, DateOnlyMeans, EkyteConfig, McpArguments, McpUpdate, RateLimitConfig,
    RuntimeSettings,
};
pub use control::{EkyteControl, SettingsPatch};
pub use model::{
    Board, BoardCategory, Comment, Company, CompanyDump, DumpUser, FlowPhase, Note, Notification,
    NotificationKind, Phase, Profile, Project, ProjectTask, Situation, Squad, Task, TaskType,
    Ticket, TicketStatus, TimeTracking, User, Workflow, Workspace,
};
pub use seed::{
    DefaultCompany, NewBoard, NewComment, NewCompany, NewNote, NewNotification, NewPhase,
    NewProject, NewSquad, NewTask, NewTaskType, NewTicket, NewTimeTracking, NewUser, NewWorkflow,
    NewWorkspace, NoteEdit, SeededUser, TaskEdit, WorkspaceEdit,
};
pub use store::{ErrorKind, SimError};

use crate::common::{ServerHandle, serve};
use state::Sim;

/// A running eKyte simulator. Dereferences to [`EkyteControl`] for seeding, acting, counters,
/// faults and dumps; [`Self::shutdown`] stops it.
#[derive(Debug)]
pub struct EkyteSandbox {
    server: ServerHandle,
    control: EkyteControl,
}

impl EkyteSandbox {
    /// Bind `config.host:config.port` (port 0 = any free port) and serve.
    pub async fn start(config: EkyteConfig) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the eKyte simulator to {addr}"))?;
        Self::start_on(listener, config)
    }

    /// Serve on a listener the caller already bound (`config.host`/`port` are ignored).
    pub fn start_on(listener: TcpListener, config: EkyteConfig) -> anyhow::Result<Self> {
        let sim = Arc::new(Sim::new(&config));
        let control = EkyteControl { sim: sim.clone() };
        let server = serve(listener, router(sim, control.clone()))
            .context("starting the eKyte simulator")?;
        tracing::info!(addr = %server.addr, "eKyte simulator listening");
        Ok(Self { server, control })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash. Surfaces hang off it directly
    /// (`{base}/v1.2/tasks`, `{base}/n8n/...`, `{base}/zapier/...`, `{base}/mcp`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `{base}/mcp?token=<token>`, the URL a user copies from eKyte's settings.
    pub fn mcp_url(&self, token: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        format!("{}/mcp?token={encoded}", self.base_url())
    }

    /// A handle that outlives borrows of the sandbox (clone it into tasks).
    pub fn control(&self) -> EkyteControl {
        self.control.clone()
    }

    /// Stop accepting, end injected hangs, finish open requests.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.control.sim.stop.cancel();
        self.server
            .shutdown()
            .await
            .context("stopping the eKyte simulator")
    }
}

impl std::ops::Deref for EkyteSandbox {
    type Target = EkyteControl;

    fn deref(&self) -> &EkyteControl {
        &self.control
    }
}

/// The full router: vendor surfaces behind the traffic layer, control routes beside it.
fn router(sim: Arc<Sim>, control: EkyteControl) -> Router {
    let api = Router::new()
        .merge(bi::routes())
        .merge(automation::routes())
        .merge(mcp::routes())
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            traffic::traffic,
        ))
        .with_state(sim.clone());
    let counters = sim.counters.clone();
    api.merge(control::routes(control))
        .fallback(move |req: axum::extract::Request| {
            let counters = counters.clone();
            async move {
                // Unknown paths are API traffic too: count them so a client calling a route
                // eKyte does not have shows up in the numbers.
                if !req.uri().path().starts_with("/_control") {
                    counters.record(
                        crate::common::RouteKey::new(req.method().as_str(), "<unmatched>"),
                        404,
                    );
                }
                StatusCode::NOT_FOUND
            }
        })
}
