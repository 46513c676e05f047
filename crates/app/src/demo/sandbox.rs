//! `sandbox`: both simulators, seeded, until Ctrl-C, and everything a client needs to call
//! them: base URLs, ids, keys and tokens, and one `curl` line per side that works when pasted.
//!
//! The credentials are the simulators' own, made up at start; they open nothing but these two
//! local servers, so printing them is the point (no real secret is ever printed here).

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use sandbox::ghl::OAuthClientSpec;

use super::sim::{World, WorldSpec};

/// The `Version` header GHL's contact routes require (ghl/API.md §1).
const GHL_VERSION: &str = "2021-07-28";

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port of the GHL simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub ghl_port: u16,
    /// Port of the eKyte simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub ekyte_port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Sample contacts to seed in the GHL location (each with tasks, notes and appointments).
    #[arg(long, default_value_t = 5)]
    pub contacts: usize,
    /// Print the credentials as JSON (on one document, then serve until Ctrl-C).
    #[arg(long)]
    pub json: bool,
}

/// What a client of the simulators needs.
#[derive(Debug, Serialize)]
pub struct SandboxCredentials {
    pub ghl: GhlCredentials,
    pub ekyte: EkyteCredentials,
    /// One command per side that answers 200 against the running simulators.
    pub curl: CurlLines,
}

#[derive(Debug, Serialize)]
pub struct GhlCredentials {
    pub base_url: String,
    pub location_id: String,
    /// A Private Integration Token of the location (bearer token).
    pub private_integration_token: String,
    /// The Marketplace app's OAuth client (authorization code flow at `/oauth/token`).
    pub client_id: String,
    pub client_secret: String,
    /// Verifies the `x-ghl-signature` (Ed25519) of the simulator's webhooks.
    pub webhook_public_key_pem: String,
    /// The `Version` header of the contact routes.
    pub version_header: String,
    pub sample_contact_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EkyteCredentials {
    pub base_url: String,
    pub company_id: i64,
    /// The company API key (`?apiKey=` on the BI and automation APIs).
    pub api_key: String,
    /// The admin the automation API acts as (`UserEmail=`), owner of the MCP token.
    pub user_email: String,
    pub mcp_token: Option<String>,
    pub mcp_url: Option<String>,
    pub workspace_id: i64,
    pub task_type_id: i64,
}

#[derive(Debug, Serialize)]
pub struct CurlLines {
    pub ghl: String,
    pub ekyte: String,
}

/// Serve both simulators until Ctrl-C or SIGTERM, after printing their credentials.
pub async fn sandbox(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let world = World::start(&WorldSpec {
        contacts: args.contacts,
        businesses: 1,
        host: args.host,
        ghl_port: args.ghl_port,
        ekyte_port: args.ekyte_port,
        ..WorldSpec::default()
    })
    .await?;
    let client = OAuthClientSpec::default();
    world
        .ghl
        .register_oauth_client(client.clone())
        .map_err(|e| anyhow!("registering the Marketplace app's OAuth client: {e:?}"))?;
    let creds = credentials(&world, &client);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&creds)?);
    } else {
        print_table(&creds);
    }
    eprintln!("Ctrl-C stops both.");
    let stop = crate::signals::shutdown_on_signals();
    stop.cancelled().await;
    world
        .ghl
        .shutdown()
        .await
        .context("stopping the GHL simulator")?;
    world
        .ekyte
        .shutdown()
        .await
        .context("stopping the eKyte simulator")?;
    Ok(ExitCode::SUCCESS)
}

fn credentials(world: &World, client: &OAuthClientSpec) -> SandboxCredentials {
    let ghl_base = world.ghl.base_url().trim_end_matches('/').to_owned();
    let ekyte_base = world.ekyte.base_url().trim_end_matches('/').to_owned();
    let company = &world.company;
    let sample = world.contacts.first().cloned();
    let ghl_curl = format!(
        "curl -sf -H {} -H {} -H 'Accept: application/json' {}",
        quote(&format!("Authorization: Bearer {}", world.pit)),
        quote(&format!("Version: {GHL_VERSION}")),
        quote(&match &sample {
            Some(id) => format!("{ghl_base}/contacts/{id}"),
            None => format!("{ghl_base}/contacts/?locationId={}", world.location),
        }),
    );
    let ekyte_curl = format!(
        "curl -sf {}",
        quote(&format!(
            "{ekyte_base}/v1.0/workspaces?apiKey={}&page=1",
            company.api_key
        ))
    );
    SandboxCredentials {
        ghl: GhlCredentials {
            base_url: ghl_base,
            location_id: world.location.clone(),
            private_integration_token: world.pit.clone(),
            client_id: client.client_id.clone(),
            client_secret: client.client_secret.clone(),
            webhook_public_key_pem: world.ghl.webhook_public_key_pem(),
            version_header: GHL_VERSION.to_owned(),
            sample_contact_id: sample,
        },
        ekyte: EkyteCredentials {
            mcp_url: company
                .admin
                .mcp_token
                .as_ref()
                .map(|t| format!("{ekyte_base}/mcp?token={t}")),
            base_url: ekyte_base,
            company_id: company.company_id,
            api_key: company.api_key.clone(),
            user_email: company.admin.email.clone(),
            mcp_token: company.admin.mcp_token.clone(),
            workspace_id: company.workspace_id,
            task_type_id: company.task_type_id,
        },
        curl: CurlLines {
            ghl: ghl_curl,
            ekyte: ekyte_curl,
        },
    }
}

/// A POSIX shell single-quoted word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn print_table(c: &SandboxCredentials) {
    let none = || "—".to_owned();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["", "what", "value"]);
    let g = &c.ghl;
    let e = &c.ekyte;
    let rows: Vec<(&str, &str, String)> = vec![
        ("GHL", "base URL", g.base_url.clone()),
        ("GHL", "location id", g.location_id.clone()),
        (
            "GHL",
            "Private Integration Token",
            g.private_integration_token.clone(),
        ),
        ("GHL", "OAuth client id", g.client_id.clone()),
        ("GHL", "OAuth client secret", g.client_secret.clone()),
        (
            "GHL",
            "webhook public key (Ed25519)",
            g.webhook_public_key_pem.trim().to_owned(),
        ),
        ("GHL", "Version header", g.version_header.clone()),
        (
            "GHL",
            "a sample contact",
            g.sample_contact_id.clone().unwrap_or_else(none),
        ),
        ("eKyte", "base URL", e.base_url.clone()),
        ("eKyte", "company id", e.company_id.to_string()),
        ("eKyte", "API key", e.api_key.clone()),
        ("eKyte", "user e-mail", e.user_email.clone()),
        (
            "eKyte",
            "MCP token",
            e.mcp_token.clone().unwrap_or_else(none),
        ),
        ("eKyte", "MCP URL", e.mcp_url.clone().unwrap_or_else(none)),
        ("eKyte", "workspace id", e.workspace_id.to_string()),
        ("eKyte", "task type id", e.task_type_id.to_string()),
    ];
    for (side, what, value) in rows {
        t.add_row([side.to_owned(), what.to_owned(), value]);
    }
    println!("{t}");
    println!("Try them:");
    println!("  {}", c.curl.ghl);
    println!("  {}", c.curl.ekyte);
    println!("Both simulators also have a control API under /_control (see crates/sandbox).");
}
