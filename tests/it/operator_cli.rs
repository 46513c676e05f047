//! The operator's read commands through the real binary, typed as an operator types them:
//! `status`, `tenants list` and `dlq list` (pages and `--summary`), as tables and as `--json`,
//! on a fresh PostgreSQL database with tenants of every state, stored credentials, runs, dead
//! letters and failed audit entries.
//!
//! The binary runs with the cluster's logging configuration (`telemetry.format = "json"`,
//! `level = "info"`, see `TestApp::binary_env`): a one-shot command must still say nothing
//! about its routine steps, so stdout is the table alone and stderr is empty. The `--json`
//! forms are asserted key by key: they are an interface.

use std::collections::BTreeSet;
use std::process::Output;

use chrono::{Duration, Utc};
use domain::{EkyteCompanyId, Install, InstallKind, LocationId, Tenant, TenantId};
use e2e::support::{AppSpec, TestApp};
use ports::store::{
    AuditAction, AuditEntry, AuditLog, CredentialSecret, CredentialStore, DeadLetterStore,
    NewCredential, NewDeadLetter, Provider, RunKind, RunStatus, RunStore, TenantStore,
};
use secrecy::SecretString;
use serde_json::Value;

/// What the `unauthorized` dead letters are classed as.
const UNAUTHORIZED: &str = "GHL get contact failed: unauthorized";
/// What the retried-to-death dead letters are classed as.
const TRANSIENT: &str = "eKyte create task failed: transient failure";
/// The failed write's cause.
const FORBIDDEN: &str = "GHL create onboarding task failed: forbidden";
/// An OAuth access token secret that must never be printed.
const ACCESS_TOKEN: &str = "oauth-access-secret-4f1d";

async fn run(t: &TestApp, args: &[&str]) -> Output {
    let out = t
        .command(args)
        .await
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the binary");
    assert!(
        out.status.success(),
        "ghl-ekyte-sync {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The command's stdout, after checking that it logged nothing and leaked no secret.
async fn quiet(t: &TestApp, args: &[&str]) -> String {
    let out = run(t, args).await;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "ghl-ekyte-sync {} logged routine steps:\n{stderr}",
        args.join(" ")
    );
    assert!(!stdout.contains(ACCESS_TOKEN), "a secret was printed");
    stdout
}

async fn json(t: &TestApp, args: &[&str]) -> Value {
    let stdout = quiet(t, args).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{stdout}", args.join(" ")))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// A table line's cells (between the outer `│`, split at the inner `┆`).
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('│')
        .split('┆')
        .map(str::trim)
        .collect()
}

/// The table rows whose first cell is `first`, as their cells.
fn rows<'a>(table: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    table
        .lines()
        .filter(|l| l.starts_with('│'))
        .map(cells)
        .filter(|c| c.first() == Some(&first))
        .collect()
}

/// The one table row whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    let mut found = rows(table, first);
    assert_eq!(found.len(), 1, "one row {first:?} in\n{table}");
    found.remove(0)
}

fn tenant(id: &str, active: bool, install: Install) -> Tenant {
    Tenant {
        id: TenantId::parse(id).unwrap(),
        name: format!("Tenant {id}"),
        location_id: LocationId::parse(format!("loc-{id}")).unwrap(),
        ekyte_company_id: EkyteCompanyId::new(7000).unwrap(),
        active,
        settings: Default::default(),
        install,
    }
}

