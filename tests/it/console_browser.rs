//! The operator console in a real browser: headless Chromium driven through WebDriver
//! (chromedriver), against the real ingress and store. Debian's `chromium` and
//! `chromium-driver` packages provide both (`.ci/run` installs them when missing); without
//! them these tests fail and say so, they are never skipped.
//!
//! With `E2E_CONSOLE_SCREENSHOTS=<folder>` the tests save what the browser shows there as PNG
//! files (the screenshots in `docs/operations.md` come from them).

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use ports::store::{DeadLetterStore, TenantStore};
use serde_json::json;

use crate::console::{Console, PASSWORD, PLANTED};

const DEADLINE: Duration = Duration::from_secs(30);

/// Chromium under chromedriver, ended with the test.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

fn installed(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

impl Browser {
    async fn start() -> Self {
        let missing = "headless Chromium and chromedriver are needed for the console's browser \
                       tests: `apt-get install -y chromium chromium-driver` (.ci/run does it)";
        let driver = installed("chromedriver").unwrap_or_else(|| panic!("{missing}"));
        let chromium = installed("chromium").unwrap_or_else(|| panic!("{missing}"));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        loop {
            let ready = http
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "chromedriver did not answer within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a browser session");
        Self {
            client,
            _driver: child,
        }
    }

    /// The element `locator` finds, once the page shows it (at most [`DEADLINE`]); `what`
    /// names it when it never comes.
    async fn wait_for(&self, locator: Locator<'_>, what: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(locator)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Save what the browser shows as `<name>.png`, when screenshots are asked for.
    async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("E2E_CONSOLE_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }

    async fn log_in(&self, base: &str, user: &str) {
        self.client
            .goto(&format!("{base}/console/tenants"))
            .await
            .unwrap();
        // Not signed in: the browser lands on the login page.
        let form = self
            .wait_for(
                Locator::Css("form[action='/console/login']"),
                "the login page",
            )
            .await;
        self.screenshot("login").await;
        form.find(Locator::Css("input[name=user]"))
            .await
            .unwrap()
            .send_keys(user)
            .await
            .unwrap();
        form.find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys(PASSWORD)
            .await
            .unwrap();
        form.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for(
            Locator::Css("table#tenants"),
            "the tenants page after logging in",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_logs_in_sees_what_needs_attention_and_replays_a_dead_letter() {
    let c = Console::start("consolebrowser").await;
    let store = c.t.app.store.clone();
    let sim = c.t.tenant.id.clone();
    // Tenant "other": its GHL token expired.
    let other = domain::TenantId::parse("other").unwrap();
    crate::console::plant_token(&c.t, chrono::Utc::now() - chrono::Duration::hours(3)).await;
    // A call for it refreshes the token first; GHL refuses the refresh token.
    let other_tenant = TenantStore::get(store.as_ref(), &other).await.unwrap();
    let scope = ports::Scope::new(std::sync::Arc::new(other_tenant), ports::Priority::RealTime);
    let refused = ports::ghl::GhlApi::get_contact(
        &c.t.app.ghl,
        &scope,
        &domain::GhlContactId::parse("anyContact1").unwrap(),
    )
    .await;
    assert!(refused.is_err(), "the refresh must fail: {refused:?}");
    // Tenant "sim": a message that failed for good.
    let letter = crate::console::dead_letter(
        &c.t,
        "browser-replay-1",
        &[
            "eKyte create workspace failed",
            "unauthorized: the API key was revoked",
        ],
    )
    .await;

    let b = Browser::start().await;
    b.log_in(&c.base, "ops").await;
    let row = b
        .client
        .find(Locator::Css("tr[data-tenant='other']"))
        .await
        .expect("tenant other's row");
    let badge = row
        .find(Locator::Css(".badge.bad"))
        .await
        .expect("a red badge");
    assert_eq!(badge.text().await.unwrap(), "needs attention");
    let text = row.text().await.unwrap();
    assert!(text.contains("GHL token refresh failed"), "{text}");
    assert!(text.contains("GHL token expired"), "{text}");
    assert!(!b.client.source().await.unwrap().contains(PLANTED));
    let sim_row = b
        .client
        .find(Locator::Css(&format!("tr[data-tenant='{sim}']")))
        .await
        .unwrap();
    assert!(
        sim_row.text().await.unwrap().contains("1 dead letter(s)"),
        "the dead letter counts against its tenant"
    );
    b.screenshot("tenants").await;

    // The unhealthy filter keeps both; a name filter keeps one.
    b.client
        .goto(&format!("{}/console/tenants?name=other", c.base))
        .await
        .unwrap();
    let shown = b
        .client
        .find_all(Locator::Css("tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(shown, 1);

    // The tenant's page: the dead letter with its chain, and a Replay button.
    b.client
        .goto(&format!("{}/console/tenants/{sim}", c.base))
        .await
        .unwrap();
    let line = b
        .wait_for(
            Locator::Css(&format!("tr[data-dead-letter='{letter}']")),
            "the dead letter",
        )
        .await;
    assert!(
        line.text()
            .await
            .unwrap()
            .contains("caused by: unauthorized: the API key was revoked")
    );
    b.screenshot("tenant").await;
    line.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page after the POST: the same table, without the letter. (Waiting for the table
    // alone could find the old page's before the browser moved on.)
    b.wait_for(
        Locator::XPath(&format!(
            "//table[@id='dead-letter-list'][not(.//tr[@data-dead-letter='{letter}'])]"
        )),
        "the replayed letter left the list",
    )
    .await;
    assert!(
        DeadLetterStore::get(store.as_ref(), letter)
            .await
            .unwrap()
            .replayed_at
            .is_some()
    );
    let audit = crate::console::operator_lines(&c.t, &sim).await;
    assert!(
        audit
            .iter()
            .any(|w| w.contains(&format!("console user ops: replayed dead letter {letter}"))),
        "{audit:#?}"
    );
    b.client.close().await.unwrap();
    c.stop.cancel();
}

/// A contact edited on both sides: its page shows GHL now, eKyte now and the last agreed
/// value; a dry-run lists the planned writes and writes nothing; after a sync the page shows
/// the history lines of that edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_edited_on_both_sides_shows_both_its_plan_and_its_history() {
    let mut spec = e2e::support::AppSpec::new("consolecontact");
    spec.world.contacts = 3;
    spec.world.onboarding = false;
    let c = Console::start_with(spec).await;
    let t = &c.t;
    let ghl = &t.world.ghl;
    ghl.set_webhook_target(None);
    let worker = t.spawn_worker();
    let scope = t
        .app
        .engine
        .scope(&t.tenant.id, ports::Priority::Bulk)
        .await
        .unwrap();
    t.app
        .engine
        .sweep(&scope, ports::queue::SyncMode::Full, false, &engine::Quiet)
        .await
        .expect("full sync");
    app::demo::run::wait_quiet(
        t.app.broker.as_ref(),
        &t.world,
        &worker.stats,
        DEADLINE * 2,
        None,
    )
    .await
    .expect("settle");
    let contact = t.world.contacts[0].clone();
    let workspace = t.workspaces_of(&contact).pop().expect("its workspace");
    let company = t.world.company.company_id;
    let email = ghl.dump_location(&t.world.location).unwrap()["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == json!(contact))
        .and_then(|x| x["email"].as_str())
        .expect("its email")
        .to_owned();
    // Both sides edited while nothing listens.
    ghl.act_update_contact(
        &contact,
        json!({"firstName": "Changed", "lastName": "InGhl"}),
    )
    .expect("edit in GHL");
    t.world
        .ekyte
        .rename_workspace(company, workspace.id, "Renamed In Ekyte")
        .expect("edit in eKyte");

    let b = Browser::start().await;
    b.log_in(&c.base, "ops").await;
    b.client
        .goto(&format!("{}/console/tenants/{}", c.base, t.tenant.id))
        .await
        .unwrap();
    let find = b
        .wait_for(Locator::Css("input[name=q]"), "the contact search box")
        .await;
    find.send_keys(&email).await.unwrap();
    find.send_keys("\u{E007}").await.unwrap(); // Enter
    let name_row = b
        .wait_for(
            Locator::Css("tr[data-field='name']"),
            "the contact page, found by email",
        )
        .await;
    let text = name_row.text().await.unwrap();
    assert!(text.contains("Changed InGhl"), "GHL now: {text}");
    assert!(text.contains("Renamed In Ekyte"), "eKyte now: {text}");
    assert_eq!(
        name_row.attr("class").await.unwrap().as_deref(),
        Some("bad"),
        "the sides disagree with what was agreed"
    );
    b.screenshot("contact").await;

    // Dry-run: the planned writes, and nothing written.
    let writes_before = crate::console::ghl_writes(ghl);
    b.client
        .find(Locator::Css("form[action$='/dry-run'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let planned = b
        .wait_for(Locator::Css("#dry-run"), "the dry-run's plan")
        .await;
    let plan = planned.text().await.unwrap();
    assert!(plan.contains("nothing was written"), "{plan}");
    assert!(
        !b.client
            .find_all(Locator::Css("#dry-run tr.planned"))
            .await
            .unwrap()
            .is_empty(),
        "planned writes listed: {plan}"
    );
    b.screenshot("contact-dry-run").await;
    let after = t.world.ekyte.dump(company).unwrap().workspaces;
    let after = after
        .iter()
        .find(|w| w.id == workspace.id)
        .expect("the workspace");
    assert_eq!(after.name, "Renamed In Ekyte", "eKyte untouched");
    // GHL: reads only (every request the dry-run made was a GET or the search POST).
    assert_eq!(
        crate::console::ghl_writes(ghl),
        writes_before,
        "GHL untouched"
    );

    // A real sync, then the page shows the history of the edit.
    t.app
        .engine
        .sync_contact(
            t.app
                .engine
                .scope(&t.tenant.id, ports::Priority::RealTime)
                .await
                .unwrap(),
            &domain::GhlContactId::parse(&contact).unwrap(),
            engine::Options::default(),
        )
        .await
        .expect("sync the contact");
    b.client
        .goto(&format!(
            "{}/console/tenants/{}/contacts/{contact}",
            c.base, t.tenant.id
        ))
        .await
        .unwrap();
    let history = b
        .wait_for(Locator::Css("table#history"), "the contact's history")
        .await
        .text()
        .await
        .unwrap();
    assert!(history.contains("update"), "{history}");
    assert!(
        history.contains("(dry-run)"),
        "the dry-run is in the history too: {history}"
    );
    assert!(history.contains("console dry-run"), "its cause: {history}");
    // The calls the sync made, once for its message: both sides were read and written.
    let calls: Vec<String> = {
        let mut out = Vec::new();
        for cell in b
            .client
            .find_all(Locator::Css("table#history td.calls"))
            .await
            .unwrap()
        {
            let text = cell.text().await.unwrap();
            if !text.is_empty() {
                out.push(text);
            }
        }
        out
    };
    let newest = calls.first().expect("the sync's calls");
    let count = |side: &str| -> u32 {
        newest
            .split(" · ")
            .find_map(|p| p.strip_prefix(side))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{side} calls in {newest:?}"))
    };
    assert!(count("GHL ") >= 1 && count("eKyte ") >= 1, "{newest}");
    // The contact opens in GHL.
    let out = b
        .client
        .find(Locator::Css("a.out"))
        .await
        .expect("a link into GHL");
    assert!(
        out.attr("href")
            .await
            .unwrap()
            .unwrap_or_default()
            .ends_with(&format!("/contacts/detail/{contact}")),
    );
    b.screenshot("contact-history").await;

    // A dry-run of the whole full sync, from the tenant's page: one more contact was edited
    // in GHL meanwhile (no webhook reaches the app here).
    let edited = t.world.contacts[1].clone();
    ghl.act_update_contact(&edited, json!({"lastName": "EditedForThePlan"}))
        .expect("edit in GHL");
    b.client
        .goto(&format!("{}/console/tenants/{}", c.base, t.tenant.id))
        .await
        .unwrap();
    b.wait_for(
        Locator::Css("form[action$='/dry-run-full'] button"),
        "the Dry-run a full sync button",
    )
    .await
    .click()
    .await
    .unwrap();
    let status = b
        .wait_for(
            Locator::XPath("//p[@id='plan-status'][contains(., 'finished:')]"),
            "the dry-run ends, the page refreshing itself",
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        status.contains("Nothing was written on either side."),
        "{status}"
    );
    assert!(status.contains("1 with writes"), "{status}");
    b.client
        .find(Locator::Css(&format!(
            "tr.planned[data-contact='{edited}']"
        )))
        .await
        .expect("the edited contact's planned write");
    b.screenshot("full-dry-run").await;
    worker.stop().await;
    b.client.close().await.unwrap();
    c.stop.cancel();
}

/// Connect: an operator starts an agency install from the console, approves one new
/// sub-account on the GHL simulator's consent page, comes back through the real callback, and
/// maps the pending location to an eKyte company. A wrong eKyte key is refused before anything
/// is saved; the company's own keys pass eKyte's check, and the new tenant works through the
/// agency install at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_connects_an_agency_and_maps_its_new_location() {
    const CLIENT: &str = "console-client";
    const APP_ID: &str = "consoleApp00000001";
    let mut spec = e2e::support::AppSpec::new("consoleconnect");
    spec.world.onboarding = false;
    let c = Console::start_configured(spec, |config, base| {
        config.ghl.client_id = CLIENT.into();
        config.ghl.client_secret = secrecy::SecretString::from(format!("{CLIENT}-secret"));
        config.ghl.app_id = APP_ID.into();
        config.ghl.redirect_uri = format!("{base}/oauth/callback").parse().unwrap();
        // GHL's consent page is the simulator's: the same origin as its API.
        config.ghl.marketplace_base = config.ghl.api_base.clone();
    })
    .await;
    let t = &c.t;
    let ghl = &t.world.ghl;
    ghl.register_oauth_client(sandbox::ghl::OAuthClientSpec {
        client_id: CLIENT.into(),
        client_secret: format!("{CLIENT}-secret"),
        app_id: APP_ID.into(),
        ..Default::default()
    })
    .expect("register the marketplace app");
    let new_location = ghl
        .create_location(sandbox::ghl::LocationSpec {
            name: "Client Nine".into(),
            ..Default::default()
        })
        .expect("a new sub-account");
    let contact = ghl
        .seed_contacts(
            &new_location,
            &[json!({"firstName": "Nine", "lastName": "Client", "email": "nine@client.test"})],
        )
        .expect("its contact")
        .remove(0);
    let store = t.app.store.clone();

    let b = Browser::start().await;
    b.log_in(&c.base, "ops").await;
    b.client
        .goto(&format!("{}/console/connect", c.base))
        .await
        .unwrap();
    b.wait_for(
        Locator::Css("a#connect-agency"),
        "the Connect GHL link for an agency",
    )
    .await
    .click()
    .await
    .unwrap();
    // GHL's consent page (the simulator's): only the new sub-account is approved.
    let agency = b
        .wait_for(Locator::Css("form#agency"), "the simulator's consent page")
        .await;
    assert!(
        b.client
            .find(Locator::Css("code#scopes"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("oauth.write"),
        "the app asks for the agency scopes"
    );
    b.screenshot("connect-consent").await;
    let world_box = agency
        .find(Locator::Css(&format!(
            "input[name=approved][value='{}']",
            t.world.location
        )))
        .await
        .expect("the world's sub-account is offered");
    world_box.click().await.unwrap(); // untick it
    agency
        .find(Locator::Css("button#allow-agency"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The callback's page: the location is pending, with a way on to the console.
    let outcome = b
        .wait_for(Locator::Css("pre#outcome"), "the callback's page")
        .await
        .text()
        .await
        .unwrap();
    assert!(outcome.contains("1 location(s) are pending"), "{outcome}");
    assert!(outcome.contains(&new_location), "{outcome}");
    b.client
        .find(Locator::Css("a#continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let section = format!("section.pending[data-location='{new_location}']");
    b.wait_for(
        Locator::Css(&format!("{section} form.map")),
        "the pending location's mapping form",
    )
    .await;
    b.screenshot("connect-map").await;
    let fill = |form: fantoccini::elements::Element, name: &'static str, value: String| async move {
        let input = form
            .find(Locator::Css(&format!("[name={name}]")))
            .await
            .unwrap_or_else(|_| panic!("field {name}"));
        input.clear().await.ok();
        input.send_keys(&value).await.unwrap();
    };
    let company = t.tenant.ekyte_company_id.to_string();
    // The form for this eKyte company, with tenant sim's settings, and `key` if any.
    let submit = |key: Option<&'static str>| {
        let (b, section, company) = (&b, section.clone(), company.clone());
        async move {
            let form = b
                .client
                .find(Locator::Css(&format!("{section} form.map")))
                .await
                .expect("the mapping form");
            fill(form.clone(), "ekyte_company", company).await;
            if let Some(key) = key {
                fill(form.clone(), "api_key", key.to_owned()).await;
            }
            form.find(Locator::Css("select[name=like] option[value='sim']"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            form.find(Locator::Css("button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
    };
    // A wrong key: eKyte's check refuses it and nothing is saved.
    submit(Some("not-the-key")).await;
    let refused = b
        .wait_for(Locator::Css(&format!("{section} p.bad")), "the refusal")
        .await
        .text()
        .await
        .unwrap();
    assert!(refused.starts_with("Not saved:"), "{refused}");
    assert!(refused.contains("eKyte"), "{refused}");
    assert_eq!(TenantStore::list(store.as_ref()).await.unwrap().len(), 2);
    assert_eq!(
        ports::store::AgencyStore::pending_locations(store.as_ref())
            .await
            .unwrap()
            .len(),
        1,
        "still pending"
    );
    // No key: the keys of tenant sim, on the same eKyte company, pass the check.
    submit(None).await;
    let id = domain::TenantId::parse(format!("loc-{}", new_location.to_lowercase())).unwrap();
    b.wait_for(Locator::Css("p#actions"), "the new tenant's page")
        .await;
    assert!(
        b.client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with(&format!("/console/tenants/{id}")),
        "on the new tenant's page"
    );
    let tenant = TenantStore::get(store.as_ref(), &id).await.expect("saved");
    assert_eq!(tenant.name, "Client Nine");
    assert_eq!(tenant.install.kind, domain::InstallKind::Agency);
    assert_eq!(tenant.ekyte_company_id, t.tenant.ekyte_company_id);
    assert!(
        ports::store::AgencyStore::pending_locations(store.as_ref())
            .await
            .unwrap()
            .is_empty()
    );
    let audit = crate::console::operator_lines(t, &id).await;
    assert!(
        audit
            .iter()
            .any(|w| w.contains(&format!("console user ops: mapped location {new_location}"))),
        "{audit:#?}"
    );
    // It works through the agency install: its contact reads with a minted location token.
    let scope = c
        .deployed
        .engine
        .scope(&id, ports::Priority::RealTime)
        .await
        .unwrap();
    let read = ports::ghl::GhlApi::get_contact(
        &c.deployed.ghl,
        &scope,
        &domain::GhlContactId::parse(&contact).unwrap(),
    )
    .await
    .expect("the new tenant's contact reads");
    assert_eq!(read.contact.email.as_deref(), Some("nine@client.test"));
    b.client.close().await.unwrap();
    c.stop.cancel();
}
