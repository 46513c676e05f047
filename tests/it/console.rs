//! The operator console's access rules, over HTTP without a browser (issue 16's security
//! tests): the real ingress with the console on, the real store on PostgreSQL, accounts with
//! argon2 hashes in the configuration.

use argon2::PasswordHasher as _;
use e2e::support::{AppSpec, TestApp};
use ports::store::{
    AuditAction, AuditLog, AuditQuery, CredentialSecret, CredentialStore, DeadLetterStore,
    NewCredential, NewDeadLetter, Provider, TenantStore,
};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use tokio_util::sync::CancellationToken;

pub(crate) const PASSWORD: &str = "correct horse battery";
/// An OAuth access token that no page may show.
pub(crate) const PLANTED: &str = "planted-access-token-5e1f";

fn hash(password: &str) -> String {
    // Cheap parameters: the tests check the flow, not the cost.
    let salt = argon2::password_hash::SaltString::encode_b64(b"console-e2e-salt").unwrap();
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64, 1, 1, None).unwrap(),
    )
    .hash_password(password.as_bytes(), &salt)
    .unwrap()
    .to_string()
}

fn account(
    user: &str,
    role: app::config::ConsoleRole,
    tenants: &[&str],
) -> app::config::ConsoleAccount {
    app::config::ConsoleAccount {
        user: user.into(),
        password_hash: secrecy::SecretString::from(hash(PASSWORD)),
        role,
        tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// The test app with a second tenant, and its ingress serving the console.
pub(crate) struct Console {
    pub(crate) t: TestApp,
    pub(crate) base: String,
    http: reqwest::Client,
    pub(crate) stop: CancellationToken,
    /// The app as the console's ingress runs it.
    pub(crate) deployed: app::wiring::App,
}

impl Console {
    pub(crate) async fn start(test: &'static str) -> Self {
        Self::start_with(AppSpec::new(test)).await
    }

    pub(crate) async fn start_with(spec: AppSpec) -> Self {
        Self::start_configured(spec, |_, _| {}).await
    }

    /// Like [`Self::start_with`], with `tweak` applied to the configuration once the
    /// console's base URL is known.
    pub(crate) async fn start_configured(
        spec: AppSpec,
        tweak: impl FnOnce(&mut app::config::Config, &str),
    ) -> Self {
        use app::config::ConsoleRole::{Operator, Viewer};
        let t = TestApp::start(spec).await;
        let mut other = t.tenant.clone();
        other.id = domain::TenantId::parse("other").unwrap();
        other.name = "Other client".into();
        other.location_id = domain::LocationId::parse("otherLocation1").unwrap();
        TenantStore::upsert(t.app.store.as_ref(), &other)
            .await
            .unwrap();
        let mut config = t.config.clone();
        config.console.enabled = true;
        config.console.accounts = vec![
            account("ops", Operator, &[]),
            account("viewer", Viewer, &[]),
            account("limited", Operator, &[t.tenant.id.as_str()]),
        ];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tweak(&mut config, &base);
        let deployed = app::wiring::App::build(config, t.app.store.clone(), t.amqp.clone())
            .await
            .expect("the app");
        let stop = CancellationToken::new();
        tokio::spawn(app::ingress::serve(
            listener,
            deployed.ingress().expect("the router"),
            stop.clone(),
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            t,
            base,
            http,
            stop,
            deployed,
        }
    }

    async fn login(&self, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/console/login", self.base))
            .form(&[("user", user), ("password", password)])
            .send()
            .await
            .expect("the console answers")
    }

    /// A session cookie (`name=value`) for `user`.
    async fn session(&self, user: &str) -> String {
        let r = self.login(user, PASSWORD).await;
        assert_eq!(r.status(), 303, "{user} logs in");
        let set = r
            .headers()
            .get(SET_COOKIE)
            .expect("a session cookie")
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        assert!(!set.contains("Secure"), "no Secure flag on loopback: {set}");
        set.split(';').next().unwrap().to_owned()
    }

    async fn page(&self, cookie: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> u16 {
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .header(ACCEPT, "text/html")
            .form(form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The reasons of the tenant's operator entries in the audit log, newest first.
pub(crate) async fn operator_lines(t: &TestApp, tenant: &domain::TenantId) -> Vec<String> {
    AuditLog::query(
        t.app.store.as_ref(),
        &AuditQuery {
            tenant: tenant.clone(),
            contact: None,
            before_id: None,
            limit: 20,
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|r| r.entry.action == AuditAction::Operator)
    .filter_map(|r| r.entry.reason)
    .collect()
}

/// Tenant "other"'s GHL OAuth token, whose access token is [`PLANTED`], expiring at `expires_at`.
pub(crate) async fn plant_token(t: &TestApp, expires_at: chrono::DateTime<chrono::Utc>) {
    CredentialStore::put(
        t.app.store.as_ref(),
        &domain::TenantId::parse("other").unwrap(),
        Provider::Ghl,
        &NewCredential {
            secret: CredentialSecret::GhlOAuth {
                access_token: secrecy::SecretString::from(PLANTED.to_owned()),
                refresh_token: secrecy::SecretString::from(format!("{PLANTED}-refresh")),
                scopes: vec!["contacts.readonly".into()],
                user_type: "Location".into(),
                company_id: None,
            },
            expires_at: Some(expires_at),
        },
    )
    .await
    .unwrap();
}

/// A `sync.contact` message of the test's tenant that failed for good, with this cause
/// chain: its dead letter's id.
pub(crate) async fn dead_letter(t: &TestApp, message_id: &str, chain: &[&str]) -> i64 {
    let env = ports::queue::Envelope::new(
        message_id,
        t.tenant.id.clone(),
        ports::queue::Payload::SyncContact {
            contact: domain::GhlContactId::parse("contactToReplay1").unwrap(),
            dry_run: false,
            prefetched: None,
        },
        chrono::Utc::now(),
    );
    DeadLetterStore::put(
        t.app.store.as_ref(),
        &NewDeadLetter {
            tenant: Some(t.tenant.id.clone()),
            message_id: env.id.clone(),
            kind: "sync.contact".into(),
            envelope: env.to_json().unwrap(),
            error_chain: chain.iter().map(|c| (*c).to_owned()).collect(),
            attempts: 1,
        },
    )
    .await
    .unwrap()
}

/// Requests the GHL simulator answered that could write: neither a GET nor a search.
pub(crate) fn ghl_writes(ghl: &sandbox::ghl::GhlSandbox) -> u64 {
    ghl.counter_snapshot()
        .routes
        .iter()
        .filter(|(route, _)| !route.starts_with("GET ") && !route.ends_with("/search"))
        .flat_map(|(_, by_status)| by_status.values())
        .sum()
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_route_needs_a_session() {
    let c = Console::start("consoleauth").await;
    let sim = c.t.tenant.id.to_string();
    for path in [
        "/console".to_owned(),
        "/console/tenants".to_owned(),
        format!("/console/tenants/{sim}"),
        "/console/connect".to_owned(),
        format!("/console/tenants/{sim}/contacts?q=a"),
        format!("/console/tenants/{sim}/contacts/someContact1"),
        format!("/console/tenants/{sim}/dry-runs/0123456789ab"),
    ] {
        let url = format!("{}{path}", c.base);
        if path != "/console" {
            let browser = c
                .http
                .get(&url)
                .header(ACCEPT, "text/html")
                .send()
                .await
                .unwrap();
            assert_eq!(browser.status(), 303, "{path}");
            assert_eq!(browser.headers()[LOCATION], "/console/login", "{path}");
            let api = c.http.get(&url).send().await.unwrap();
            assert_eq!(api.status(), 401, "{path} for a non-HTML client");
        }
    }
    for path in [
        format!("/console/tenants/{sim}/pause"),
        format!("/console/tenants/{sim}/sync"),
        format!("/console/tenants/{sim}/replay-group"),
        format!("/console/tenants/{sim}/refresh-token"),
        format!("/console/tenants/{sim}/dry-run-full"),
        format!("/console/tenants/{sim}/contacts/someContact1/sync"),
        "/console/connect/map".to_owned(),
        "/console/logout".to_owned(),
    ] {
        let r = c
            .http
            .post(format!("{}{path}", c.base))
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // A forged cookie is no session.
    let (status, _) = c
        .page("ges_console=ops.99999999999.forged", "/console/tenants")
        .await;
    assert_eq!(status, 303);
    // The login page itself is open, and a session reaches the pages.
    let (status, html) = c.page("", "/console/login").await;
    assert_eq!(status, 200);
    assert!(html.contains("type=\"password\""));
    let cookie = c.session("ops").await;
    let (status, html) = c.page(&cookie, "/console/tenants").await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("data-tenant=\"{sim}\"")), "{html}");
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_needs_the_csrf_token_and_an_operator_and_is_audited() {
    let c = Console::start("consolecsrf").await;
    let sim = c.t.tenant.id.clone();
    let store = c.t.app.store.clone();
    let path = format!("/console/tenants/{sim}/pause");
    let ops = c.session("ops").await;
    let (_, html) = c.page(&ops, &format!("/console/tenants/{sim}")).await;
    let token = csrf(&html);
    assert_eq!(c.post(&ops, &path, &[]).await, 403, "no CSRF token");
    assert_eq!(c.post(&ops, &path, &[("csrf", "forged")]).await, 403);
    assert!(TenantStore::get(store.as_ref(), &sim).await.unwrap().active);

    // A viewer's own valid token still cannot act.
    let viewer = c.session("viewer").await;
    let (_, html) = c.page(&viewer, &format!("/console/tenants/{sim}")).await;
    assert!(!html.contains("Pause"), "a viewer is offered no action");
    let viewer_token = csrf(&html);
    assert_eq!(
        c.post(&viewer, &path, &[("csrf", &viewer_token)]).await,
        403
    );
    // Nor does another session's token pass.
    assert_eq!(c.post(&viewer, &path, &[("csrf", &token)]).await, 403);
    assert!(TenantStore::get(store.as_ref(), &sim).await.unwrap().active);

    assert_eq!(c.post(&ops, &path, &[("csrf", &token)]).await, 303);
    assert!(
        !TenantStore::get(store.as_ref(), &sim).await.unwrap().active,
        "paused"
    );
    let audit = crate::console::operator_lines(&c.t, &sim).await;
    assert!(
        audit
            .iter()
            .any(|why| why.contains("console user ops") && why.contains("pause")),
        "{audit:#?}"
    );
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_limited_to_one_tenant_sees_and_acts_on_it_alone() {
    let c = Console::start("consolelimit").await;
    let sim = c.t.tenant.id.to_string();
    let limited = c.session("limited").await;
    let (status, html) = c.page(&limited, "/console/tenants").await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("data-tenant=\"{sim}\"")));
    assert!(!html.contains("data-tenant=\"other\""), "{html}");
    assert!(!html.contains("Other client"));
    let (status, _) = c.page(&limited, "/console/tenants/other").await;
    assert_eq!(status, 403);
    let (_, own) = c.page(&limited, &format!("/console/tenants/{sim}")).await;
    let token = csrf(&own);
    assert_eq!(
        c.post(
            &limited,
            "/console/tenants/other/pause",
            &[("csrf", &token)]
        )
        .await,
        403
    );
    // Nor any other of tenant other's pages or actions; nor may it add tenants.
    for path in [
        "/console/tenants/other/contacts?q=a",
        "/console/tenants/other/contacts/someContact1",
        "/console/tenants/other/dry-runs/0123456789ab",
    ] {
        assert_eq!(c.page(&limited, path).await.0, 403, "{path}");
    }
    for path in [
        "/console/tenants/other/dry-run-full",
        "/console/tenants/other/refresh-token",
        "/console/tenants/other/replay-group",
        "/console/tenants/other/contacts/someContact1/sync",
        "/console/connect/map",
    ] {
        assert_eq!(
            c.post(&limited, path, &[("csrf", &token)]).await,
            403,
            "{path}"
        );
    }
    let (_, connect) = c.page(&limited, "/console/connect").await;
    assert!(!connect.contains("connect-agency"), "no agency install");
    assert!(!connect.contains("data-tenant=\"other\""), "{connect}");
    let other = domain::TenantId::parse("other").unwrap();
    assert!(
        TenantStore::get(c.t.app.store.as_ref(), &other)
            .await
            .unwrap()
            .active
    );
    // An unrestricted operator sees both.
    let ops = c.session("ops").await;
    let (_, html) = c.page(&ops, "/console/tenants").await;
    assert!(html.contains("data-tenant=\"other\""));
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_shows_a_stored_token() {
    let c = Console::start("consolesecret").await;
    plant_token(&c.t, chrono::Utc::now() + chrono::Duration::hours(20)).await;
    let ops = c.session("ops").await;
    // eKyte keys of "other" too: neither is shown anywhere.
    const PLANTED_KEY: &str = "planted-ekyte-key-77a1";
    CredentialStore::put(
        c.t.app.store.as_ref(),
        &domain::TenantId::parse("other").unwrap(),
        Provider::Ekyte,
        &NewCredential {
            secret: CredentialSecret::Ekyte {
                api_key: secrecy::SecretString::from(PLANTED_KEY.to_owned()),
                mcp_token: Some(secrecy::SecretString::from(format!("{PLANTED_KEY}-mcp"))),
            },
            expires_at: None,
        },
    )
    .await
    .unwrap();
    for path in ["/console/tenants", "/console/tenants/other"] {
        let (status, html) = c.page(&ops, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains(PLANTED), "{path} shows the token");
        assert!(!html.contains(PLANTED_KEY), "{path} shows the eKyte key");
        assert!(
            html.contains("expires 20"),
            "{path} shows the expiry: {html}"
        );
    }
    for path in ["/console/connect", "/console/tenants/other/contacts?q=x"] {
        let (status, html) = c.page(&ops, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !html.contains(PLANTED) && !html.contains(PLANTED_KEY),
            "{path} shows a secret"
        );
    }
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenth_wrong_password_in_a_minute_is_refused_unchecked() {
    let c = Console::start("consolelimitlogin").await;
    for n in 1..=app::console::auth::FAILURES_PER_MINUTE {
        assert_eq!(c.login("ops", "guess").await.status(), 401, "attempt {n}");
    }
    // The tenth, with the right password: refused before any check.
    assert_eq!(c.login("ops", PASSWORD).await.status(), 429);
    // Another user is not locked out by it.
    assert_eq!(c.login("viewer", PASSWORD).await.status(), 303);
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_leaves_the_list_and_is_audited() {
    let c = Console::start("consolereplay").await;
    let store = c.t.app.store.clone();
    let sim = c.t.tenant.id.clone();
    let id = dead_letter(
        &c.t,
        "console-replay-1",
        &["eKyte create workspace failed", "unauthorized"],
    )
    .await;
    let ops = c.session("ops").await;
    let page = format!("/console/tenants/{sim}");
    let (_, html) = c.page(&ops, &page).await;
    assert!(
        html.contains(&format!("data-dead-letter=\"{id}\"")),
        "{html}"
    );
    assert!(html.contains("caused by: unauthorized"), "the whole chain");
    let token = csrf(&html);
    let status = c
        .post(
            &ops,
            &format!("{page}/replay"),
            &[("csrf", &token), ("dead_letter", &id.to_string())],
        )
        .await;
    assert_eq!(status, 303);
    let (_, html) = c.page(&ops, &page).await;
    assert!(
        !html.contains(&format!("data-dead-letter=\"{id}\"")),
        "left the list"
    );
    assert!(
        DeadLetterStore::get(store.as_ref(), id)
            .await
            .unwrap()
            .replayed_at
            .is_some()
    );
    let audit = crate::console::operator_lines(&c.t, &sim).await;
    assert!(
        audit
            .iter()
            .any(|w| w.contains(&format!("replayed dead letter {id}"))),
        "{audit:#?}"
    );
    c.stop.cancel();
}

/// `demo --console`: after its report the demo keeps running with the console on, prints the
/// URL and a login that work, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_leaves_its_console_up_until_told_to_stop() {
    use tokio::io::AsyncBufReadExt as _;
    let mut cmd = e2e::support::binary_command().await;
    cmd.args(["demo", "--contacts", "5", "--queue", "memory", "--console"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start the demo");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.expect("the demo's output") {
            if line.starts_with("console: ") {
                return line;
            }
        }
        panic!("the demo ended without printing its console");
    })
    .await
    .expect("the console line within 5 minutes");
    // "console: http://127.0.0.1:PORT/console  (user demo, password XXXX); Ctrl-C stops it"
    let url = line.split_whitespace().nth(1).unwrap().to_owned();
    let password = line
        .split("password ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("a password")
        .to_owned();
    let base = url.trim_end_matches("/console").to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{base}/console/login"))
        .form(&[("user", "demo"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "the printed login works");
    let cookie = login.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(format!("{base}/console/tenants"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("data-tenant="));
    // Connect works in the demo too: its consent page is the GHL simulator's.
    let connect = http
        .get(format!("{base}/console/connect"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = connect
        .split("id=\"connect-agency\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a Connect GHL link")
        .replace("&amp;", "&");
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    assert!(link.contains("/v2/oauth/chooselocation?"), "{link}");
    let consent = http.get(&link).send().await.unwrap();
    assert_eq!(consent.status(), 200, "the simulator's consent page");
    assert!(consent.text().await.unwrap().contains("form id=\"agency\""));
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("the demo stops")
        .unwrap();
    assert!(status.success(), "the converged demo exits 0: {status}");
}

/// The rows of a page's table with this id (`<tr data-…>` lines in its body).
fn rows(html: &str, table: &str, attribute: &str) -> usize {
    let Some(at) = html.find(&format!("id=\"{table}\"")) else {
        return 0;
    };
    let body = &html[at..html[at..].find("</table>").map_or(html.len(), |e| at + e)];
    body.matches(&format!("<tr {attribute}=")).count()
}

/// The tenant page's dead letters: grouped by error with counts, paged 25 at a time, one
/// group shown alone; a group replayed at once, then everything since a time. Each replay
/// is audited with its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_grouped_paged_and_replayed_by_group_or_since_a_time() {
    let c = Console::start("consoledlq").await;
    let sim = c.t.tenant.id.clone();
    let store = c.t.app.store.clone();
    let mut revoked = Vec::new();
    for i in 0..27 {
        revoked.push(
            dead_letter(
                &c.t,
                &format!("dlq-revoked-{i}"),
                &[
                    "eKyte create workspace failed",
                    &format!("unauthorized: key {i} was revoked"),
                ],
            )
            .await,
        );
    }
    let mut unavailable = Vec::new();
    for i in 0..3 {
        unavailable.push(
            dead_letter(
                &c.t,
                &format!("dlq-503-{i}"),
                &["GHL get contact failed", "transient failure: HTTP 503"],
            )
            .await,
        );
    }
    let ops = c.session("ops").await;
    let tenant_page = format!("/console/tenants/{sim}");
    let (status, html) = c.page(&ops, &tenant_page).await;
    assert_eq!(status, 200);
    assert!(html.contains("Dead letters (30)"), "{html}");
    assert_eq!(rows(&html, "dead-letter-groups", "data-class"), 2);
    assert!(html.contains("Replay all 27"), "the larger group first");
    assert!(html.contains("Replay all 3"));
    assert_eq!(
        rows(&html, "dead-letter-list", "data-dead-letter"),
        25,
        "one page"
    );
    let older = html
        .split("id=\"older-letters\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a link to the older letters")
        .replace("&amp;", "&");
    let (_, second) = c.page(&ops, &older).await;
    assert_eq!(rows(&second, "dead-letter-list", "data-dead-letter"), 5);
    assert!(!second.contains("id=\"older-letters\""), "the last page");
    let class = "GHL get contact failed: transient failure";
    let (_, only) = c
        .page(
            &ops,
            &format!("{tenant_page}?class=GHL%20get%20contact%20failed%3A%20transient%20failure"),
        )
        .await;
    assert_eq!(rows(&only, "dead-letter-list", "data-dead-letter"), 3);

    let token = csrf(&html);
    let act = |name: &str| format!("{tenant_page}/{name}");
    assert_eq!(
        c.post(
            &ops,
            &act("replay-group"),
            &[("csrf", &token), ("class", class)]
        )
        .await,
        303
    );
    let replayed = |ids: Vec<i64>| {
        let store = store.clone();
        async move {
            let mut n = 0;
            for id in ids {
                if DeadLetterStore::get(store.as_ref(), id)
                    .await
                    .unwrap()
                    .replayed_at
                    .is_some()
                {
                    n += 1;
                }
            }
            n
        }
    };
    assert_eq!(replayed(unavailable.clone()).await, 3, "the group");
    assert_eq!(replayed(revoked.clone()).await, 0, "and nothing else");

    // Since a minute from now: nothing; since a minute ago: all the rest.
    let at = |minutes: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(minutes))
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    assert_eq!(
        c.post(
            &ops,
            &act("replay-since"),
            &[("csrf", &token), ("since", &at(2))]
        )
        .await,
        303
    );
    assert_eq!(replayed(revoked.clone()).await, 0);
    assert_eq!(
        c.post(
            &ops,
            &act("replay-since"),
            &[("csrf", &token), ("since", "yesterday")]
        )
        .await,
        422,
        "a time it cannot read"
    );
    assert_eq!(
        c.post(
            &ops,
            &act("replay-since"),
            &[("csrf", &token), ("since", &at(-2))]
        )
        .await,
        303
    );
    assert_eq!(replayed(revoked).await, 27);
    let (_, after) = c.page(&ops, &tenant_page).await;
    assert!(after.contains("Dead letters (0)"), "{after}");
    let audit = operator_lines(&c.t, &sim).await;
    for line in [
        format!("replayed 3 dead letter(s) of group \"{class}\""),
        "replayed 0 dead letter(s) created since".to_owned(),
        "replayed 27 dead letter(s) created since".to_owned(),
        "replay-since failed: give the time as YYYY-MM-DDTHH:MM".to_owned(),
    ] {
        assert!(
            audit.iter().any(|a| a.contains(&line)),
            "{line} in {audit:#?}"
        );
    }
    c.stop.cancel();
}

/// "Check eKyte now" records what eKyte said, and the tenants page shows it until a passing
/// check or a new key; "Refresh GHL token now" refreshes an OAuth token through GHL at once,
/// and a refresh GHL refuses is shown red with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_checks_the_ekyte_key_and_refreshes_the_ghl_token() {
    const CLIENT: &str = "refresh-client";
    let c = Console::start_configured(AppSpec::new("consolekeys"), |config, _| {
        config.ghl.client_id = CLIENT.into();
        config.ghl.client_secret = secrecy::SecretString::from(format!("{CLIENT}-secret"));
    })
    .await;
    let t = &c.t;
    let store = t.app.store.clone();
    let sim = t.tenant.id.clone();
    let other = domain::TenantId::parse("other").unwrap();
    let ops = c.session("ops").await;
    let (_, html) = c.page(&ops, "/console/tenants").await;
    let token = csrf(&html);
    let row = |html: &str, id: &str| {
        let at = html
            .find(&format!("<tr data-tenant=\"{id}\""))
            .expect("the tenant's row");
        html[at..at + html[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(
        row(&html, "other").contains("no eKyte API key"),
        "{}",
        row(&html, "other")
    );
    assert!(row(&html, sim.as_str()).contains("API key: no failed check"));
    assert!(row(&html, sim.as_str()).contains("MCP token: "));

    // A wrong key for "other": the check records eKyte's refusal.
    let put_key = |key: String| {
        let store = store.clone();
        let other = other.clone();
        async move {
            CredentialStore::put(
                store.as_ref(),
                &other,
                Provider::Ekyte,
                &NewCredential {
                    secret: CredentialSecret::Ekyte {
                        api_key: secrecy::SecretString::from(key),
                        mcp_token: None,
                    },
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        }
    };
    put_key("not-the-key".into()).await;
    let check = "/console/tenants/other/check-ekyte";
    assert_eq!(c.post(&ops, check, &[("csrf", &token)]).await, 303);
    let (_, html) = c.page(&ops, "/console/tenants").await;
    let line = row(&html, "other");
    assert!(line.contains("eKyte check failed"), "{line}");
    assert!(line.contains("needs attention"), "{line}");
    let (_, page) = c.page(&ops, "/console/tenants/other").await;
    assert!(page.contains("unauthorized"), "the reason on its page");
    assert!(!page.contains("not-the-key"), "never the key");
    // The right key: storing it forgets the failed check; a check passes.
    let CredentialSecret::Ekyte { api_key, .. } =
        CredentialStore::get(store.as_ref(), &sim, Provider::Ekyte)
            .await
            .unwrap()
            .secret
    else {
        panic!("sim's eKyte key");
    };
    put_key(secrecy::ExposeSecret::expose_secret(&api_key).to_owned()).await;
    let (_, html) = c.page(&ops, "/console/tenants").await;
    assert!(!row(&html, "other").contains("eKyte check failed"));
    assert_eq!(c.post(&ops, check, &[("csrf", &token)]).await, 303);
    let audit = operator_lines(t, &other).await;
    assert!(
        audit
            .iter()
            .any(|a| a.contains("checked eKyte: unauthorized")),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a.contains("checked eKyte: the key, the user and the task type work")),
        "{audit:#?}"
    );

    // Refresh now: an OAuth token GHL knows is replaced at once.
    let ghl = &t.world.ghl;
    ghl.register_oauth_client(sandbox::ghl::OAuthClientSpec {
        client_id: CLIENT.into(),
        client_secret: format!("{CLIENT}-secret"),
        ..Default::default()
    })
    .unwrap();
    let pair = ghl
        .issue_tokens(CLIENT, t.tenant.location_id.as_str(), None)
        .unwrap();
    let before = CredentialStore::put(
        store.as_ref(),
        &sim,
        Provider::Ghl,
        &NewCredential {
            secret: CredentialSecret::GhlOAuth {
                access_token: secrecy::SecretString::from(pair.access_token.clone()),
                refresh_token: secrecy::SecretString::from(pair.refresh_token),
                scopes: vec![],
                user_type: "Location".into(),
                company_id: None,
            },
            // Valid for hours: only the operator's action refreshes it.
            expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(20)),
        },
    )
    .await
    .unwrap();
    let refresh = format!("/console/tenants/{sim}/refresh-token");
    assert_eq!(c.post(&ops, &refresh, &[("csrf", &token)]).await, 303);
    let after = CredentialStore::get(store.as_ref(), &sim, Provider::Ghl)
        .await
        .unwrap();
    assert!(after.version > before.version, "a new token was stored");
    let CredentialSecret::GhlOAuth { access_token, .. } = &after.secret else {
        panic!("an OAuth token");
    };
    assert_ne!(
        secrecy::ExposeSecret::expose_secret(access_token),
        pair.access_token.as_str()
    );
    assert!(
        operator_lines(t, &sim)
            .await
            .iter()
            .any(|a| a.contains("console user ops: refreshed the GHL token (valid until")),
    );
    // A refresh token GHL does not know: refused, shown red with the reason, audited.
    plant_token(t, chrono::Utc::now() + chrono::Duration::hours(20)).await;
    assert_eq!(
        c.post(
            &ops,
            "/console/tenants/other/refresh-token",
            &[("csrf", &token)]
        )
        .await,
        422
    );
    let (_, html) = c.page(&ops, "/console/tenants").await;
    let line = row(&html, "other");
    assert!(line.contains("GHL token refresh failed"), "{line}");
    assert!(!html.contains(PLANTED));
    assert!(
        operator_lines(t, &other)
            .await
            .iter()
            .any(|a| a.contains("refresh-token failed")),
    );
    c.stop.cancel();
}

/// A dry-run of a whole full sync: the page lists, contact by contact, the writes a full
/// sync would make, refreshing itself until it ends; nothing is written on either side,
/// nothing is queued and no run is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_of_a_full_sync_lists_each_contacts_writes_and_writes_nothing() {
    let mut spec = AppSpec::new("consoleplan");
    spec.world.contacts = 4;
    spec.world.onboarding = false;
    let c = Console::start_with(spec).await;
    let t = &c.t;
    let sim = t.tenant.id.clone();
    let company = t.world.company.company_id;
    let ghl = &t.world.ghl;
    let writes_before = ghl_writes(ghl);
    let workspaces_before = t.world.ekyte.dump(company).unwrap().workspaces.len();
    let ops = c.session("ops").await;
    let (_, html) = c.page(&ops, &format!("/console/tenants/{sim}")).await;
    assert!(html.contains("Dry-run a full sync"));
    let r = c
        .http
        .post(format!("{}/console/tenants/{sim}/dry-run-full", c.base))
        .header(COOKIE, &ops)
        .header(ACCEPT, "text/html")
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let job_page = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(job_page.starts_with(&format!("/console/tenants/{sim}/dry-runs/")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let page = loop {
        let (status, page) = c.page(&ops, &job_page).await;
        assert_eq!(status, 200, "{page}");
        if page.contains("finished:") {
            break page;
        }
        assert!(
            page.contains("http-equiv=\"refresh\""),
            "a running dry-run's page refreshes itself"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the dry-run did not end in time: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "an ended one does not"
    );
    assert!(
        page.contains("4 contact(s) planned, 4 with writes"),
        "{page}"
    );
    assert!(page.contains("Nothing was written on either side."));
    for contact in &t.world.contacts {
        assert!(
            page.contains(&format!("<tr class=\"planned\" data-contact=\"{contact}\"")),
            "{contact}'s writes are listed: {page}"
        );
    }
    assert!(
        page.contains("create"),
        "a workspace would be created: {page}"
    );
    assert_eq!(ghl_writes(ghl), writes_before, "GHL untouched");
    assert_eq!(
        t.world.ekyte.dump(company).unwrap().workspaces.len(),
        workspaces_before,
        "eKyte untouched"
    );
    let depths = t.app.broker.depths().await.unwrap();
    assert_eq!((depths.realtime, depths.bulk), (0, 0), "nothing queued");
    assert!(
        ports::store::RunStore::recent(t.app.store.as_ref(), &sim, 5)
            .await
            .unwrap()
            .is_empty(),
        "no run recorded"
    );
    assert!(
        operator_lines(t, &sim)
            .await
            .iter()
            .any(|a| a.contains("console user ops: started a dry-run of a full sync")),
    );
    let (status, _) = c
        .page(
            &ops,
            &format!("/console/tenants/{sim}/dry-runs/000000000000"),
        )
        .await;
    assert_eq!(status, 404, "an unknown dry-run");
    c.stop.cancel();
}

/// What the workers observed reaches the tenants page through the store: the location's GHL
/// rate budget from the last answer's headers, and how long the tenant's messages waited in
/// the queue; the queues' depths head the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_page_shows_the_rate_budget_and_queue_waits_the_workers_saw() {
    let mut spec = AppSpec::new("consoleobserve");
    spec.world.contacts = 3;
    spec.world.onboarding = false;
    let c = Console::start_configured(spec, |config, _| {
        config.worker.observe_every = std::time::Duration::from_millis(200);
    })
    .await;
    let sim = c.t.tenant.id.clone();
    let ops = c.session("ops").await;
    let (_, html) = c.page(&ops, "/console/tenants").await;
    assert!(
        html.contains("Waiting in the queues now (all tenants): real-time 0"),
        "{html}"
    );
    assert!(html.contains("no GHL answer seen"));
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        c.deployed
            .worker("console-observe".into())
            .run(shutdown.clone()),
    );
    assert_eq!(
        c.post(
            &ops,
            &format!("/console/tenants/{sim}/sync"),
            &[("csrf", &csrf(&html)), ("mode", "full")]
        )
        .await,
        303
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let row = loop {
        let (_, html) = c.page(&ops, "/console/tenants").await;
        let at = html.find(&format!("<tr data-tenant=\"{sim}\"")).unwrap();
        let row = html[at..at + html[at..].find("</tr>").unwrap()].to_owned();
        if row.contains(" per 1 s") && row.contains(" taken, waited up to ") {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no observation reached the page: {row}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // The simulator's limit here: 1,000 per second, and its daily limit.
    assert!(row.contains("of 1000 per 1 s"), "{row}");
    assert!(row.contains(" today"), "{row}");
    let rates = ports::store::Observations::rates(c.t.app.store.as_ref())
        .await
        .unwrap();
    assert!(
        rates
            .iter()
            .any(|r| r.resource == c.t.tenant.location_id.as_str() && r.remaining.is_some()),
        "{rates:?}"
    );
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    c.stop.cancel();
}
