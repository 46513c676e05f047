//! GHL simulator tests, over real HTTP on loopback: one test per behaviour an adapter relies on,
//! plus the contract test against the official OpenAPI response schemas.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine;
use reqwest::Method;
use sandbox::common::{FaultConfig, RouteFault, ServerHandle, serve};
use sandbox::ghl::{
    AgencyConfig, GhlConfig, GhlSandbox, InstalledCount, LocationSpec, LocationUpdate,
    OAuthClientSpec, OAuthConfig, PitSpec, RateLimitConfig, SearchCursor, WebhookConfig,
    WebhookFaults, WriteFaults,
};
use serde_json::{Value, json};

const V: &str = "2021-07-28";
const LOC: &str = "locAAAAAAAAAAAAAAAA1";
const OTHER_LOC: &str = "locBBBBBBBBBBBBBBBB2";

mod agency;

// ---------------------------------------------------------------------- helpers

/// A running simulator with two locations and a PIT for the first.
struct Env {
    ghl: GhlSandbox,
    http: reqwest::Client,
    token: String,
}

async fn env_with(config: GhlConfig) -> Env {
    let ghl = GhlSandbox::start(config).await.expect("simulator starts");
    for id in [LOC, OTHER_LOC] {
        ghl.create_location(LocationSpec {
            id: id.into(),
            ..LocationSpec::default()
        })
        .expect("location");
    }
    let token = ghl
        .register_pit(PitSpec {
            location_id: Some(LOC.into()),
            scopes: all_scopes(),
            ..PitSpec::default()
        })
        .expect("pit");
    Env {
        ghl,
        http: reqwest::Client::new(),
        token,
    }
}

