//! Agencies: a company with several locations, the bulk-install consent, `GET
//! /oauth/installedLocations`, `POST /oauth/locationToken` limited to installed locations, and
//! the company-level lifecycle webhooks (API.md §7, §9.2a).

use super::*;

const CO: &str = "agencyCo000000000001";
const OTHER_CO: &str = "otherCo0000000000001";
const A1: &str = "agencyLoc00000000001";
const A2: &str = "agencyLoc00000000002";
const A3: &str = "agencyLoc00000000003";
const O1: &str = "otherLoc000000000001";
const CLIENT: &str = "agency-client";
const SECRET: &str = "agency-secret";
const APP: &str = "agencyApp00000000001";
const APP_VERSION: &str = "agencyVersion0000001";

/// The shared [`Env`] plus company `CO` (Alpha, Beta, Gamma), company `OTHER_CO` (one
/// location) and the agency app's OAuth client.
async fn agency_env(config: GhlConfig) -> Env {
    let e = env_with(config).await;
    for (id, name, company) in [
        (A1, "Alpha", CO),
        (A2, "Beta", CO),
        (A3, "Gamma", CO),
        (O1, "Elsewhere", OTHER_CO),
    ] {
        e.ghl
            .create_location(LocationSpec {
                id: id.into(),
                name: name.into(),
                company_id: company.into(),
                address: format!("{name} street 1"),
                ..LocationSpec::default()
            })
            .expect("location");
    }
    e.ghl
        .register_oauth_client(OAuthClientSpec {
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            app_id: APP.into(),
            version_id: APP_VERSION.into(),
            scopes: None,
        })
        .expect("client");
    e
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

impl Env {
    async fn exchange(&self, code: &str) -> Reply {
        self.form(
            "/oauth/token",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("grant_type", "authorization_code"),
                ("code", code),
            ],
            None,
        )
        .await
    }

    /// Consent to a bulk install and exchange the code; returns the token body.
    async fn bulk_token(
        &self,
        approved: &[&str],
        future: bool,
        scopes: Option<Vec<String>>,
    ) -> Value {
        let code = self
            .ghl
            .issue_bulk_install_code(CLIENT, CO, &owned(approved), future, scopes)
            .expect("bulk code");
        let r = self.exchange(&code).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    async fn installed(&self, token: &str, query: &str) -> Reply {
        self.send(
            Method::GET,
            &format!("/oauth/installedLocations?{query}"),
            Some(token),
            Some(V),
            None,
        )
        .await
    }

    async fn location_token(&self, agency: &str, company: &str, location: &str) -> Reply {
        self.form(
            "/oauth/locationToken",
            &[("companyId", company), ("locationId", location)],
            Some(agency),
        )
        .await
    }

    /// `GET /contacts/?locationId=…` with `token`: 200 while the token works.
    async fn contacts_status(&self, token: &str, location: &str) -> u16 {
        self.send(
            Method::GET,
            &format!("/contacts/?locationId={location}"),
            Some(token),
            Some(V),
            None,
        )
        .await
        .status
    }
}

fn access(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {body}"))
        .to_owned()
}

fn ids(body: &Value) -> Vec<String> {
    body["locations"]
        .as_array()
        .unwrap_or_else(|| panic!("no locations in {body}"))
        .iter()
        .map(|l| l["_id"].as_str().expect("_id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_bulk_consent_gives_a_company_token_with_the_documented_fields() {
    let e = agency_env(GhlConfig::default()).await;
    let body = e.bulk_token(&[A1, A2], false, None).await;
    assert_eq!(body["userType"], "Company");
    assert_eq!(body["companyId"], CO);
    assert_eq!(body["isBulkInstallation"], true);
    assert_eq!(body["approvedLocations"], json!([A1, A2]));
    assert_eq!(body["installToFutureLocations"], false);
    assert_eq!(body["approveAllLocations"], false);
    assert!(
        body.get("locationId").is_none(),
        "Company tokens carry none"
    );
    assert!(body["userId"].is_string(), "userId is required ([O2])");

    // A refresh keeps what was approved.
    let refreshed = e
        .form(
            "/oauth/token",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().expect("rt")),
                ("user_type", "Company"),
            ],
            None,
        )
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.body["isBulkInstallation"], true);
    assert_eq!(refreshed.body["approvedLocations"], json!([A1, A2]));

    // Every location and the future ones.
    let all = e.bulk_token(&[A1, A2, A3], true, None).await;
    assert_eq!(all["approveAllLocations"], true);
    assert_eq!(all["installToFutureLocations"], true);

    // An agency consent that is not a bulk install.
    let code = e
        .ghl
        .issue_agency_auth_code(CLIENT, CO, None)
        .expect("agency code");
    let plain = e.exchange(&code).await.body;
    assert_eq!(plain["isBulkInstallation"], false);
    assert_eq!(plain["approvedLocations"], json!([]));

    // Refused consents change nothing.
    let foreign = e
        .ghl
        .issue_bulk_install_code(CLIENT, CO, &owned(&[A1, O1]), false, None)
        .expect_err("a location of another company");
    assert_eq!(foreign.status.as_u16(), 400);
    let unknown = e
        .ghl
        .issue_bulk_install_code("nobody", CO, &owned(&[A1]), false, None)
        .expect_err("unknown client");
    assert_eq!(unknown.status.as_u16(), 400);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn installed_locations_lists_pages_filters_and_counts() {
    let e = agency_env(GhlConfig::default()).await;
    let before = chrono::Utc::now().timestamp_millis() - 1;
    let token = access(&e.bulk_token(&[A1, A2], false, None).await);
    let q = format!("companyId={CO}&appId={APP}");

    let all = e.installed(&token, &q).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(ids(&all.body), [A1, A2, A3], "creation order");
    assert_eq!(all.body["count"], 3);
    assert_eq!(all.body["installToFutureLocations"], false);
    let locs = all.body["locations"].as_array().expect("array");
    assert_eq!(locs[0]["name"], "Alpha");
    assert_eq!(locs[0]["address"], "Alpha street 1");
    assert_eq!(locs[0]["isInstalled"], true);
    assert_eq!(locs[0]["versionId"], APP_VERSION);
    assert!(ms(&locs[0]["installedAt"]) >= before);
    assert_eq!(locs[2]["isInstalled"], false);
    assert!(locs[2].get("installedAt").is_none());
    assert!(locs[2].get("versionId").is_none());
    assert!(all.headers.contains_key("x-ratelimit-remaining"));

    let installed = e.installed(&token, &format!("{q}&isInstalled=true")).await;
    assert_eq!(ids(&installed.body), [A1, A2]);
    assert_eq!(
        installed.body["count"], 3,
        "count is the company's location count, whatever the filters"
    );
    let not = e.installed(&token, &format!("{q}&isInstalled=false")).await;
    assert_eq!(ids(&not.body), [A3]);

    // Paging.
    let page = e.installed(&token, &format!("{q}&skip=1&limit=1")).await;
    assert_eq!(ids(&page.body), [A2]);
    let past = e.installed(&token, &format!("{q}&skip=3")).await;
    assert!(ids(&past.body).is_empty());
    assert_eq!(past.body["count"], 3);
    let mut walked = Vec::new();
    for skip in 0..3 {
        let p = e
            .installed(&token, &format!("{q}&skip={skip}&limit=1"))
            .await;
        walked.extend(ids(&p.body));
    }
    assert_eq!(walked, [A1, A2, A3]);

    // Other filters.
    let by_name = e.installed(&token, &format!("{q}&query=gAm")).await;
    assert_eq!(ids(&by_name.body), [A3]);
    let by_id = e.installed(&token, &format!("{q}&locationId={A2}")).await;
    assert_eq!(ids(&by_id.body), [A2]);
    let by_version = e
        .installed(&token, &format!("{q}&versionId={APP_VERSION}"))
        .await;
    assert_eq!(ids(&by_version.body), [A1, A2]);
    let on_trial = e.installed(&token, &format!("{q}&onTrial=true")).await;
    assert!(ids(&on_trial.body).is_empty());

    // The switches.
    e.ghl.set_agency_config(AgencyConfig {
        installed_locations_max_limit: 2,
        installed_locations_count: InstalledCount::Matching,
        installed_locations_lists_all: false,
        ..AgencyConfig::default()
    });
    let clamped = e
        .installed(&token, &format!("{q}&isInstalled=false&limit=500"))
        .await;
    assert_eq!(clamped.body["count"], 1, "matching count");
    let only_installed = e.installed(&token, &format!("{q}&limit=500")).await;
    assert_eq!(ids(&only_installed.body), [A1, A2]);
    e.ghl.set_agency_config(AgencyConfig {
        installed_locations_max_limit: 2,
        ..AgencyConfig::default()
    });
    let capped = e.installed(&token, &format!("{q}&limit=500")).await;
    assert_eq!(ids(&capped.body), [A1, A2], "limit clamped to the maximum");
    e.ghl.set_agency_config(AgencyConfig::default());
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn installed_locations_refuses_what_the_spec_forbids() {
    let e = agency_env(GhlConfig::default()).await;
    let token = access(&e.bulk_token(&[A1], false, None).await);
    let q = format!("companyId={CO}&appId={APP}");

    let no_company = e.installed(&token, &format!("appId={APP}")).await;
    assert_eq!(no_company.status, 422);
    assert_eq!(
        no_company.body,
        json!({"statusCode": 422, "message": ["companyId should not be empty"],
            "error": "Unprocessable Entity"})
    );
    let nothing = e.installed(&token, "").await;
    assert_eq!(
        nothing.body["message"],
        json!(["companyId should not be empty", "appId should not be empty"])
    );
    let bad = e
        .installed(&token, &format!("{q}&limit=abc&isInstalled=maybe"))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["message"].as_array().map(Vec::len), Some(2));
    let zero = e.installed(&token, &format!("{q}&limit=0")).await;
    assert_eq!(zero.status, 422);

    // Agency-Access-Only: a Location token and an agency PIT are refused.
    let location = e
        .ghl
        .issue_tokens(CLIENT, A1, None)
        .expect("location pair")
        .access_token;
    let by_location = e.installed(&location, &q).await;
    assert_eq!(by_location.status, 401, "{}", by_location.body);
    assert_eq!(by_location.body["error"], "Unauthorized");
    let pit = e
        .ghl
        .register_pit(PitSpec {
            company_id: Some(CO.into()),
            scopes: all_scopes(),
            ..PitSpec::default()
        })
        .expect("agency pit");
    assert_eq!(e.installed(&pit, &q).await.status, 401);
    assert_eq!(
        e.send(
            Method::GET,
            &format!("/oauth/installedLocations?{q}"),
            None,
            Some(V),
            None
        )
        .await
        .status,
        401
    );

    // Scope `oauth.readonly`, and the Version header.
    let narrow = access(
        &e.bulk_token(&[A1], false, Some(vec!["oauth.write".into()]))
            .await,
    );
    let no_scope = e.installed(&narrow, &q).await;
    assert_eq!(no_scope.status, 403, "{}", no_scope.body);
    assert!(
        no_scope.body["message"]
            .as_str()
            .expect("message")
            .contains("oauth.readonly")
    );
    let no_version = e
        .send(
            Method::GET,
            &format!("/oauth/installedLocations?{q}"),
            Some(&token),
            None,
            None,
        )
        .await;
    assert_eq!(no_version.status, 400);
    let v3 = e
        .send(
            Method::GET,
            &format!("/oauth/installedLocations?{q}"),
            Some(&token),
            Some("v3"),
            None,
        )
        .await;
    assert_eq!(v3.status, 400);

    // The token's own company and app only.
    let other_company = e
        .installed(&token, &format!("companyId={OTHER_CO}&appId={APP}"))
        .await;
    assert_eq!(other_company.status, 400);
    let client_id_as_app = e
        .installed(&token, &format!("companyId={CO}&appId={CLIENT}"))
        .await;
    assert_eq!(
        client_id_as_app.status, 400,
        "the client id is not the app id"
    );
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn location_tokens_only_for_installed_locations_of_the_company() {
    let e = agency_env(GhlConfig::default()).await;
    let agency = access(&e.bulk_token(&[A1, A2], false, None).await);

    let ok = e.location_token(&agency, CO, A1).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["locationId"], A1);
    assert_eq!(ok.body["appId"], APP);
    assert_eq!(ok.body["versionId"], APP_VERSION);
    assert_eq!(e.contacts_status(&access(&ok.body), A1).await, 200);
    assert_eq!(
        e.contacts_status(&access(&ok.body), A2).await,
        403,
        "a location token is bound to its location"
    );

    let not_installed = e.location_token(&agency, CO, A3).await;
    assert_eq!(not_installed.status, 400, "{}", not_installed.body);
    assert_eq!(
        not_installed.body["message"],
        "The app is not installed on this location"
    );
    let other_company_location = e.location_token(&agency, CO, O1).await;
    assert_eq!(other_company_location.status, 400);
    let other_company = e.location_token(&agency, OTHER_CO, O1).await;
    assert_eq!(other_company.status, 400);
    let missing = e
        .form("/oauth/locationToken", &[("companyId", CO)], Some(&agency))
        .await;
    assert_eq!(missing.status, 422);

    // `oauth.write` is required when the token has a scope list; Location tokens are refused.
    let read_only = access(
        &e.bulk_token(&[A1], false, Some(vec!["oauth.readonly".into()]))
            .await,
    );
    assert_eq!(e.location_token(&read_only, CO, A1).await.status, 403);
    let location = access(&ok.body);
    assert_eq!(e.location_token(&location, CO, A1).await.status, 401);

    // Installing the app on the location (location-form INSTALL) opens it.
    e.ghl.act_install(A3, Some(APP)).expect("install");
    assert_eq!(e.location_token(&agency, CO, A3).await.status, 200);
    // Another app's install does not count.
    e.ghl.act_uninstall(A3, Some(APP)).expect("uninstall");
    e.ghl
        .act_install(A3, Some("someOtherApp00000001"))
        .expect("install");
    assert_eq!(e.location_token(&agency, CO, A3).await.status, 400);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn company_lifecycle_webhooks_are_signed_have_no_location_id_and_uninstall_revokes() {
    let rx = Receiver::start().await;
    let e = agency_env(GhlConfig {
        webhooks: WebhookConfig {
            url: Some(rx.url.clone()),
            ..WebhookConfig::default()
        },
        ..GhlConfig::default()
    })
    .await;
    let bulk = e.bulk_token(&[A1, A2, A3], true, None).await;
    let agency = access(&bulk);
    e.ghl
        .act_install_company(CO, APP, &owned(&[A1, A2, A3]))
        .expect("company install");
    let t1 = access(&e.location_token(&agency, CO, A1).await.body);
    let t2 = access(&e.location_token(&agency, CO, A2).await.body);
    let consented = e.ghl.issue_tokens(CLIENT, A3, None).expect("pair");

    // Credentials the uninstall must not touch: a PIT and another app's token.
    let pit = e
        .ghl
        .register_pit(PitSpec {
            location_id: Some(A1.into()),
            scopes: all_scopes(),
            ..PitSpec::default()
        })
        .expect("pit");
    e.ghl
        .register_oauth_client(OAuthClientSpec {
            client_id: "other-client".into(),
            client_secret: "other-secret".into(),
            app_id: "otherApp000000000001".into(),
            ..OAuthClientSpec::default()
        })
        .expect("client");
    let other_app = e
        .ghl
        .issue_tokens("other-client", A1, None)
        .expect("pair")
        .access_token;

    // A fourth location: covered by installToFutureLocations.
    let a4 = e
        .ghl
        .act_create_location(LocationSpec {
            name: "Delta".into(),
            company_id: CO.into(),
            email: "delta@agency.io".into(),
            ..LocationSpec::default()
        })
        .expect("create");
    let listed = e
        .installed(&agency, &format!("companyId={CO}&appId={APP}"))
        .await;
    assert_eq!(ids(&listed.body), [A1, A2, A3, a4.as_str()]);
    assert_eq!(listed.body["count"], 4);
    assert_eq!(listed.body["installToFutureLocations"], true);
    let delta = listed.body["locations"][3].clone();
    assert_eq!(delta["isInstalled"], true);
    let t4 = access(&e.location_token(&agency, CO, &a4).await.body);
    assert_eq!(e.contacts_status(&t4, &a4).await, 200);
    e.ghl
        .act_update_location(
            &a4,
            LocationUpdate {
                name: Some("Delta Two".into()),
                ..LocationUpdate::default()
            },
        )
        .expect("update");
    e.ghl
        .act_update_location(&a4, LocationUpdate::default())
        .expect("no change, no event");
    e.ghl.act_uninstall_company(CO, APP).expect("uninstall");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);

    let bodies = rx.bodies();
    let kinds: Vec<&str> = bodies
        .iter()
        .map(|b| b["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        ["INSTALL", "LocationCreate", "LocationUpdate", "UNINSTALL"]
    );
    let pem = e.ghl.webhook_public_key_pem();
    let mut stamps = Vec::new();
    for (headers, raw) in rx.got.lock().expect("lock").iter() {
        let sig = headers["x-ghl-signature"].to_str().expect("ascii");
        assert!(verify_ed25519(&pem, raw, sig), "signed over the raw body");
        let v: Value = serde_json::from_slice(raw).expect("json");
        assert!(v.get("locationId").is_none(), "company-level: {v}");
        assert!(v["webhookId"].is_string(), "{v}");
        stamps.push(ms(&v["timestamp"]));
    }
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "act order");

    let install = &bodies[0];
    assert_eq!(install["appId"], APP);
    assert_eq!(install["companyId"], CO);
    assert_eq!(install["planId"], "");
    assert_eq!(install["trial"]["onTrial"], false);
    for absent in ["userId", "companyName", "isWhitelabelCompany"] {
        assert!(
            install.get(absent).is_none(),
            "location-form field {absent}"
        );
    }
    let created = &bodies[1];
    assert_eq!(created["id"], json!(a4));
    assert_eq!(created["companyId"], CO);
    assert_eq!(created["name"], "Delta");
    assert_eq!(created["email"], "delta@agency.io");
    assert!(
        created
            .as_object()
            .expect("object")
            .contains_key("stripeProductId")
    );
    assert_eq!(
        ms(&delta["installedAt"]),
        ms(&created["timestamp"]),
        "installed at the time of the act"
    );
    assert_eq!(bodies[2]["id"], json!(a4));
    assert_eq!(bodies[2]["name"], "Delta Two");
    let uninstall = &bodies[3];
    assert_eq!(uninstall["appId"], APP);
    assert_eq!(uninstall["companyId"], CO);

    // Every token of the app for the company and its locations is gone.
    for (t, l) in [
        (&t1, A1),
        (&t2, A2),
        (&consented.access_token, A3),
        (&t4, a4.as_str()),
    ] {
        assert_eq!(e.contacts_status(t, l).await, 401, "{l}");
    }
    let company = e
        .installed(&agency, &format!("companyId={CO}&appId={APP}"))
        .await;
    assert_eq!(company.status, 401);
    assert_eq!(
        company.body["message"],
        "Invalid token: access token is invalid"
    );
    let refresh = e
        .form(
            "/oauth/token",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", bulk["refresh_token"].as_str().expect("rt")),
                ("user_type", "Company"),
            ],
            None,
        )
        .await;
    assert_eq!(refresh.status, 400);
    let location_refresh = e
        .form(
            "/oauth/token",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", &consented.refresh_token),
                ("user_type", "Location"),
            ],
            None,
        )
        .await;
    assert_eq!(location_refresh.status, 400);
    assert_eq!(e.contacts_status(&pit, A1).await, 200, "PITs stay");
    assert_eq!(
        e.contacts_status(&other_app, A1).await,
        200,
        "other apps stay"
    );
    let installs = e.ghl.installs(CO);
    assert!(
        installs["locations"]
            .as_array()
            .expect("array")
            .iter()
            .all(|i| i["appId"] != APP),
        "{installs}"
    );
    assert!(
        installs["companies"]
            .as_array()
            .expect("array")
            .iter()
            .all(|i| i["appId"] != APP)
    );

    // A fresh consent after the uninstall covers no future location any more.
    let again = access(&e.bulk_token(&[A1], false, None).await);
    let after = e
        .installed(
            &again,
            &format!("companyId={CO}&appId={APP}&isInstalled=true"),
        )
        .await;
    assert_eq!(ids(&after.body), [A1]);
    assert_eq!(after.body["installToFutureLocations"], false);
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[tokio::test]
async fn location_forms_of_install_and_uninstall_follow_the_documents() {
    let e = agency_env(GhlConfig::default()).await;
    let pair = e.ghl.issue_tokens(CLIENT, A1, None).expect("pair");
    let pit = e
        .ghl
        .register_pit(PitSpec {
            location_id: Some(A1.into()),
            scopes: all_scopes(),
            ..PitSpec::default()
        })
        .expect("pit");
    e.ghl.act_install(A1, Some(APP)).expect("install");
    e.ghl.act_uninstall(A1, Some(APP)).expect("uninstall");
    let log = e.ghl.webhook_log();
    assert_eq!(log.len(), 2);
    let install = &log[0];
    assert_eq!(install["type"], "INSTALL");
    for k in [
        "appId",
        "locationId",
        "companyId",
        "userId",
        "companyName",
        "isWhitelabelCompany",
        "whitelabelDetails",
        "planId",
        "trial",
        "timestamp",
        "webhookId",
    ] {
        assert!(install.get(k).is_some(), "INSTALL lacks {k}: {install}");
    }
    assert_eq!(install["locationId"], A1);
    assert_eq!(install["companyId"], CO);
    assert_eq!(install["appId"], APP);
    assert_eq!(install["versionId"], APP_VERSION);
    let uninstall = &log[1];
    assert_eq!(uninstall["type"], "UNINSTALL");
    assert_eq!(uninstall["locationId"], A1);
    assert_eq!(uninstall["appId"], APP);
    assert!(
        uninstall.get("companyId").is_none(),
        "the location form is {{type, appId, locationId}}: {uninstall}"
    );
    assert!(ms(&install["timestamp"]) <= ms(&uninstall["timestamp"]));

    // The app's token for the location is gone; the PIT is not the app's.
    assert_eq!(e.contacts_status(&pair.access_token, A1).await, 401);
    assert_eq!(e.contacts_status(&pit, A1).await, 200);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn future_installs_can_announce_themselves_and_silent_creates_are_covered_too() {
    let e = agency_env(GhlConfig {
        agency: AgencyConfig {
            install_webhook_for_future_locations: true,
            ..AgencyConfig::default()
        },
        ..GhlConfig::default()
    })
    .await;
    let agency = access(&e.bulk_token(&[A1], true, None).await);
    let a4 = e
        .ghl
        .act_create_location(LocationSpec {
            company_id: CO.into(),
            ..LocationSpec::default()
        })
        .expect("create");
    let log = e.ghl.webhook_log();
    let kinds: Vec<&str> = log
        .iter()
        .map(|b| b["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["LocationCreate", "INSTALL"]);
    assert_eq!(log[1]["locationId"], json!(a4));
    assert_eq!(log[1]["appId"], APP);
    assert_eq!(log[0]["timestamp"], log[1]["timestamp"]);

    // A location created without an event is covered as well; another company's is not.
    let silent = e
        .ghl
        .create_location(LocationSpec {
            company_id: CO.into(),
            ..LocationSpec::default()
        })
        .expect("create");
    assert_eq!(e.location_token(&agency, CO, &silent).await.status, 200);
    let elsewhere = e
        .ghl
        .act_create_location(LocationSpec {
            company_id: OTHER_CO.into(),
            ..LocationSpec::default()
        })
        .expect("create");
    let other = e
        .installed(
            &agency,
            &format!("companyId={CO}&appId={APP}&isInstalled=true"),
        )
        .await;
    assert!(!ids(&other.body).contains(&elsewhere));
    assert_eq!(
        e.ghl.webhook_log().len(),
        3,
        "no INSTALL for the other company"
    );
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn agency_operations_over_the_control_api() {
    let e = agency_env(GhlConfig::default()).await;
    let ctl = |path: &str| format!("{}/_control{path}", e.ghl.base_url());
    let post = |path: &str, body: Value| e.http.post(ctl(path)).json(&body).send();
    let code = post(
        "/oauth/bulk-codes",
        json!({"clientId": CLIENT, "companyId": CO, "approvedLocations": [A1, A2],
            "installToFutureLocations": true}),
    )
    .await
    .expect("bulk code")
    .json::<Value>()
    .await
    .expect("json")["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let body = e.exchange(&code).await.body;
    assert_eq!(body["isBulkInstallation"], true);
    let r = post(
        &format!("/act/companies/{CO}/install"),
        json!({"appId": APP, "locations": [A3]}),
    )
    .await
    .expect("install");
    assert_eq!(r.status(), 200);
    let created = post(
        "/act/locations",
        json!({"name": "Ctl", "companyId": CO, "email": "ctl@x.io"}),
    )
    .await
    .expect("create")
    .json::<Value>()
    .await
    .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let patched = e
        .http
        .patch(ctl(&format!("/act/locations/{id}")))
        .json(&json!({"email": "new@x.io"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 200);
    let installs = e
        .http
        .get(ctl(&format!("/companies/{CO}/installs")))
        .send()
        .await
        .expect("installs")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(installs["locations"].as_array().map(Vec::len), Some(4));
    assert_eq!(installs["companies"][0]["installToFutureLocations"], true);
    let cfg = e
        .http
        .put(ctl("/agency"))
        .json(&json!({"installed_locations_count": "matching"}))
        .send()
        .await
        .expect("agency config")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(cfg["installed_locations_max_limit"], 100);
    assert_eq!(
        e.ghl.agency_config().installed_locations_count,
        InstalledCount::Matching
    );
    let r = post(
        &format!("/act/companies/{CO}/uninstall"),
        json!({"appId": APP}),
    )
    .await
    .expect("uninstall");
    assert_eq!(r.status(), 200);
    let kinds: Vec<Value> = e
        .ghl
        .webhook_log()
        .iter()
        .map(|b| b["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        ["INSTALL", "LocationCreate", "LocationUpdate", "UNINSTALL"]
    );
    let unknown = post(
        "/act/companies/noSuchCompany/uninstall",
        json!({"appId": APP}),
    )
    .await
    .expect("uninstall");
    assert_eq!(unknown.status(), 400);
    e.ghl.shutdown().await.expect("shutdown");
}

/// An authorization request that names no scope is refused at the consent page, not
/// answered with a token for everything (API.md §7 shows `scope` in every authorize URL).
#[tokio::test]
async fn a_consent_request_without_scopes_is_refused() {
    let e = agency_env(GhlConfig::default()).await;
    let path = |scope: Option<&str>| {
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
        ];
        if let Some(s) = scope {
            q.push(("scope", s));
        }
        let url = url::Url::parse_with_params("http://x/v2/oauth/chooselocation", &q).unwrap();
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    };
    let env = &e;
    let page = |scope: Option<&str>| {
        let path = path(scope);
        async move { env.send(Method::GET, &path, None, None, None).await }
    };
    let missing = page(None).await;
    assert_eq!(missing.status, 400);
    let text = missing.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("scope is missing"), "{text}");
    let named = page(Some("contacts.readonly contacts.write")).await;
    assert_eq!(named.status, 200, "{:?}", named.body);
}