fn letter(tenant: Option<&TenantId>, n: u32, chain: &[String]) -> NewDeadLetter {
    NewDeadLetter {
        tenant: tenant.cloned(),
        message_id: format!("op-msg-{n}"),
        kind: "ghl.event".into(),
        envelope: format!(r#"{{"id":"op-msg-{n}"}}"#),
        error_chain: chain.to_vec(),
        attempts: 1,
    }
}

/// The test's world: the simulated tenant (`sim`, active, a Private Integration Token), an
/// agency-installed tenant with an OAuth token, an uninstalled one and one never installed;
/// a finished run; seven dead letters and a failed write. Returns the dead letters' ids,
/// oldest first.
async fn seed(t: &TestApp) -> Vec<i64> {
    let store = t.app.store.as_ref();
    let now = Utc::now();
    let mut agency = tenant(
        "agency-b",
        true,
        Install {
            kind: InstallKind::Agency,
            company_id: Some("agencyCo9".into()),
            installed_at: Some(now - Duration::days(3)),
            changed_at: Some(now - Duration::days(3)),
            timezone: Some("America/Chicago".into()),
        },
    );
    // It takes the eKyte company's workspaces made without an ExternalId.
    agency.settings.ekyte.default_location = true;
    let gone = tenant(
        "gone-c",
        false,
        Install {
            changed_at: Some(now - Duration::days(1)),
            ..Install::default()
        },
    );
    let fresh = tenant("new-d", false, Install::default());
    for x in [&agency, &gone, &fresh] {
        TenantStore::upsert(store, x).await.expect("add a tenant");
    }
    CredentialStore::put(
        store,
        &agency.id,
        Provider::Ghl,
        &NewCredential {
            secret: CredentialSecret::GhlOAuth {
                access_token: SecretString::from(ACCESS_TOKEN),
                refresh_token: SecretString::from("oauth-refresh-secret-9a2b"),
                scopes: vec!["contacts.readonly".into()],
                user_type: "Company".into(),
                company_id: Some("agencyCo9".into()),
            },
            expires_at: Some(now + Duration::hours(20)),
        },
    )
    .await
    .expect("store an OAuth token");

    let run = RunStore::start_or_resume(store, &t.tenant.id, RunKind::Incremental, None)
        .await
        .expect("start a run");
    RunStore::finish(store, run.id, RunStatus::Completed, None)
        .await
        .expect("finish the run");

    let sim = &t.tenant.id;
    let unauthorized = |contact: &str| {
        vec![
            "GHL get contact failed".to_owned(),
            format!("unauthorized: the token for contact {contact} was revoked"),
        ]
    };
    let transient = vec![
        "gave up after 5 attempts".to_owned(),
        "eKyte create task failed".to_owned(),
        "transient failure: HTTP 503".to_owned(),
    ];
    let unparsable = vec!["message body is not an envelope: expected value".to_owned()];
    let letters = [
        letter(Some(sim), 1, &unauthorized("c1")),
        letter(Some(sim), 2, &unauthorized("c2")),
        letter(Some(sim), 3, &transient),
        letter(Some(&agency.id), 4, &transient),
        letter(None, 5, &unparsable),
        letter(Some(sim), 6, &unauthorized("c3")),
        letter(Some(sim), 7, &unauthorized("c4")),
    ];
    let mut ids = Vec::new();
    for l in &letters {
        ids.push(DeadLetterStore::put(store, l).await.expect("a dead letter"));
    }
    // One replayed already: it is not counted as waiting, but it did fail in the last hour.
    DeadLetterStore::mark_replayed(store, ids[6])
        .await
        .expect("mark replayed");

    AuditLog::append(
        store,
        &[AuditEntry {
            tenant: sim.clone(),
            at: now - Duration::minutes(5),
            target: Some(domain::Side::Ghl),
            kind: domain::EntityKind::Onboarding,
            action: AuditAction::Failed,
            contact: None,
            ghl_id: Some("welcome".into()),
            ekyte_id: None,
            fields: vec![],
            reason: Some(format!("{FORBIDDEN}: the token lacks tasks.write")),
            message_id: Some("op-msg-8".into()),
            dry_run: false,
            calls: None,
        }],
    )
    .await
    .expect("a failed write");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_commands_print_plain_tables_and_stable_json() {
    let t = TestApp::start(AppSpec::new("opcli")).await;
    let ids = seed(&t).await;
    let sim = t.tenant.id.to_string();
    let location = t.tenant.location_id.to_string();
    let company = t.tenant.ekyte_company_id.to_string();

    // ---------------------------------------------------------------- status
    let status = quiet(&t, &["status"]).await;
    assert!(
        status.starts_with('┌'),
        "status starts with its table:\n{status}"
    );
    assert!(
        !status.contains('"'),
        "plain strings, no JSON quotes:\n{status}"
    );
    let header = row(&status, "tenant");
    assert_eq!(
        header,
        [
            "tenant",
            "state",
            "location",
            "eKyte company",
            "eKyte access",
            "last run",
            "failures (1h)"
        ]
    );
    let r = row(&status, &sim);
    assert_eq!(&r[..4], [sim.as_str(), "active", &location, &company]);
    assert!(r[4].starts_with("full"), "{r:?}");
    assert!(r[5].starts_with("incremental completed 20"), "{r:?}");
    assert_eq!(
        r[6], "6",
        "5 dead letters (one replayed since) and a failed write: {r:?}"
    );
    assert_eq!(row(&status, "agency-b")[6], "1");
    assert_eq!(row(&status, "gone-c")[1], "uninstalled");
    assert_eq!(row(&status, "gone-c")[6], "0");
    assert_eq!(row(&status, "new-d")[1], "inactive");
    assert_eq!(row(&status, "new-d")[5], "none yet");
    for line in [
        format!("  {sim}: 4 dead letter(s): {UNAUTHORIZED}"),
        format!("  {sim}: 1 dead letter(s): {TRANSIENT}"),
        format!("  {sim}: 1 failed write(s): {FORBIDDEN}"),
        format!("  agency-b: 1 dead letter(s): {TRANSIENT}"),
    ] {
        assert!(
            status.lines().any(|l| l == line),
            "missing {line:?} in\n{status}"
        );
    }
    assert!(status.contains("\nqueues: realtime 0 · bulk 0 · delayed 0 · dead 0\n"));
    assert!(
        status.ends_with("dead letters not replayed: 6\n"),
        "{status}"
    );

    let report = json(&t, &["status", "--json"]).await;
    assert_eq!(
        keys(&report),
        set(&["tenants", "queues", "dead_letters", "failures_since"])
    );
    assert_eq!(report["dead_letters"], 6);
    assert_eq!(
        keys(&report["queues"]),
        set(&["realtime", "bulk", "delayed", "dead"])
    );
    let tenants = report["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 4);
    for x in tenants {
        assert_eq!(
            keys(x),
            set(&[
                "tenant",
                "state",
                "active",
                "location",
                "ekyte_company",
                "ekyte_capabilities",
                "recent_runs",
                "failures",
            ])
        );
    }
    let mine = tenants
        .iter()
        .find(|x| x["tenant"] == sim.as_str())
        .expect("the sim tenant");
    assert_eq!(mine["state"], "active");
    assert_eq!(mine["location"], location.as_str());
    assert_eq!(mine["ekyte_company"], t.tenant.ekyte_company_id.get());
    let runs = mine["recent_runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        keys(&runs[0]),
        set(&[
            "kind",
            "status",
            "started_at",
            "finished_at",
            "seen",
            "enqueued"
        ])
    );
    assert_eq!(
        (&runs[0]["kind"], &runs[0]["status"]),
        (&Value::from("incremental"), &Value::from("completed"))
    );
    let failures = mine["failures"].as_array().expect("failures");
    for f in failures {
        assert_eq!(keys(f), set(&["source", "cause", "count", "last_at"]));
    }
    let got: Vec<(&str, &str, u64)> = failures
        .iter()
        .map(|f| {
            (
                f["source"].as_str().unwrap(),
                f["cause"].as_str().unwrap(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dead_letter", UNAUTHORIZED, 4),
            ("failed_write", FORBIDDEN, 1),
            ("dead_letter", TRANSIENT, 1),
        ]
    );

    // ---------------------------------------------------------------- tenants list
    let list = quiet(&t, &["tenants", "list"]).await;
    assert!(list.starts_with('┌'), "{list}");
    assert_eq!(
        row(&list, "id"),
        [
            "id",
            "name",
            "state",
            "install",
            "GHL location",
            "GHL company",
            "eKyte company",
            "GHL token",
            "workspace per",
            "selector"
        ]
    );
    let r = row(&list, &sim);
    assert_eq!(
        &r[2..8],
        [
            "active",
            "location",
            location.as_str(),
            "-",
            company.as_str(),
            "does not expire (private token)"
        ]
    );
    let r = row(&list, "agency-b");
    assert_eq!(
        &r[2..7],
        [
            "active",
            "agency",
            "loc-agency-b",
            "agencyCo9",
            "7000 (default location)"
        ]
    );
    assert!(
        r[7].starts_with("expires 20") && r[7].ends_with(" UTC"),
        "{r:?}"
    );
    let r = row(&list, "gone-c");
    assert_eq!((r[2], r[7]), ("uninstalled", "no GHL token"));
    assert_eq!(row(&list, "new-d")[2], "inactive");
    assert!(list.ends_with("\n4 tenant(s)\n"), "{list}");

    let listed = json(&t, &["tenants", "list", "--json"]).await;
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 4);
    for x in listed {
        assert_eq!(
            keys(x),
            set(&[
                "id",
                "name",
                "state",
                "active",
                "install_kind",
                "installed_at",
                "location",
                "ghl_company",
                "ekyte_company",
                "ghl_token",
                "pending_reason",
                "ghl_timezone",
                "workspace_per",
                "selector",
                "settings",
            ])
        );
        assert_eq!(
            keys(&x["ghl_token"]),
            set(&[
                "kind",
                "expires_at",
                "problem",
                "last_refresh",
                "refresh_failure"
            ])
        );
    }
    let agency = listed
        .iter()
        .find(|x| x["id"] == "agency-b")
        .expect("agency-b");
    assert_eq!(agency["state"], "active");
    assert_eq!(agency["install_kind"], "agency");
    assert_eq!(agency["ghl_company"], "agencyCo9");
    assert_eq!(agency["ekyte_company"], 7000);
    assert_eq!(agency["ghl_token"]["kind"], "oauth");
    assert!(agency["ghl_token"]["expires_at"].is_string());
    let mine = listed
        .iter()
        .find(|x| x["id"] == sim.as_str())
        .expect("sim");
    assert_eq!(mine["ghl_token"]["kind"], "private");
    assert_eq!(mine["ghl_token"]["expires_at"], Value::Null);
    let gone = listed.iter().find(|x| x["id"] == "gone-c").expect("gone-c");
    assert_eq!(
        (&gone["state"], &gone["ghl_token"]["kind"]),
        (&Value::from("uninstalled"), &Value::from("none"))
    );

    // ---------------------------------------------------------------- dlq list, paged
    // Not replayed, newest first: ids[5], ids[4], ids[3], ids[2], ids[1], ids[0].
    let page = quiet(&t, &["dlq", "list", "--limit", "2"]).await;
    assert!(page.starts_with('┌'), "{page}");
    assert_eq!(row(&page, &ids[5].to_string())[5], UNAUTHORIZED);
    row(&page, &ids[4].to_string());
    assert!(
        page.ends_with(&format!(
            "\n2 dead letter(s); older ones: --before {}\n",
            ids[4]
        )),
        "{page}"
    );
    let before = ids[4].to_string();
    let next = json(
        &t,
        &["dlq", "list", "--limit", "2", "--before", &before, "--json"],
    )
    .await;
    let next = next.as_array().expect("an array");
    let got: Vec<i64> = next.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [ids[3], ids[2]]);
    for d in next {
        assert_eq!(
            keys(d),
            set(&[
                "id",
                "tenant",
                "message_id",
                "kind",
                "attempts",
                "error",
                "class",
                "created_at",
                "replayed_at",
            ])
        );
    }
    assert_eq!(next[1]["class"], TRANSIENT);
    assert_eq!(next[1]["error"], "gave up after 5 attempts");
    let last = quiet(
        &t,
        &[
            "dlq",
            "list",
            "--limit",
            "2",
            "--before",
            &ids[2].to_string(),
        ],
    )
    .await;
    row(&last, &ids[1].to_string());
    row(&last, &ids[0].to_string());
    assert!(
        last.ends_with("\n2 dead letter(s)\n"),
        "the last page names no next one: {last}"
    );
    let end = quiet(
        &t,
        &[
            "dlq",
            "list",
            "--limit",
            "2",
            "--before",
            &ids[0].to_string(),
        ],
    )
    .await;
    assert_eq!(end, "0 dead letter(s)\n");
    let short = quiet(&t, &["dlq", "list", "--before", &ids[1].to_string()]).await;
    assert!(short.ends_with("\n1 dead letter(s)\n"), "{short}");

    // ---------------------------------------------------------------- dlq list --summary
    let summary = quiet(&t, &["dlq", "list", "--summary"]).await;
    assert!(summary.starts_with('┌'), "{summary}");
    assert_eq!(
        row(&summary, "tenant"),
        ["tenant", "error class", "count", "newest", "newest id"]
    );
    let groups = |first: &str| {
        rows(&summary, first)
            .into_iter()
            .map(|c| (c[1].to_owned(), c[2].to_owned(), c[4].to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        groups(&sim),
        [
            (UNAUTHORIZED.to_owned(), "3".to_owned(), ids[5].to_string()),
            (TRANSIENT.to_owned(), "1".to_owned(), ids[2].to_string()),
        ]
    );
    assert_eq!(
        groups("agency-b"),
        [(TRANSIENT.to_owned(), "1".to_owned(), ids[3].to_string())]
    );
    assert_eq!(groups("(no tenant)").len(), 1);
    assert!(
        summary.contains("\n6 dead letter(s) in 4 group(s);"),
        "{summary}"
    );

    let s = json(&t, &["dlq", "list", "--summary", "--json"]).await;
    assert_eq!(keys(&s), set(&["total", "groups"]));
    assert_eq!(s["total"], 6);
    let groups = s["groups"].as_array().expect("groups");
    for g in groups {
        assert_eq!(
            keys(g),
            set(&["tenant", "class", "count", "newest_id", "newest_at"])
        );
    }
    let got: Vec<(Value, &str, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["tenant"].clone(),
                g["class"].as_str().unwrap(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Value::Null,
                "message body is not an envelope: expected value",
                1
            ),
            (Value::from("agency-b"), TRANSIENT, 1),
            (Value::from(sim.as_str()), UNAUTHORIZED, 3),
            (Value::from(sim.as_str()), TRANSIENT, 1),
        ]
    );
    // With the replayed one, for one tenant.
    let all = json(
        &t,
        &[
            "dlq",
            "list",
            "--summary",
            "--all",
            "--tenant",
            &sim,
            "--json",
        ],
    )
    .await;
    assert_eq!(all["total"], 5);
    assert_eq!(all["groups"][0]["count"], 4);
    assert_eq!(all["groups"][0]["newest_id"], ids[6]);

    // Paging and summing up are two questions: both at once is refused.
    let both = t
        .command(&["dlq", "list", "--summary", "--before", "3"])
        .await
        .output()
        .await
        .expect("run dlq list");
    assert_eq!(both.status.code(), Some(2));
}

/// The quiet default is only a default: `RUST_LOG` brings a command's routine steps back, in
/// human form unless the configuration asks for JSON off a terminal (a CronJob's logs, for
/// the collector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_brings_a_commands_routine_steps_back() {
    let t = TestApp::start(AppSpec::new("opcli-log")).await;
    for format in ["auto", "json"] {
        let out = t
            .command(&["tenants", "list"])
            .await
            .env("RUST_LOG", "info")
            .env("GES_TELEMETRY__FORMAT", format)
            .output()
            .await
            .expect("run tenants list");
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("store connected"))
            .unwrap_or_else(|| panic!("format {format}: nothing logged at info:\n{stderr}"));
        if format == "json" {
            let v: Value = serde_json::from_str(line).expect("a JSON log line");
            assert_eq!(v["level"], "INFO");
        } else {
            assert!(
                line.trim_start().starts_with("INFO") && !line.contains('{'),
                "human form: {line}"
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with('┌'), "logs stay off stdout:\n{stdout}");
    }
}
