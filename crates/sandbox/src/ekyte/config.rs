//! How an eKyte simulator is started. Every field has a default, so `{}` is a valid config and
//! the app's `sandbox --ekyte-port P` only has to set `port`.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::common::FaultConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EkyteConfig {
    /// Address to bind; loopback unless told otherwise.
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Records per page of BI lists and MCP list envelopes (API.md §3.1: 100, no page-size
    /// parameter known).
    pub page_size: usize,
    /// Look-back of the automation API's "recent" polling lists (API.md §4.1: 15 minutes).
    pub polling_window_secs: u64,
    /// Upper bound of MCP `list_tasks.limit` (API.md §5: ≤200).
    pub mcp_list_tasks_max: usize,
    /// Answer MCP over SSE whenever the request's `Accept` allows `text/event-stream`
    /// (API.md §5: responses "may be plain JSON or SSE `data:` lines").
    pub mcp_prefer_sse: bool,
    /// Serve the workspace `externalId` on BI and MCP reads. eKyte accepts it on create
    /// (§4.2, §5) but no read shape shows it (§3.3), so it is off by default: a client that
    /// counts on reading it back is a client that cannot recover a lost create. On, for a
    /// client's other path.
    pub expose_external_id: bool,
    /// How a date-only upper bound of a list filter (`dueTo=2026-04-10`, `createdTo`,
    /// `creationDateEnd`…) is read. API.md does not say; an ASP.NET server binds a date to
    /// midnight, so `midnight` (the default) is the reading that breaks a client counting on
    /// the whole day: a task due at 18:00 is outside `dueTo` of its own day.
    pub due_to_date_means: DateOnlyMeans,
    /// What MCP `update_task` does with the task fields it is not given (title, description,
    /// currentDueDate). API.md §5 shows the arguments, not whether they patch or replace:
    /// `replace` (the default) makes a call that edits any of them replace all three,
    /// clearing an absent description and refusing an absent title or due date, which breaks
    /// a client that sends only what changed; `patch` keeps them. A call with a situation
    /// alone moves the task under both.
    pub mcp_update: McpUpdate,
    /// How MCP tools treat the arguments they are given. API.md §5 names each tool's
    /// arguments, not what the server does with others: `strict` (the default) answers a call
    /// with an argument its schema does not list, without one it marks required, or with one
    /// of another JSON type, by JSON-RPC error -32602, as an MCP server that validates against
    /// its `inputSchema` does; this breaks a client that guesses a name. `lenient` ignores
    /// unknown arguments, reads numbers from strings and takes the id aliases (`id` for
    /// `workspaceId`, …), and lets each tool find what it misses.
    pub mcp_arguments: McpArguments,
    /// The shape of MCP `get_current_user`'s answer. API.md §5 says tool results are "often"
    /// wrapped in the BI envelope and shows none for this tool: `enveloped` (the default)
    /// answers `{"data": {…}}`, which breaks a client reading the user's fields at the top;
    /// `bare` answers the user itself.
    pub mcp_current_user: CurrentUserShape,
    /// MCP `update_task` answers as usual but leaves the task's situation as it was. Not a
    /// reading of the documents to survive (a server that did this would leave no way to move
    /// a task's status): a way to show that a client notices instead of believing it. Off by
    /// default and in the flipped run.
    pub mcp_update_ignores_situation: bool,
    /// Serve a person the notifications of their own actions (a task they created and execute,
    /// a comment they wrote on their own task). API.md does not say whether eKyte skips the
    /// actor; serving them is the default because it exposes a client that would react to its
    /// own writes as if someone else had made them.
    pub notify_actor: bool,
    /// Injected faults; the default injects nothing.
    pub faults: FaultConfig,
    /// Requests-per-window limit; none by default (API.md §9: no published limits).
    pub rate_limit: Option<RateLimitConfig>,
}

impl Default for EkyteConfig {
    /// The pessimistic reading of every silence, or each switch flipped under
    /// `SANDBOX_VARIANTS=flipped` (see [`crate::variants`]).
    fn default() -> Self {
        let flipped = crate::variants::Variants::from_env().flipped();
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            page_size: 100,
            polling_window_secs: 15 * 60,
            mcp_list_tasks_max: 200,
            mcp_prefer_sse: false,
            expose_external_id: flipped,
            notify_actor: !flipped,
            mcp_update: if flipped {
                McpUpdate::Patch
            } else {
                McpUpdate::Replace
            },
            mcp_arguments: if flipped {
                McpArguments::Lenient
            } else {
                McpArguments::Strict
            },
            mcp_current_user: if flipped {
                CurrentUserShape::Bare
            } else {
                CurrentUserShape::Enveloped
            },
            mcp_update_ignores_situation: false,
            due_to_date_means: if flipped {
                DateOnlyMeans::EndOfDay
            } else {
                DateOnlyMeans::Midnight
            },
            faults: FaultConfig::default(),
            rate_limit: None,
        }
    }
}

/// What a date-only upper bound stands for (see [`EkyteConfig::due_to_date_means`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOnlyMeans {
    /// The day's first instant: `dueTo=2026-04-10` ends at `2026-04-10T00:00:00`.
    #[default]
    Midnight,
    /// The whole day: `dueTo=2026-04-10` ends just before the next day.
    EndOfDay,
}

/// See [`EkyteConfig::mcp_update`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpUpdate {
    #[default]
    Replace,
    Patch,
}

/// See [`EkyteConfig::mcp_arguments`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpArguments {
    #[default]
    Strict,
    Lenient,
}

/// See [`EkyteConfig::mcp_current_user`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurrentUserShape {
    #[default]
    Enveloped,
    Bare,
}

/// A fixed window per credential (API key or MCP token): at most `requests` in each
/// `window_ms`; the next one is answered 429 with no `Retry-After` (API.md §9: eKyte
/// publishes no rate-limit headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    pub requests: u32,
    pub window_ms: u64,
}

/// The knobs that may change while the server runs (see [`EkyteConfig`] for each), copied out
/// per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    pub page_size: usize,
    pub polling_window_secs: u64,
    pub mcp_list_tasks_max: usize,
    pub mcp_prefer_sse: bool,
    pub expose_external_id: bool,
    pub notify_actor: bool,
    pub due_to_date_means: DateOnlyMeans,
    pub mcp_update: McpUpdate,
    pub mcp_arguments: McpArguments,
    pub mcp_current_user: CurrentUserShape,
    pub mcp_update_ignores_situation: bool,
}

impl From<&EkyteConfig> for RuntimeSettings {
    fn from(c: &EkyteConfig) -> Self {
        Self {
            page_size: c.page_size.max(1),
            polling_window_secs: c.polling_window_secs,
            mcp_list_tasks_max: c.mcp_list_tasks_max.max(1),
            mcp_prefer_sse: c.mcp_prefer_sse,
            expose_external_id: c.expose_external_id,
            notify_actor: c.notify_actor,
            due_to_date_means: c.due_to_date_means,
            mcp_update: c.mcp_update,
            mcp_arguments: c.mcp_arguments,
            mcp_current_user: c.mcp_current_user,
            mcp_update_ignores_situation: c.mcp_update_ignores_situation,
        }
    }
}