/// Every scope the simulator checks: for tests about something other than scopes.
fn all_scopes() -> Vec<String> {
    sandbox::ghl::SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

async fn env() -> Env {
    env_with(GhlConfig::default()).await
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ghl.base_url())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        version: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(v) = version {
            req = req.header("Version", v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A GHL call with the environment's PIT and `Version: 2021-07-28`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, Some(&self.token), Some(V), body)
            .await
    }

    async fn create_contact(&self, fields: Value) -> Value {
        let mut body = fields;
        body["locationId"] = json!(LOC);
        let r = self.call(Method::POST, "/contacts/", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["contact"].clone()
    }

    async fn form(&self, path: &str, form: &[(&str, &str)], token: Option<&str>) -> Reply {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(t) = token {
            req = req.bearer_auth(t).header("Version", V);
        }
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A webhook receiver on loopback that records headers and raw bodies and answers with a
/// scripted status sequence (then 200).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    server: ServerHandle,
}

impl Receiver {
    async fn start() -> Self {
        let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    g.lock().expect("lock").push((headers, body));
                    let status = s.lock().expect("lock").pop_front().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).expect("valid status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = serve(listener, app).expect("serve");
        Self {
            url: format!("{}/hook", server.base_url()),
            got,
            script,
            server,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).expect("json body"))
            .collect()
    }

    fn count(&self) -> usize {
        self.got.lock().expect("lock").len()
    }
}

fn verify_ed25519(pem: &str, body: &[u8], sig_b64: &str) -> bool {
    use ed25519_dalek::Verifier;
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem).expect("SPKI PEM");
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(sig_b64) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else {
        return false;
    };
    key.verify(body, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

fn ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("ISO string"))
        .expect("ISO date")
        .timestamp_millis()
}

// ---------------------------------------------------------------------- contacts

#[tokio::test]
async fn contact_crud_round_trip_with_ghl_shapes() {
    let e = env().await;
    let c = e
        .create_contact(
            json!({"firstName": "Rubika", "lastName": "Deo", "email": "Rubika@Deos.com",
            "phone": "+1 888-888-8888", "tags": ["VIP"], "dateOfBirth": "1990-09-25"}),
        )
        .await;
    let id = c["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 20);
    assert_eq!(c["deleted"], false);
    assert_eq!(c["phone"], "+18888888888");
    assert_eq!(c["birthMonth"], 8);
    assert_eq!(c["tags"], json!(["vip"]));

    let got = e.call(Method::GET, &format!("/contacts/{id}"), None).await;
    assert_eq!(got.status, 200);
    let contact = &got.body["contact"];
    assert_eq!(contact["name"], "Rubika Deo");
    assert_eq!(contact["emailLowerCase"], "rubika@deos.com");
    assert_eq!(contact["dateAdded"], c["dateAdded"]);

    // UpdateContactDto has no locationId/gender/companyName.
    let bad = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"locationId": LOC, "companyName": "x"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"], "Unprocessable Entity");
    let msgs = bad.body["message"].as_array().expect("message is an array");
    assert!(msgs.contains(&json!("property locationId should not exist")));
    assert!(msgs.contains(&json!("property companyName should not exist")));

    let put = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"city": "Lisbon", "tags": ["a", "b"]})),
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(put.body["succeded"], true);
    assert_eq!(
        put.body["contact"]["tags"],
        json!(["a", "b"]),
        "PUT tags overwrite"
    );
    assert!(ms(&put.body["contact"]["dateUpdated"]) > ms(&contact["dateUpdated"]));

    let del = e
        .call(Method::DELETE, &format!("/contacts/{id}"), None)
        .await;
    assert_eq!(
        (del.status, del.body.clone()),
        (200, json!({"succeded": true}))
    );
    let gone = e.call(Method::GET, &format!("/contacts/{id}"), None).await;
    assert_eq!(gone.status, 400);
    assert_eq!(
        gone.body,
        json!({"statusCode": 400, "message": "Contact not found"})
    );
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn duplicate_rule_follows_the_location_setting() {
    let e = env().await;
    let first = e
        .create_contact(json!({"email": "dup@x.io", "phone": "+15550001"}))
        .await;
    for (body, field) in [
        (json!({"email": "DUP@x.io"}), "email"),
        (json!({"phone": "+1 555 0001"}), "phone"),
    ] {
        let mut body = body;
        body["locationId"] = json!(LOC);
        let r = e.call(Method::POST, "/contacts/", Some(body)).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body["message"],
            "This location does not allow duplicated contacts."
        );
        assert_eq!(r.body["meta"]["contactId"], first["id"]);
        assert_eq!(r.body["meta"]["matchingField"], field);
    }
    let dump = e.ghl.dump_location(LOC).expect("dump");
    assert_eq!(dump["contacts"].as_array().map(Vec::len), Some(1));

    e.ghl
        .update_location(
            LOC,
            LocationUpdate {
                allow_duplicate_contact: Some(true),
                ..LocationUpdate::default()
            },
        )
        .expect("setting");
    e.create_contact(json!({"email": "dup@x.io"})).await;

    // Upsert with createNewIfDuplicateAllowed creates; without it, updates the first match.
    let r = e
        .call(
            Method::POST,
            "/contacts/upsert",
            Some(json!({"locationId": LOC, "email": "dup@x.io", "createNewIfDuplicateAllowed": true})),
        )
        .await;
    assert_eq!((r.status, r.body["new"].clone()), (200, json!(true)));
    let r = e
        .call(
            Method::POST,
            "/contacts/upsert",
            Some(json!({"locationId": LOC, "email": "dup@x.io", "city": "Porto"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["new"], false);
    assert_eq!(r.body["contact"]["id"], first["id"]);
    assert!(r.body["traceId"].is_string());

    let dup = e
        .call(
            Method::GET,
            &format!("/contacts/search/duplicate?locationId={LOC}&number=%2B15550001"),
            None,
        )
        .await;
    assert_eq!(dup.body["contact"]["id"], first["id"]);
    // An unencoded `+` decodes to a space and misses, as in GHL (API.md §4.1).
    let miss = e
        .call(
            Method::GET,
            &format!("/contacts/search/duplicate?locationId={LOC}&number=+15550001"),
            None,
        )
        .await;
    assert_eq!(miss.body["contact"], Value::Null);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn tags_are_added_with_post_and_removed_with_a_delete_body() {
    let e = env().await;
    let c = e.create_contact(json!({"firstName": "T"})).await;
    let path = format!("/contacts/{}/tags", c["id"].as_str().expect("id"));
    let add = e
        .call(
            Method::POST,
            &path,
            Some(json!({"tags": ["one", "two", "three"]})),
        )
        .await;
    assert_eq!(
        (add.status, add.body.clone()),
        (201, json!({"tags": ["one", "two", "three"]}))
    );
    let del = e
        .call(Method::DELETE, &path, Some(json!({"tags": ["two"]})))
        .await;
    assert_eq!(
        (del.status, del.body.clone()),
        (200, json!({"tags": ["one", "three"]}))
    );
    let no_body = e.call(Method::DELETE, &path, None).await;
    assert_eq!(no_body.status, 422, "{}", no_body.body);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn deprecated_list_pages_with_a_start_after_cursor() {
    let e = env().await;
    let seeds: Vec<Value> = (0..7)
        .map(|i| json!({"firstName": format!("P{i}"), "dateAdded": format!("2024-01-01T00:00:0{i}.000Z")}))
        .collect();
    e.ghl.seed_contacts(LOC, &seeds).expect("seed");
    let mut seen = Vec::new();
    let mut path = format!("/contacts/?locationId={LOC}&limit=3");
    loop {
        let r = e.call(Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["count"], 7);
        assert_eq!(r.body["meta"]["total"], 7);
        for c in r.body["contacts"].as_array().expect("contacts") {
            seen.push(c["firstName"].as_str().expect("name").to_owned());
        }
        let Some(after) = r.body["meta"]["startAfterId"].as_str() else {
            break;
        };
        path = format!(
            "/contacts/?locationId={LOC}&limit=3&startAfter={}&startAfterId={after}",
            r.body["meta"]["startAfter"]
        );
    }
    assert_eq!(seen, ["P0", "P1", "P2", "P3", "P4", "P5", "P6"]);
    let too_many = e
        .call(
            Method::GET,
            &format!("/contacts/?locationId={LOC}&limit=101"),
            None,
        )
        .await;
    assert_eq!(too_many.status, 422);
    e.ghl.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------- request parsing

/// GHL's framework (NestJS on Express) parses a JSON body only under `Content-Type:
/// application/json`: the same bytes under another type reach validation as nothing, so a
/// create is refused for its required fields and an update changes nothing.
#[tokio::test]
async fn a_json_body_without_its_content_type_is_read_as_nothing() {
    let e = env().await;
    let c = e
        .create_contact(json!({"firstName": "Ana", "email": "ana@ct.io"}))
        .await;
    let id = c["id"].as_str().expect("id");
    let raw = |method: Method, path: String, body: Value, content_type: Option<&'static str>| {
        let mut req = e
            .http
            .request(method, e.url(&path))
            .bearer_auth(&e.token)
            .header("Version", V)
            .body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        async move {
            let resp = req.send().await.expect("request reaches the simulator");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let create = json!({"locationId": LOC, "firstName": "Bo", "email": "bo@ct.io"});
    for ct in [None, Some("text/plain")] {
        let (status, body) = raw(Method::POST, "/contacts/".into(), create.clone(), ct).await;
        assert_eq!(status, 422, "{ct:?}: {body}");
        assert_eq!(body["error"], "Unprocessable Entity");
        let messages = body["message"].as_array().expect("an array of messages");
        assert!(
            messages.contains(&json!("locationId should not be empty")),
            "{body}"
        );
    }
    // Where nothing is required, the write "succeeds" and changes nothing.
    let (status, body) = raw(
        Method::PUT,
        format!("/contacts/{id}"),
        json!({"firstName": "Changed"}),
        Some("text/plain"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        e.ghl.contact(id).expect("contact")["firstName"],
        "Ana",
        "the body was not read"
    );
    // The same bytes as JSON are read; a charset parameter does not matter.
    let (status, body) = raw(
        Method::POST,
        "/contacts/".into(),
        create,
        Some("application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    e.ghl.shutdown().await.expect("shutdown");
}

/// Query DTOs refuse what they do not whitelist (API.md §1-§2), on every route: a parameter
/// the route's spec does not declare is a 422 naming it, before the handler runs.
#[tokio::test]
async fn query_parameters_the_spec_does_not_declare_are_refused() {
    let e = env().await;
    let c = e.create_contact(json!({"firstName": "Q"})).await;
    let id = c["id"].as_str().expect("id");
    let r = e
        .call(
            Method::GET,
            &format!("/contacts/{id}?locationId={LOC}"),
            None,
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        json!(["property locationId should not exist"])
    );
    let r = e
        .call(
            Method::GET,
            &format!("/businesses/?locationId={LOC}&limit=5&page=2&page=3"),
            None,
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["message"], json!(["property page should not exist"]));
    let r = e
        .call(
            Method::GET,
            &format!("/contacts/search/duplicate?locationId={LOC}&email=q%40x.io"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "declared parameters pass: {}", r.body);
    e.ghl.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------- search

#[tokio::test]
async fn search_after_reads_past_the_ten_thousand_page_cap() {
    // The cap is the point here, not where the cursor comes from: hits carry theirs.
    let e = env_with(GhlConfig {
        search_cursor: SearchCursor::PerHit,
        ..GhlConfig::default()
    })
    .await;
    let seeds: Vec<Value> = (0..10_050)
        .map(|i| json!({"email": format!("c{i}@bulk.io"), "dateAdded": format!("2024-01-01T00:00:00.{:03}Z", i % 1000)}))
        .collect();
    let started = Instant::now();
    let ids = e.ghl.seed_contacts(LOC, &seeds).expect("seed 10k");
    let took = started.elapsed();
    assert_eq!(ids.len(), 10_050);
    // Release builds seed 10k in well under a second; leave room for debug builds.
    assert!(took < Duration::from_secs(20), "seeding took {took:?}");
    eprintln!("seeded 10,050 contacts in {took:?}");

    let search = |body: Value| e.call(Method::POST, "/contacts/search", Some(body));
    let base = json!({"locationId": LOC, "pageLimit": 500,
        "sort": [{"field": "dateAdded", "direction": "asc"}]});
    let mut last_page = base.clone();
    last_page["page"] = json!(20);
    let r = search(last_page).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"], 10_050);
    let contacts = r.body["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 500);
    let cursor = contacts.last().expect("last")["searchAfter"].clone();
    assert_eq!(cursor.as_array().map(Vec::len), Some(2), "[sortValue, id]");

    let mut past = base.clone();
    past["page"] = json!(21);
    assert_eq!(
        search(past).await.status,
        400,
        "page paging stops at 10,000"
    );

    let mut after = base.clone();
    after["searchAfter"] = cursor;
    let r = search(after).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contacts"].as_array().map(Vec::len), Some(50));

    // A full scan with searchAfter sees every contact exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<Value> = None;
    loop {
        let mut body = base.clone();
        if let Some(c) = &cursor {
            body["searchAfter"] = c.clone();
        }
        let r = search(body).await;
        let page = r.body["contacts"].as_array().expect("contacts").clone();
        if page.is_empty() {
            break;
        }
        for c in &page {
            assert!(
                seen.insert(c["id"].as_str().expect("id").to_owned()),
                "seen twice"
            );
        }
        cursor = page.last().map(|c| c["searchAfter"].clone());
    }
    assert_eq!(seen.len(), 10_050);
    eprintln!(
        "seed + 24 searches over 10,050 contacts in {:?}",
        started.elapsed()
    );
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn search_filters_sort_and_validation() {
    let e = env().await;
    let a = e
        .create_contact(json!({"firstName": "Ana", "email": "ana@x.io", "tags": ["ekyte"]}))
        .await;
    let b = e
        .create_contact(
            json!({"firstName": "Bruno", "phone": "+15550002", "tags": ["ekyte", "vip"]}),
        )
        .await;
    let c = e.create_contact(json!({"firstName": "Carla"})).await;
    let checkpoint = ms(&c["dateUpdated"]);
    // `dateUpdated` has millisecond resolution: the update must land in a later millisecond
    // than the checkpoint, or "after the checkpoint" cannot tell it apart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while chrono::Utc::now().timestamp_millis() <= checkpoint {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock did not pass the checkpoint"
        );
        tokio::task::yield_now().await;
    }
    e.call(
        Method::PUT,
        &format!("/contacts/{}", a["id"].as_str().expect("id")),
        Some(json!({"city": "Faro"})),
    )
    .await;
    let ids = |r: &Reply| -> Vec<Value> {
        r.body["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .map(|c| c["id"].clone())
            .collect()
    };
    let search = |filters: Value| {
        e.call(
            Method::POST,
            "/contacts/search",
            Some(
                json!({"locationId": LOC, "pageLimit": 100, "filters": filters,
                "sort": [{"field": "firstNameLowerCase", "direction": "asc"}]}),
            ),
        )
    };
    let r = search(json!([{"field": "tags", "operator": "eq", "value": "ekyte"}])).await;
    assert_eq!(ids(&r), [a["id"].clone(), b["id"].clone()]);
    assert_eq!(r.body["total"], 2);
    let r =
        search(json!([{"field": "dateUpdated", "operator": "range", "value": {"gt": checkpoint}}]))
            .await;
    assert_eq!(
        ids(&r),
        [a["id"].clone()],
        "incremental sync by dateUpdated"
    );
    let r = search(json!([{"group": "OR", "filters": [
        {"field": "email", "operator": "exists"},
        {"field": "phone", "operator": "eq", "value": "+1 555 0002"}]}]))
    .await;
    assert_eq!(ids(&r), [a["id"].clone(), b["id"].clone()]);
    let r = search(
        json!([{"field": "firstNameLowerCase", "operator": "contains", "value": "ar"},
        {"field": "tags", "operator": "not_contains", "value": "vip"}]),
    )
    .await;
    assert_eq!(ids(&r), [c["id"].clone()]);
    let full = &r.body["contacts"][0];
    for k in [
        "id",
        "locationId",
        "firstName",
        "dateAdded",
        "dateUpdated",
        "tags",
        "customFields",
    ] {
        assert!(full.get(k).is_some(), "search results carry {k}");
    }

    let missing = e
        .call(
            Method::POST,
            "/contacts/search",
            Some(json!({"query": "ana"})),
        )
        .await;
    assert_eq!(missing.status, 422);
    let msgs = missing.body["message"].to_string();
    assert!(
        msgs.contains("locationId") && msgs.contains("pageLimit"),
        "{msgs}"
    );
    let too_big = e
        .call(
            Method::POST,
            "/contacts/search",
            Some(json!({"locationId": LOC, "pageLimit": 501})),
        )
        .await;
    assert_eq!(too_big.status, 422);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn search_index_lag_hides_fresh_writes_for_a_while() {
    let e = env_with(GhlConfig {
        search_index_lag_ms: 300,
        ..GhlConfig::default()
    })
    .await;
    e.create_contact(json!({"firstName": "Fresh"})).await;
    let body = json!({"locationId": LOC, "pageLimit": 10});
    let r = e
        .call(Method::POST, "/contacts/search", Some(body.clone()))
        .await;
    assert_eq!(r.body["total"], 0, "not indexed yet");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = e
            .call(Method::POST, "/contacts/search", Some(body.clone()))
            .await;
        if r.body["total"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "index never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.ghl.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------- auth

#[tokio::test]
async fn auth_failures_have_ghl_bodies() {
    let e = env().await;
    let c = e.create_contact(json!({"firstName": "A"})).await;
    let path = format!("/contacts/{}", c["id"].as_str().expect("id"));
    let unauthorized = json!({"statusCode": 401, "message": "Invalid token: access token is invalid",
        "error": "Unauthorized"});
    let none = e.send(Method::GET, &path, None, Some(V), None).await;
    assert_eq!(
        (none.status, none.body.clone()),
        (401, unauthorized.clone())
    );
    let bad = e
        .send(Method::GET, &path, Some("nope"), Some(V), None)
        .await;
    assert_eq!((bad.status, bad.body.clone()), (401, unauthorized.clone()));

    let other = e
        .ghl
        .register_pit(PitSpec {
            location_id: Some(OTHER_LOC.into()),
            scopes: all_scopes(),
            ..PitSpec::default()
        })
        .expect("pit");
    let foreign = e
        .send(Method::GET, &path, Some(&other), Some(V), None)
        .await;
    assert_eq!(foreign.status, 403);
    assert_eq!(
        foreign.body["message"],
        "The token does not have access to this location."
    );

    // A PIT is created with the scopes it may use: none named is not "every scope".
    let unscoped = e
        .ghl
        .register_pit(PitSpec {
            location_id: Some(LOC.into()),
            ..PitSpec::default()
        })
        .expect_err("a PIT without scopes is refused");
    assert_eq!(unscoped.status.as_u16(), 422);
    assert!(
        unscoped
            .body
            .to_string()
            .contains("scopes should not be empty")
    );

    let read_only = e
        .ghl
        .register_pit(PitSpec {
            location_id: Some(LOC.into()),
            scopes: vec!["contacts.readonly".into()],
            ..PitSpec::default()
        })
        .expect("pit");
    let ok = e
        .send(Method::GET, &path, Some(&read_only), Some(V), None)
        .await;
    assert_eq!(ok.status, 200);
    let denied = e
        .send(Method::DELETE, &path, Some(&read_only), Some(V), None)
        .await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.body["message"]
            .as_str()
            .expect("message")
            .contains("contacts.write")
    );

    let no_version = e.send(Method::GET, &path, Some(&e.token), None, None).await;
    assert_eq!(no_version.status, 400);
    let wrong = e
        .send(Method::GET, &path, Some(&e.token), Some("2021-04-15"), None)
        .await;
    assert_eq!(wrong.status, 400);
    assert!(
        e.ghl.contact(c["id"].as_str().expect("id")).is_some(),
        "nothing deleted"
    );
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn oauth_refresh_tokens_are_single_use() {
    let e = env().await;
    e.ghl
        .register_oauth_client(OAuthClientSpec {
            client_id: "cid".into(),
            client_secret: "secret".into(),
            app_id: "app1".into(),
            ..OAuthClientSpec::default()
        })
        .expect("client");
    let code = e.ghl.issue_auth_code("cid", LOC, None).expect("code");
    let tok = e
        .form(
            "/oauth/token",
            &[
                ("client_id", "cid"),
                ("client_secret", "secret"),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("user_type", "Location"),
            ],
            None,
        )
        .await;
    assert_eq!(tok.status, 200, "{}", tok.body);
    for k in [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "userType",
        "locationId",
        "companyId",
        "userId",
    ] {
        assert!(tok.body.get(k).is_some(), "token response has {k}");
    }
    assert_eq!(tok.body["expires_in"], 86_399);
    let access = tok.body["access_token"].as_str().expect("token").to_owned();
    let refresh = tok.body["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let me = e
        .send(
            Method::GET,
            &format!("/contacts/?locationId={LOC}"),
            Some(&access),
            Some(V),
            None,
        )
        .await;
    assert_eq!(me.status, 200);

    let refresh_form = [
        ("client_id", "cid"),
        ("client_secret", "secret"),
        ("grant_type", "refresh_token"),
        ("user_type", "Location"),
        ("refresh_token", refresh.as_str()),
    ];
    let next = e.form("/oauth/token", &refresh_form, None).await;
    assert_eq!(next.status, 200);
    assert_ne!(next.body["refresh_token"], tok.body["refresh_token"]);
    let reuse = e.form("/oauth/token", &refresh_form, None).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(
        reuse.body,
        json!({"statusCode": 400, "message": "Invalid grant: refresh token is invalid"})
    );
    let wrong_secret = e
        .form(
            "/oauth/token",
            &[
                ("client_id", "cid"),
                ("client_secret", "bad"),
                ("grant_type", "refresh_token"),
                ("user_type", "Location"),
                (
                    "refresh_token",
                    next.body["refresh_token"].as_str().expect("rt"),
                ),
            ],
            None,
        )
        .await;
    assert_eq!(wrong_secret.status, 401);
    let s = e.ghl.counter_snapshot();
    assert_eq!(s.event("oauth_refresh"), 1);
    assert_eq!(s.event("oauth_refresh_rejected"), 2);
    assert_eq!(s.route_total("POST", "/oauth/token"), 4);

    // Expired access token → 401; the new pair still works.
    assert_eq!(e.ghl.expire_access_token(&access), 1);
    let expired = e
        .send(
            Method::GET,
            &format!("/contacts/?locationId={LOC}"),
            Some(&access),
            Some(V),
            None,
        )
        .await;
    assert_eq!(expired.status, 401);

    // With a grace window, an identical concurrent refresh gets the same new pair.
    e.ghl.set_oauth_config(OAuthConfig {
        refresh_grace_secs: 30,
        ..OAuthConfig::default()
    });
    let rt = next.body["refresh_token"].as_str().expect("rt").to_owned();
    let form = [
        ("client_id", "cid"),
        ("client_secret", "secret"),
        ("grant_type", "refresh_token"),
        ("user_type", "Location"),
        ("refresh_token", rt.as_str()),
    ];
    let (a, b) = tokio::join!(
        e.form("/oauth/token", &form, None),
        e.form("/oauth/token", &form, None)
    );
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.body["refresh_token"], b.body["refresh_token"]);
    assert_eq!(a.body["access_token"], b.body["access_token"]);
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn agency_token_gets_a_location_token() {
    let e = env().await;
    e.ghl
        .register_oauth_client(OAuthClientSpec::default())
        .expect("client");
    let company = e.ghl.dump_location(LOC).expect("dump")["location"]["companyId"]
        .as_str()
        .expect("company")
        .to_owned();
    let code = e
        .ghl
        .issue_agency_auth_code("sandbox-client", &company, None)
        .expect("code");
    let agency = e
        .form(
            "/oauth/token",
            &[
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
                ("grant_type", "authorization_code"),
                ("code", &code),
            ],
            None,
        )
        .await;
    assert_eq!(agency.body["userType"], "Company");
    let agency_token = agency.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    // Only where the app is installed.
    let refused = e
        .form(
            "/oauth/locationToken",
            &[("companyId", &company), ("locationId", LOC)],
            Some(&agency_token),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    e.ghl
        .act_install(LOC, Some("app-sandbox-client"))
        .expect("install");
    let loc = e
        .form(
            "/oauth/locationToken",
            &[("companyId", &company), ("locationId", LOC)],
            Some(&agency_token),
        )
        .await;
    assert_eq!(loc.status, 200, "{}", loc.body);
    assert_eq!(loc.body["locationId"], LOC);
    let token = loc.body["access_token"].as_str().expect("token");
    let r = e
        .send(
            Method::GET,
            &format!("/contacts/?locationId={LOC}"),
            Some(token),
            Some(V),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    e.ghl.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------- rate limits

#[tokio::test]
async fn rate_limit_headers_and_earned_versus_injected_429() {
    let e = env_with(GhlConfig {
        rate_limit: RateLimitConfig {
            max: 5,
            interval_ms: 60_000,
            daily_limit: 1_000,
            ..RateLimitConfig::default()
        },
        ..GhlConfig::default()
    })
    .await;
    let path = format!("/contacts/?locationId={LOC}");
    for i in 0..5u64 {
        let r = e.call(Method::GET, &path, None).await;
        assert_eq!(r.status, 200);
        let h = |name: &str| {
            r.headers
                .get(name)
                .unwrap_or_else(|| panic!("header {name}"))
                .to_str()
                .expect("ascii")
                .parse::<u64>()
                .expect("number")
        };
        assert_eq!(h("x-ratelimit-max"), 5);
        assert_eq!(h("x-ratelimit-remaining"), 4 - i);
        assert_eq!(h("x-ratelimit-interval-milliseconds"), 60_000);
        assert_eq!(h("x-ratelimit-limit-daily"), 1_000);
        assert_eq!(h("x-ratelimit-daily-remaining"), 999 - i);
    }
    let over = e.call(Method::GET, &path, None).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.headers["x-ratelimit-remaining"], "0");
    // Another location has its own budget.
    let other = e
        .ghl
        .register_pit(PitSpec {
            location_id: Some(OTHER_LOC.into()),
            app_id: "same-app".into(),
            scopes: all_scopes(),
            ..PitSpec::default()
        })
        .expect("pit");
    let r = e
        .send(
            Method::GET,
            &format!("/contacts/?locationId={OTHER_LOC}"),
            Some(&other),
            Some(V),
            None,
        )
        .await;
    assert_eq!(r.status, 200);

    e.ghl.reset_rate_limits();
    e.ghl.set_faults(FaultConfig {
        burst_429_probability: 1.0,
        burst_429_length: 2,
        ..FaultConfig::default()
    });
    for _ in 0..2 {
        let r = e.call(Method::GET, &path, None).await;
        assert_eq!(r.status, 429);
        assert!(r.headers.contains_key("x-ratelimit-remaining"));
    }
    e.ghl.set_faults(FaultConfig::default());
    let s = e.ghl.counter_snapshot();
    assert_eq!(s.event("rate_limited_earned"), 1);
    assert_eq!(s.event("rate_limited_injected"), 2);
    assert_eq!(s.routes["GET /contacts/"][&429], 3);
    // Injected 429s consumed nothing.
    let r = e.call(Method::GET, &path, None).await;
    assert_eq!(r.headers["x-ratelimit-remaining"], "4");
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_client_at_ninety_percent_of_the_limit_is_never_refused() {
    let interval = Duration::from_millis(400);
    let e = env_with(GhlConfig {
        rate_limit: RateLimitConfig {
            max: 10,
            interval_ms: interval.as_millis() as u64,
            ..RateLimitConfig::default()
        },
        ..GhlConfig::default()
    })
    .await;
    let path = format!("/contacts/?locationId={LOC}");
    for _ in 0..3 {
        for _ in 0..9 {
            assert_eq!(e.call(Method::GET, &path, None).await.status, 200);
        }
        // Pace like a client that honours X-RateLimit-Interval-Milliseconds.
        tokio::time::sleep(interval).await;
    }
    let burst = futures::future::join_all((0..11).map(|_| e.call(Method::GET, &path, None))).await;
    let refused = burst.iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 1, "exactly the 11th request of a burst is refused");
    assert_eq!(e.ghl.counter_snapshot().event("rate_limited_earned"), 1);
    e.ghl.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------- faults

#[tokio::test]
async fn faulted_requests_change_nothing() {
    let e = env().await;
    let c = e.create_contact(json!({"firstName": "Stable"})).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let before = e.ghl.dump_location(LOC).expect("dump");
    let routes = [
        (
            "POST /contacts/",
            RouteFault {
                error_rate: Some(1.0),
                ..RouteFault::default()
            },
        ),
        (
            "PUT /contacts/{contactId}",
            RouteFault {
                timeout_rate: Some(1.0),
                ..RouteFault::default()
            },
        ),
        (
            "DELETE /contacts/{contactId}",
            RouteFault {
                burst_429_probability: Some(1.0),
                ..RouteFault::default()
            },
        ),
    ];
    e.ghl.set_faults(FaultConfig {
        timeout_ms: 50,
        routes: routes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..FaultConfig::default()
    });
    let r = e
        .call(
            Method::POST,
            "/contacts/",
            Some(json!({"locationId": LOC, "firstName": "New"})),
        )
        .await;
    assert!(matches!(r.status, 500 | 502 | 503), "{}", r.status);
    let r = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"firstName": "Changed"})),
        )
        .await;
    assert_eq!(r.status, 504);
    let r = e
        .call(Method::DELETE, &format!("/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        e.ghl.dump_location(LOC).expect("dump"),
        before,
        "no fault wrote anything"
    );
    let s = e.ghl.counter_snapshot();
    assert_eq!(s.event("fault_server_error"), 1);
    assert_eq!(s.event("fault_timeout"), 1);
    assert_eq!(s.event("rate_limited_injected"), 1);
    assert_eq!(s.event("rate_limited_earned"), 0);
    assert_eq!(
        s.event("webhooks_emitted"),
        1,
        "only the setup create emitted"
    );
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_lost_answer_after_a_write_leaves_the_write_in_place() {
    let e = env().await;
    e.ghl.set_write_faults(WriteFaults {
        routes: [("POST /contacts/".to_owned(), 1.0)].into(),
        ..WriteFaults::default()
    });
    let r = e
        .call(
            Method::POST,
            "/contacts/",
            Some(json!({"locationId": LOC, "email": "ghost@x.io"})),
        )
        .await;
    assert_eq!(r.status, 504, "the client cannot know the outcome");
    let found = e
        .call(
            Method::GET,
            &format!("/contacts/search/duplicate?locationId={LOC}&email=ghost%40x.io"),
            None,
        )
        .await;
    assert!(
        found.body["contact"]["id"].is_string(),
        "but the contact exists"
    );
    let retry = e
        .call(
            Method::POST,
            "/contacts/",
            Some(json!({"locationId": LOC, "email": "ghost@x.io"})),
        )
        .await;
    assert_eq!(retry.status, 400, "a blind retry hits the duplicate rule");
    assert_eq!(retry.body["meta"]["contactId"], found.body["contact"]["id"]);
    assert_eq!(e.ghl.counter_snapshot().event("fault_lost_response"), 1);
    assert_eq!(e.ghl.webhook_log().len(), 1, "ContactCreate was emitted");
    e.ghl.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------- webhooks

#[tokio::test]
async fn webhooks_are_signed_over_the_raw_body() {
    let rx = Receiver::start().await;
    let e = env_with(GhlConfig {
        webhooks: WebhookConfig {
            url: Some(rx.url.clone()),
            ..WebhookConfig::default()
        },
        ..GhlConfig::default()
    })
    .await;
    let c = e
        .ghl
        .act_create_contact(LOC, json!({"firstName": "Hook", "email": "hook@x.io"}))
        .expect("create");
    let id = c["id"].as_str().expect("id").to_owned();
    e.ghl.act_add_tags(&id, &["ekyte"]).expect("tags");
    let task = e
        .ghl
        .act_create_task(&id, json!({"title": "Call back"}))
        .expect("task");
    e.ghl
        .act_complete_task(&id, task["id"].as_str().expect("id"), true)
        .expect("complete");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);

    let kinds: Vec<Value> = rx.bodies().iter().map(|b| b["type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "ContactCreate",
            "ContactTagUpdate",
            "TaskCreate",
            "TaskComplete"
        ]
    );
    let pem = e.ghl.webhook_public_key_pem();
    let control_pem = e
        .http
        .get(e.url("/_control/webhooks/keys"))
        .send()
        .await
        .expect("keys")
        .json::<Value>()
        .await
        .expect("json")["ed25519"]
        .clone();
    assert_eq!(control_pem, json!(pem));
    let mut ids = std::collections::HashSet::new();
    for (headers, body) in rx.got.lock().expect("lock").iter() {
        let sig = headers["x-ghl-signature"].to_str().expect("ascii");
        assert!(
            verify_ed25519(&pem, body, sig),
            "signature verifies over the raw body"
        );
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert!(!verify_ed25519(&pem, &tampered, sig));
        assert!(
            !headers.contains_key("x-wh-signature"),
            "RSA is off by default"
        );
        let v: Value = serde_json::from_slice(body).expect("json");
        for k in [
            "type",
            "locationId",
            "timestamp",
            "webhookId",
            "appId",
            "versionId",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(ids.insert(v["webhookId"].clone()), "webhookId is unique");
    }
    let bodies = rx.bodies();
    assert_eq!(bodies[0]["email"], "hook@x.io");
    assert_eq!(bodies[2]["contactId"], json!(id));
    assert_eq!(e.ghl.counter_snapshot().event("webhooks_sent"), 4);
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[tokio::test]
async fn api_writes_emit_the_documented_events() {
    let rx = Receiver::start().await;
    let e = env().await;
    e.ghl.set_webhook_target(Some(rx.url.clone()));
    let c = e.create_contact(json!({"firstName": "Api"})).await;
    let id = c["id"].as_str().expect("id").to_owned();
    e.call(
        Method::PUT,
        &format!("/contacts/{id}"),
        Some(json!({"dnd": true})),
    )
    .await;
    let note = e
        .call(
            Method::POST,
            &format!("/contacts/{id}/notes"),
            Some(json!({"body": "hello"})),
        )
        .await;
    assert_eq!(note.status, 201);
    let note_id = note.body["note"]["id"].as_str().expect("id").to_owned();
    e.call(
        Method::PUT,
        &format!("/contacts/{id}/notes/{note_id}"),
        Some(json!({"body": "hi"})),
    )
    .await;
    e.call(
        Method::DELETE,
        &format!("/contacts/{id}/notes/{note_id}"),
        None,
    )
    .await;
    let task = e
        .call(
            Method::POST,
            &format!("/contacts/{id}/tasks"),
            Some(json!({"title": "T", "dueDate": "2030-01-01T10:00:00.000Z", "completed": false})),
        )
        .await;
    assert_eq!(task.status, 201);
    let task_id = task.body["task"]["id"].as_str().expect("id").to_owned();
    let done = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}/tasks/{task_id}/completed"),
            Some(json!({"completed": true})),
        )
        .await;
    assert_eq!(done.body["task"]["completed"], true);
    e.call(
        Method::DELETE,
        &format!("/contacts/{id}/tasks/{task_id}"),
        None,
    )
    .await;
    let appt = e
        .ghl
        .act_create_appointment(json!({"contactId": id, "startTime": "2030-01-02T09:00:00Z"}))
        .expect("appointment");
    let appt_id = appt["id"].as_str().expect("id").to_owned();
    e.ghl
        .act_update_appointment(&appt_id, json!({"appointmentStatus": "confirmed"}))
        .expect("update");
    e.ghl.act_delete_appointment(&appt_id).expect("delete");
    e.call(Method::DELETE, &format!("/contacts/{id}"), None)
        .await;
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    let kinds: Vec<String> = rx
        .bodies()
        .iter()
        .map(|b| b["type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "ContactCreate",
            "ContactDndUpdate",
            "NoteCreate",
            "NoteUpdate",
            "NoteDelete",
            "TaskCreate",
            "TaskComplete",
            "TaskDelete",
            "AppointmentCreate",
            "AppointmentUpdate",
            "AppointmentDelete",
            "ContactDelete",
        ]
    );
    let bodies = rx.bodies();
    assert!(bodies[1]["dndSettings"].is_object());
    assert!(
        bodies[2].get("userId").is_none(),
        "note events carry no userId (#312)"
    );
    assert_eq!(bodies[9]["appointment"]["appointmentStatus"], "confirmed");
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[tokio::test]
async fn webhook_drop_duplicate_and_task_contact_id_faults() {
    let rx = Receiver::start().await;
    let e = env().await;
    e.ghl.set_webhook_target(Some(rx.url.clone()));
    e.ghl.set_webhook_faults(WebhookFaults {
        drop_probability: 1.0,
        ..WebhookFaults::default()
    });
    for i in 0..3 {
        e.ghl
            .act_create_contact(LOC, json!({"firstName": format!("D{i}")}))
            .expect("create");
    }
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    assert_eq!(rx.count(), 0);
    assert_eq!(e.ghl.counter_snapshot().event("webhooks_dropped"), 3);
    assert_eq!(e.ghl.webhook_log().len(), 3, "the log keeps dropped events");

    e.ghl.set_webhook_faults(WebhookFaults {
        duplicate_probability: 1.0,
        omit_task_create_contact_id: true,
        ..WebhookFaults::default()
    });
    let c = e
        .ghl
        .act_create_contact(LOC, json!({"firstName": "Twice"}))
        .expect("create");
    e.ghl
        .act_create_task(c["id"].as_str().expect("id"), json!({"title": "x"}))
        .expect("task");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 4);
    assert_eq!(
        bodies[0], bodies[1],
        "a duplicate is the same delivery twice"
    );
    assert_eq!(bodies[2]["type"], "TaskCreate");
    assert!(bodies[2].get("contactId").is_none(), "#332");
    let s = e.ghl.counter_snapshot();
    assert_eq!(s.event("webhooks_duplicated"), 2);
    assert_eq!(s.event("webhooks_sent"), 4);
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[tokio::test]
async fn webhook_reorder_holds_an_event_back() {
    let rx = Receiver::start().await;
    let e = env().await;
    e.ghl.set_webhook_target(Some(rx.url.clone()));
    let c = e
        .ghl
        .act_create_contact(LOC, json!({"firstName": "R"}))
        .expect("create");
    let id = c["id"].as_str().expect("id").to_owned();
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    e.ghl.set_webhook_faults(WebhookFaults {
        reorder_probability: 1.0,
        ..WebhookFaults::default()
    });
    e.ghl.act_add_tags(&id, &["first"]).expect("tags");
    e.ghl.set_webhook_faults(WebhookFaults::default());
    e.ghl
        .act_update_contact(&id, json!({"city": "Braga"}))
        .expect("update");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    let kinds: Vec<Value> = rx.bodies().iter().map(|b| b["type"].clone()).collect();
    assert_eq!(
        kinds,
        ["ContactCreate", "ContactUpdate", "ContactTagUpdate"]
    );
    assert_eq!(e.ghl.counter_snapshot().event("webhooks_reordered"), 1);
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[tokio::test]
async fn webhooks_are_retried_only_on_429() {
    let rx = Receiver::start().await;
    rx.script.lock().expect("lock").extend([429, 429, 500]);
    let e = env().await;
    e.ghl.set_webhook_target(Some(rx.url.clone()));
    e.ghl.set_webhook_retry(6, Duration::from_millis(20));
    e.ghl
        .act_create_contact(LOC, json!({"firstName": "Retry"}))
        .expect("create");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    let s = e.ghl.counter_snapshot();
    assert_eq!(
        s.event("webhooks_retried"),
        2,
        "429, 429, then the 500 is final"
    );
    assert_eq!(s.event("webhooks_failed"), 1);
    assert_eq!(s.event("webhooks_sent"), 0);
    assert_eq!(rx.count(), 3);

    rx.script.lock().expect("lock").extend([429]);
    e.ghl
        .act_create_contact(LOC, json!({"firstName": "Later"}))
        .expect("create");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    let bodies = rx.bodies();
    assert_eq!(
        bodies[3]["webhookId"], bodies[4]["webhookId"],
        "a retry is the same event"
    );
    assert_eq!(e.ghl.counter_snapshot().event("webhooks_sent"), 1);
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[tokio::test]
async fn rsa_signature_when_enabled() {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let rx = Receiver::start().await;
    let e = env_with(GhlConfig {
        webhooks: WebhookConfig {
            url: Some(rx.url.clone()),
            rsa_signature: true,
            ..WebhookConfig::default()
        },
        ..GhlConfig::default()
    })
    .await;
    e.ghl
        .act_create_contact(LOC, json!({"firstName": "Rsa"}))
        .expect("create");
    assert!(e.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);
    let pem = e
        .ghl
        .webhook_rsa_public_key_pem()
        .expect("RSA key published");
    let key = rsa::RsaPublicKey::from_public_key_pem(&pem).expect("SPKI PEM");
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
    let (headers, body) = rx.got.lock().expect("lock")[0].clone();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(headers["x-wh-signature"].to_str().expect("ascii"))
        .expect("base64");
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).expect("signature");
    assert!(verifier.verify(&body, &sig).is_ok());
    e.ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

// ---------------------------------------------------------------------- the rest of the surface

#[tokio::test]
async fn tasks_notes_and_appointments_have_ghl_shapes() {
    let e = env().await;
    e.ghl
        .update_location(
            LOC,
            LocationUpdate {
                timezone: Some("Asia/Kolkata".into()),
                ..LocationUpdate::default()
            },
        )
        .expect("tz");
    let c = e.create_contact(json!({"firstName": "Rel"})).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let missing = e
        .call(
            Method::POST,
            &format!("/contacts/{id}/tasks"),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(missing.status, 422, "dueDate and completed are required");
    let t = e
        .call(
            Method::POST,
            &format!("/contacts/{id}/tasks"),
            Some(json!({"title": "T1", "body": "b", "dueDate": "2030-01-01T10:00:00Z", "completed": false})),
        )
        .await;
    let task_id = t.body["task"]["id"].as_str().expect("id").to_owned();
    assert_eq!(t.body["task"]["dueDate"], "2030-01-01T10:00:00.000Z");
    let list = e
        .call(Method::GET, &format!("/contacts/{id}/tasks"), None)
        .await;
    assert_eq!(list.body["tasks"].as_array().map(Vec::len), Some(1));
    let upd = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}/tasks/{task_id}"),
            Some(json!({"title": "T1b"})),
        )
        .await;
    assert_eq!(upd.body["task"]["title"], "T1b");
    let search = e
        .call(
            Method::POST,
            &format!("/locations/{LOC}/tasks/search"),
            Some(json!({"contactId": [id], "completed": false})),
        )
        .await;
    assert_eq!(search.status, 200, "{}", search.body);
    assert_eq!(search.body["tasks"][0]["id"], json!(task_id));

    e.ghl
        .seed_appointments(
            &[json!({"contactId": id, "startTime": "2023-09-25T10:30:00Z",
            "endTime": "2023-09-25T11:00:00Z", "title": "Demo"})],
        )
        .expect("seed");
    let appts = e
        .call(Method::GET, &format!("/contacts/{id}/appointments"), None)
        .await;
    let ev = &appts.body["events"][0];
    assert_eq!(
        ev["startTime"], "2023-09-25 16:00:00",
        "location time, no zone"
    );
    let event_id = ev["id"].as_str().expect("id").to_owned();
    let cal_path = format!("/calendars/events/appointments/{event_id}");
    let wrong_version = e.call(Method::GET, &cal_path, None).await;
    assert_eq!(
        wrong_version.status, 400,
        "calendars want Version 2021-04-15"
    );
    let full = e
        .send(
            Method::GET,
            &cal_path,
            Some(&e.token),
            Some("2021-04-15"),
            None,
        )
        .await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body["event"]["startTime"], "2023-09-25T16:00:00+05:30");
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn businesses_and_their_contacts() {
    let e = env().await;
    let r = e
        .call(
            Method::POST,
            "/businesses/",
            Some(json!({"name": "Acme", "locationId": LOC, "city": "Lisbon"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["success"], true);
    let bid = r.body["buiseness"]["id"].as_str().expect("id").to_owned();
    assert_eq!(bid.len(), 24);
    e.ghl
        .seed_contacts(
            LOC,
            &[
                json!({"firstName": "Emp", "businessId": bid}),
                json!({"firstName": "Other"}),
            ],
        )
        .expect("seed");
    let got = e
        .call(Method::GET, &format!("/businesses/{bid}"), None)
        .await;
    assert_eq!(got.body["business"]["name"], "Acme");
    let list = e
        .call(Method::GET, &format!("/businesses/?locationId={LOC}"), None)
        .await;
    assert_eq!(list.body["businesses"].as_array().map(Vec::len), Some(1));
    let members = e
        .call(
            Method::GET,
            &format!("/contacts/business/{bid}?locationId={LOC}&limit=10&skip=0"),
            None,
        )
        .await;
    assert_eq!(members.body["count"], 1);
    assert_eq!(members.body["contacts"][0]["firstName"], "Emp");
    let upd = e
        .call(
            Method::PUT,
            &format!("/businesses/{bid}"),
            Some(json!({"name": "Acme 2"})),
        )
        .await;
    assert_eq!(upd.body["buiseness"]["name"], "Acme 2");
    let del = e
        .call(Method::DELETE, &format!("/businesses/{bid}"), None)
        .await;
    assert_eq!(del.body, json!({"success": true}));
    e.ghl.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn control_api_over_http() {
    let rx = Receiver::start().await;
    let ghl = GhlSandbox::start(GhlConfig::default())
        .await
        .expect("start");
    let http = reqwest::Client::new();
    let ctl = |path: &str| format!("{}/_control{path}", ghl.base_url());
    let post = |path: &str, body: Value| http.post(ctl(path)).json(&body).send();
    let loc = post(
        "/locations",
        json!({"id": "ctlLoc00000000000001", "name": "Ctl"}),
    )
    .await
    .expect("create location")
    .json::<Value>()
    .await
    .expect("json");
    assert_eq!(loc["id"], "ctlLoc00000000000001");
    let unscoped = post("/pits", json!({"locationId": "ctlLoc00000000000001"}))
        .await
        .expect("pit");
    assert_eq!(unscoped.status(), 422, "a PIT names its scopes");
    let pit = post(
        "/pits",
        json!({"locationId": "ctlLoc00000000000001", "scopes": all_scopes()}),
    )
    .await
    .expect("pit")
    .json::<Value>()
    .await
    .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    http.put(ctl("/webhooks/target"))
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .expect("target");
    let seeded = post(
        "/seed/ctlLoc00000000000001/contacts",
        json!([{"firstName": "S1"}, {"firstName": "S2"}]),
    )
    .await
    .expect("seed")
    .json::<Value>()
    .await
    .expect("json");
    let id = seeded["ids"][0].as_str().expect("id").to_owned();
    let acted = http
        .patch(ctl(&format!("/act/contacts/{id}")))
        .json(&json!({"city": "Evora"}))
        .send()
        .await
        .expect("act");
    assert_eq!(acted.status(), 200);
    let drained = post("/webhooks/wait-drained", json!({"timeoutMs": 5000}))
        .await
        .expect("wait");
    assert_eq!(drained.status(), 200);
    assert_eq!(rx.bodies().len(), 1, "seeding emits nothing; acting does");

    let api = http
        .get(format!("{}/contacts/{id}", ghl.base_url()))
        .bearer_auth(&pit)
        .header("Version", V)
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 200);
    let counters = http
        .get(ctl("/counters"))
        .send()
        .await
        .expect("counters")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(counters["routes"]["GET /contacts/{contactId}"]["200"], 1);
    assert_eq!(counters["events"]["webhooks_sent"], 1);
    assert!(
        counters["routes"]
            .as_object()
            .expect("routes")
            .keys()
            .all(|k| !k.contains("_control")),
        "control traffic is not counted"
    );
    let dump = http
        .get(ctl("/locations/ctlLoc00000000000001/dump"))
        .send()
        .await
        .expect("dump")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(dump["contacts"].as_array().map(Vec::len), Some(2));
    let unknown = http
        .get(format!("{}/nothing/here", ghl.base_url()))
        .send()
        .await
        .expect("404");
    assert_eq!(unknown.status(), 404);
    ghl.shutdown().await.expect("shutdown");
    rx.server.shutdown().await.expect("receiver stops");
}

#[test]
fn config_deserialises_from_toml_like_json_with_defaults() {
    let cfg: GhlConfig = serde_json::from_value(json!({
        "port": 8081,
        "rate_limit": {"max": 1000, "interval_ms": 1000},
        "locations": [{"id": "l1", "allowDuplicateContact": true}],
        "webhooks": {"url": "http://127.0.0.1:9/hook", "faults": {"drop_probability": 0.1}},
    }))
    .expect("config");
    assert_eq!(cfg.port, 8081);
    assert_eq!(cfg.rate_limit.max, 1000);
    assert_eq!(
        cfg.rate_limit.daily_limit, 200_000,
        "unset fields keep their defaults"
    );
    assert!(cfg.locations[0].allow_duplicate_contact);
    assert_eq!(cfg.webhooks.max_retries, 6);
    assert_eq!(cfg.oauth.access_token_ttl_secs, 86_399);
}

// ---------------------------------------------------------------------- contract

/// Responses validated against the official response schemas of the vendored specs
/// (`tests/data/ghl-openapi/`, GoHighLevel/highlevel-api-docs HEAD 0af86a4).
mod contract {
    use super::*;

    const BASE: &str = "https://ghl-openapi.local";

    fn read(rel: &str) -> Value {
        let path = format!(
            "{}/tests/data/ghl-openapi/{rel}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("spec is JSON")
    }

    struct Specs {
        contacts: Value,
        businesses: Value,
        oauth: Value,
        registry: jsonschema::Registry<'static>,
    }

    impl Specs {
        fn load() -> Self {
            let contacts = read("v2/contacts.json");
            let businesses = read("v2/businesses.json");
            let oauth = read("v2/oauth.json");
            let common = read("common/common-schemas.json");
            // `../common/common-schemas.json#/...` in the v2 files resolves against these URIs,
            // so every reference stays local (no retriever, no network).
            let registry = jsonschema::Registry::new()
                .add(format!("{BASE}/v2/contacts.json"), contacts.clone())
                .expect("uri")
                .add(format!("{BASE}/v2/businesses.json"), businesses.clone())
                .expect("uri")
                .add(format!("{BASE}/v2/oauth.json"), oauth.clone())
                .expect("uri")
                .add(format!("{BASE}/common/common-schemas.json"), common)
                .expect("uri")
                .prepare()
                .expect("registry");
            Self {
                contacts,
                businesses,
                oauth,
                registry,
            }
        }

        /// The `$ref` of the response schema of (path, method, status), if the spec has one.
        fn response_ref(
            &self,
            spec: &str,
            path: &str,
            method: &str,
            status: u16,
        ) -> Option<String> {
            let doc = match spec {
                "contacts" => &self.contacts,
                "oauth" => &self.oauth,
                _ => &self.businesses,
            };
            let schema = doc["paths"][path][method]["responses"][status.to_string()]["content"]
                ["application/json"]["schema"]
                .get("$ref")?
                .as_str()?
                .to_owned();
            Some(if let Some(local) = schema.strip_prefix('#') {
                format!("{BASE}/v2/{spec}.json#{local}")
            } else {
                let rel = schema.trim_start_matches("../");
                format!("{BASE}/{rel}")
            })
        }

        fn check(&self, spec: &str, path: &str, method: &str, reply: &Reply) {
            let Some(r) = self.response_ref(spec, path, method, reply.status) else {
                panic!(
                    "{method} {path} answered {} which the spec does not declare: {}",
                    reply.status, reply.body
                );
            };
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .should_validate_formats(true)
                .with_registry(&self.registry)
                .build(&json!({"$ref": r}))
                .unwrap_or_else(|e| panic!("schema {r}: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&reply.body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} ({}) vs {r}: {errors:#?}\n{}",
                reply.status,
                reply.body
            );
        }
    }

    #[tokio::test]
    async fn every_contacts_endpoint_matches_the_official_response_schemas() {
        let specs = Specs::load();
        let e = env().await;
        e.ghl
            .seed_businesses(
                LOC,
                &[json!({"id": "641c094001436dbc2081e642", "name": "Biz"})],
            )
            .expect("business");
        let create = e
            .call(
                Method::POST,
                "/contacts/",
                Some(json!({"locationId": LOC, "firstName": "Rubika", "lastName": "Deo",
                    "email": "rubika@deos.com", "phone": "+18832327657", "tags": ["a"],
                    "dateOfBirth": "1990-09-25", "companyName": "DGS", "address1": "3535 1st St N",
                    "city": "Dolomite", "state": "AL", "country": "US", "postalCode": "35061",
                    "website": "https://www.tesla.com", "timezone": "Asia/Calcutta", "source": "public api",
                    "dnd": false, "dndSettings": {"Email": {"status": "active", "message": "m", "code": "c"}},
                    "customFields": [{"id": "MgobCB14YMVKuE4Ka8p1", "field_value": "name"}]})),
            )
            .await;
        specs.check("contacts", "/contacts/", "post", &create);
        let id = create.body["contact"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        e.ghl
            .act_update_contact(
                &id,
                json!({"businessId": "641c094001436dbc2081e642",
                "attributionSource": {"url": "https://x.io", "utmSource": "google"}}),
            )
            .expect("enrich");
        let p = |s: &str| s.replace("{contactId}", &id);

        let get = e.call(Method::GET, &p("/contacts/{contactId}"), None).await;
        specs.check("contacts", "/contacts/{contactId}", "get", &get);
        let put = e
            .call(
                Method::PUT,
                &p("/contacts/{contactId}"),
                Some(json!({"city": "Lisbon"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}", "put", &put);
        let bad_put = e
            .call(
                Method::PUT,
                &p("/contacts/{contactId}"),
                Some(json!({"gender": "x"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}", "put", &bad_put);
        let upsert = e
            .call(
                Method::POST,
                "/contacts/upsert",
                Some(json!({"locationId": LOC, "email": "rubika@deos.com"})),
            )
            .await;
        specs.check("contacts", "/contacts/upsert", "post", &upsert);
        let dup = e
            .call(
                Method::POST,
                "/contacts/",
                Some(json!({"locationId": LOC, "email": "rubika@deos.com"})),
            )
            .await;
        specs.check("contacts", "/contacts/", "post", &dup);
        let list = e
            .call(
                Method::GET,
                &format!("/contacts/?locationId={LOC}&limit=10"),
                None,
            )
            .await;
        specs.check("contacts", "/contacts/", "get", &list);
        let by_business = e
            .call(
                Method::GET,
                &format!("/contacts/business/641c094001436dbc2081e642?locationId={LOC}"),
                None,
            )
            .await;
        specs.check(
            "contacts",
            "/contacts/business/{businessId}",
            "get",
            &by_business,
        );
        assert_eq!(by_business.body["count"], 1);
        // `POST /contacts/search` and `GET /contacts/search/duplicate` declare no 200 schema in
        // the spec ([C2]); their shapes are asserted in the search and duplicate tests. Their
        // declared error schemas are checked here.
        let search_401 = e
            .send(
                Method::POST,
                "/contacts/search",
                Some("bad"),
                Some(V),
                Some(json!({})),
            )
            .await;
        assert_eq!(search_401.status, 401);
        let dup_401 = e
            .send(
                Method::GET,
                &format!("/contacts/search/duplicate?locationId={LOC}&email=a@b.c"),
                Some("bad"),
                Some(V),
                None,
            )
            .await;
        specs.check("contacts", "/contacts/search/duplicate", "get", &dup_401);

        let add = e
            .call(
                Method::POST,
                &p("/contacts/{contactId}/tags"),
                Some(json!({"tags": ["x", "y"]})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/tags", "post", &add);
        let remove = e
            .call(
                Method::DELETE,
                &p("/contacts/{contactId}/tags"),
                Some(json!({"tags": ["x"]})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/tags", "delete", &remove);
        let bad_tags = e
            .call(
                Method::POST,
                &p("/contacts/{contactId}/tags"),
                Some(json!({"tags": "x"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/tags", "post", &bad_tags);

        let task = e
            .call(
                Method::POST,
                &p("/contacts/{contactId}/tasks"),
                Some(json!({"title": "t", "body": "b", "dueDate": "2030-01-01T00:00:00Z", "completed": false,
                    "assignedTo": "u1"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/tasks", "post", &task);
        let tid = task.body["task"]["id"].as_str().expect("id").to_owned();
        let t = |s: &str| p(s).replace("{taskId}", &tid);
        let tasks = e
            .call(Method::GET, &p("/contacts/{contactId}/tasks"), None)
            .await;
        specs.check("contacts", "/contacts/{contactId}/tasks", "get", &tasks);
        let one = e
            .call(
                Method::GET,
                &t("/contacts/{contactId}/tasks/{taskId}"),
                None,
            )
            .await;
        specs.check(
            "contacts",
            "/contacts/{contactId}/tasks/{taskId}",
            "get",
            &one,
        );
        let upd = e
            .call(
                Method::PUT,
                &t("/contacts/{contactId}/tasks/{taskId}"),
                Some(json!({"title": "u"})),
            )
            .await;
        specs.check(
            "contacts",
            "/contacts/{contactId}/tasks/{taskId}",
            "put",
            &upd,
        );
        let done = e
            .call(
                Method::PUT,
                &t("/contacts/{contactId}/tasks/{taskId}/completed"),
                Some(json!({"completed": true})),
            )
            .await;
        specs.check(
            "contacts",
            "/contacts/{contactId}/tasks/{taskId}/completed",
            "put",
            &done,
        );
        let bad_task = e
            .call(
                Method::POST,
                &p("/contacts/{contactId}/tasks"),
                Some(json!({"title": "t"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/tasks", "post", &bad_task);
        let del_task = e
            .call(
                Method::DELETE,
                &t("/contacts/{contactId}/tasks/{taskId}"),
                None,
            )
            .await;
        specs.check(
            "contacts",
            "/contacts/{contactId}/tasks/{taskId}",
            "delete",
            &del_task,
        );

        let note = e
            .call(
                Method::POST,
                &p("/contacts/{contactId}/notes"),
                Some(json!({"body": "n", "title": "Follow-up", "color": "#FFAA00", "pinned": true, "userId": "u"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/notes", "post", &note);
        let nid = note.body["note"]["id"].as_str().expect("id").to_owned();
        let n = |s: &str| p(s).replace("{id}", &nid);
        let notes = e
            .call(Method::GET, &p("/contacts/{contactId}/notes"), None)
            .await;
        specs.check("contacts", "/contacts/{contactId}/notes", "get", &notes);
        let one = e
            .call(Method::GET, &n("/contacts/{contactId}/notes/{id}"), None)
            .await;
        specs.check("contacts", "/contacts/{contactId}/notes/{id}", "get", &one);
        let upd = e
            .call(
                Method::PUT,
                &n("/contacts/{contactId}/notes/{id}"),
                Some(json!({"body": "m"})),
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}/notes/{id}", "put", &upd);
        let del = e
            .call(Method::DELETE, &n("/contacts/{contactId}/notes/{id}"), None)
            .await;
        specs.check(
            "contacts",
            "/contacts/{contactId}/notes/{id}",
            "delete",
            &del,
        );

        e.ghl
            .seed_appointments(
                &[json!({"contactId": id, "startTime": "2030-01-01T09:00:00Z",
                "title": "Call", "assignedUserId": "u1", "users": ["u2"], "notes": "n",
                "address": "Zoom", "groupId": "g1"})],
            )
            .expect("appointment");
        let appts = e
            .call(Method::GET, &p("/contacts/{contactId}/appointments"), None)
            .await;
        specs.check(
            "contacts",
            "/contacts/{contactId}/appointments",
            "get",
            &appts,
        );

        let unauthorized = e
            .send(
                Method::GET,
                &p("/contacts/{contactId}"),
                Some("nope"),
                Some(V),
                None,
            )
            .await;
        specs.check("contacts", "/contacts/{contactId}", "get", &unauthorized);
        let not_found = e
            .call(Method::GET, "/contacts/doesNotExist00000000", None)
            .await;
        specs.check("contacts", "/contacts/{contactId}", "get", &not_found);
        let del = e
            .call(Method::DELETE, &p("/contacts/{contactId}"), None)
            .await;
        specs.check("contacts", "/contacts/{contactId}", "delete", &del);
        // Not simulated, so not checked: /contacts/{id}/followers, /campaigns, /workflow,
        // /contacts/bulk/tags/update/{type}, /contacts/bulk/business (outside the sync's needs).
        e.ghl.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn business_endpoints_match_the_official_response_schemas() {
        let specs = Specs::load();
        let e = env().await;
        let create = e
            .call(
                Method::POST,
                "/businesses/",
                Some(json!({"name": "Microsoft", "locationId": LOC, "phone": "+18832327657",
                    "email": "abc@microsoft.com", "website": "microsoft.com", "address": "street",
                    "city": "new york", "postalCode": "12312312", "state": "new york", "country": "us",
                    "description": "d"})),
            )
            .await;
        specs.check("businesses", "/businesses/", "post", &create);
        let bid = create.body["buiseness"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let path = format!("/businesses/{bid}");
        let get = e.call(Method::GET, &path, None).await;
        specs.check("businesses", "/businesses/{businessId}", "get", &get);
        let list = e
            .call(
                Method::GET,
                &format!("/businesses/?locationId={LOC}&limit=10&skip=0"),
                None,
            )
            .await;
        specs.check("businesses", "/businesses/", "get", &list);
        let put = e
            .call(Method::PUT, &path, Some(json!({"name": "MS"})))
            .await;
        specs.check("businesses", "/businesses/{businessId}", "put", &put);
        let bad = e
            .call(Method::PUT, &path, Some(json!({"locationId": LOC})))
            .await;
        specs.check("businesses", "/businesses/{businessId}", "put", &bad);
        let del = e.call(Method::DELETE, &path, None).await;
        specs.check("businesses", "/businesses/{businessId}", "delete", &del);
        e.ghl.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn oauth_endpoints_match_the_official_response_schemas() {
        let specs = Specs::load();
        let e = env().await;
        e.ghl
            .register_oauth_client(OAuthClientSpec::default())
            .expect("client");
        let company = e.ghl.dump_location(LOC).expect("dump")["location"]["companyId"]
            .as_str()
            .expect("company")
            .to_owned();
        let code = e
            .ghl
            .issue_bulk_install_code("sandbox-client", &company, &[LOC.to_owned()], true, None)
            .expect("code");
        let token = e
            .form(
                "/oauth/token",
                &[
                    ("client_id", "sandbox-client"),
                    ("client_secret", "sandbox-secret"),
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                ],
                None,
            )
            .await;
        specs.check("oauth", "/oauth/token", "post", &token);
        let bad_code = e
            .form(
                "/oauth/token",
                &[
                    ("client_id", "sandbox-client"),
                    ("client_secret", "sandbox-secret"),
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                ],
                None,
            )
            .await;
        specs.check("oauth", "/oauth/token", "post", &bad_code);
        let agency = token.body["access_token"].as_str().expect("token");
        let loc_token = e
            .form(
                "/oauth/locationToken",
                &[("companyId", &company), ("locationId", LOC)],
                Some(agency),
            )
            .await;
        specs.check("oauth", "/oauth/locationToken", "post", &loc_token);
        let not_installed = e
            .form(
                "/oauth/locationToken",
                &[("companyId", &company), ("locationId", OTHER_LOC)],
                Some(agency),
            )
            .await;
        assert_eq!(not_installed.status, 400);
        specs.check("oauth", "/oauth/locationToken", "post", &not_installed);
        let by_pit = e
            .form(
                "/oauth/locationToken",
                &[("companyId", &company), ("locationId", LOC)],
                Some(&e.token),
            )
            .await;
        specs.check("oauth", "/oauth/locationToken", "post", &by_pit);
        let q = format!("companyId={company}&appId=app-sandbox-client");
        let listed = e
            .send(
                Method::GET,
                &format!("/oauth/installedLocations?{q}"),
                Some(agency),
                Some(V),
                None,
            )
            .await;
        assert_eq!(listed.body["locations"].as_array().map(Vec::len), Some(2));
        specs.check("oauth", "/oauth/installedLocations", "get", &listed);
        let missing = e
            .send(
                Method::GET,
                "/oauth/installedLocations",
                Some(agency),
                Some(V),
                None,
            )
            .await;
        specs.check("oauth", "/oauth/installedLocations", "get", &missing);
        let wrong_company = e
            .send(
                Method::GET,
                "/oauth/installedLocations?companyId=x&appId=app-sandbox-client",
                Some(agency),
                Some(V),
                None,
            )
            .await;
        specs.check("oauth", "/oauth/installedLocations", "get", &wrong_company);
        let by_location = e
            .send(
                Method::GET,
                &format!("/oauth/installedLocations?{q}"),
                Some(&e.token),
                Some(V),
                None,
            )
            .await;
        specs.check("oauth", "/oauth/installedLocations", "get", &by_location);
        e.ghl.shutdown().await.expect("shutdown");
    }
}

/// `null` only where the DTO marks a property `nullable` (the OpenAPI spec): a task's
/// `assignedTo` and a contact's `postalCode` are refused with 422; a contact's `email` on
/// update is cleared.
#[tokio::test]
async fn null_is_refused_where_the_spec_has_no_nullable() {
    let e = env().await;
    let contact = e
        .create_contact(json!({"firstName": "Nula", "email": "n@x.com"}))
        .await;
    let id = contact["id"].as_str().expect("id").to_owned();
    let task = e
        .call(
            Method::POST,
            &format!("/contacts/{id}/tasks"),
            Some(json!({"title": "T", "dueDate": "2030-01-01T10:00:00.000Z", "completed": false})),
        )
        .await;
    let task_id = task.body["task"]["id"].as_str().expect("id").to_owned();
    let unassign = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}/tasks/{task_id}"),
            Some(json!({"assignedTo": null})),
        )
        .await;
    assert_eq!(unassign.status, 422, "{:?}", unassign.body);
    assert!(
        unassign
            .body
            .to_string()
            .contains("assignedTo must be a string"),
        "{:?}",
        unassign.body
    );
    let no_postcode = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"postalCode": null})),
        )
        .await;
    assert_eq!(no_postcode.status, 422, "{:?}", no_postcode.body);
    let no_email = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"email": null})),
        )
        .await;
    assert_eq!(no_email.status, 200, "{:?}", no_email.body);
    assert!(
        no_email.body["contact"]["email"].is_null(),
        "{:?}",
        no_email.body
    );
}

/// `dndSettings` on a write: declared channels only (`RCS`, which reads may carry, is
/// refused), each with a known status; by default the object replaces the contact's
/// channels (`GhlConfig::dnd_write`).
#[tokio::test]
async fn dnd_settings_take_declared_channels_and_replace_by_default() {
    let e = env().await;
    let contact = e
        .create_contact(json!({"firstName": "Dora", "email": "d@x.com",
                               "dndSettings": {"Call": {"status": "active"}, "Email": {"status": "active"}}}))
        .await;
    let id = contact["id"].as_str().expect("id").to_owned();
    let rcs = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"dndSettings": {"RCS": {"status": "active"}}})),
        )
        .await;
    assert_eq!(rcs.status, 422, "{:?}", rcs.body);
    assert!(
        rcs.body.to_string().contains("RCS should not exist"),
        "{:?}",
        rcs.body
    );
    let odd = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"dndSettings": {"SMS": {"status": "sometimes"}}})),
        )
        .await;
    assert_eq!(odd.status, 422, "{:?}", odd.body);
    let sms = e
        .call(
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"dndSettings": {"SMS": {"status": "active"}}})),
        )
        .await;
    assert_eq!(sms.status, 200, "{:?}", sms.body);
    let dnd = &sms.body["contact"]["dndSettings"];
    assert_eq!(dnd["SMS"]["status"], "active");
    assert!(dnd.get("Call").is_none(), "replaced, not merged: {dnd}");
}
