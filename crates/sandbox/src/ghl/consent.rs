//! The consent page a person sees at `chooselocation` (API.md §7): the Marketplace's
//! authorization page, served as plain HTML so that a browser can finish an install against
//! the simulator. The person is the simulated agency's admin: they may install the app on one
//! of the agency's sub-accounts, or agency-wide on the sub-accounts they tick (a bulk
//! installation, as [`Core::issue_bulk_code`] records it), or deny.
//!
//! `GET /v2/oauth/chooselocation?response_type=code&redirect_uri&client_id&scope&state` (and
//! the older path without `/v2`) shows the choice; the form posts back to the same path,
//! which sends the browser to `redirect_uri` with `code` (and the `state` it was given), or
//! with `error=access_denied`. A request GHL would refuse (no such client, a response type
//! other than `code`, no usable `redirect_uri`) gets a 400 page and no redirect.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::core::Core;

type Shared = Arc<Core>;

const PATHS: [&str; 2] = ["/v2/oauth/chooselocation", "/oauth/chooselocation"];

pub fn router(core: Shared) -> Router {
    let mut r = Router::new();
    for p in PATHS {
        r = r.route(p, get(show).post(decide));
    }
    r.with_state(core)
}

/// The authorization request, as the app sent it.
#[derive(Debug, Default)]
struct Request {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    response_type: String,
}

impl Request {
    fn parse(pairs: &[(String, String)]) -> Self {
        let mut r = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "client_id" => r.client_id.clone_from(v),
                "redirect_uri" => r.redirect_uri.clone_from(v),
                "scope" => r.scope.clone_from(v),
                "state" => r.state = Some(v.clone()),
                "response_type" => r.response_type.clone_from(v),
                _ => {}
            }
        }
        r
    }

    /// The redirect target, when GHL would accept the request; else why not.
    fn check(&self, core: &Core) -> Result<url::Url, String> {
        if self.response_type != "code" {
            return Err(format!(
                "response_type must be \"code\", not {:?}",
                self.response_type
            ));
        }
        if self.client_id.is_empty() {
            return Err("client_id is missing".into());
        }
        // API.md §7 gives `scope` in every authorize URL and says nothing of a request
        // without it; refused here rather than granted everything, so an app that forgets it
        // finds out before its first call is refused.
        if self.scopes().is_none() {
            return Err("scope is missing: name the scopes the app needs".into());
        }
        core.auth()
            .client_app(&self.client_id)
            .map_err(|_| format!("no app has the client id {:?}", self.client_id))?;
        let target = url::Url::parse(&self.redirect_uri)
            .map_err(|e| format!("redirect_uri {:?} is not a URL: {e}", self.redirect_uri))?;
        if !matches!(target.scheme(), "http" | "https") {
            return Err(format!(
                "redirect_uri {:?} is not http(s)",
                self.redirect_uri
            ));
        }
        Ok(target)
    }

    fn scopes(&self) -> Option<Vec<String>> {
        let s: Vec<String> = self.scope.split_whitespace().map(str::to_owned).collect();
        (!s.is_empty()).then_some(s)
    }
}

fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn page(status: StatusCode, body: Markup) -> Response {
    let mut r = (
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "HighLevel (simulated): authorize an app" }
                    style { "body{font-family:sans-serif;max-width:44em;margin:2em auto}fieldset{margin:1em 0}" }
                }
                body { (body) }
            }
        }
        .into_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn refused(why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        html! { h1 { "This authorization request is invalid" } p #error { (why) } },
    )
}

fn hidden(r: &Request) -> Markup {
    html! {
        input type="hidden" name="response_type" value=(r.response_type);
        input type="hidden" name="client_id" value=(r.client_id);
        input type="hidden" name="redirect_uri" value=(r.redirect_uri);
        input type="hidden" name="scope" value=(r.scope);
        @if let Some(s) = &r.state { input type="hidden" name="state" value=(s); }
    }
}

async fn show(State(core): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let r = Request::parse(&pairs(q.unwrap_or_default().as_bytes()));
    if let Err(why) = r.check(&core) {
        return refused(&why);
    }
    let company = core.company_id.clone();
    let locations: Vec<(String, String)> = core
        .store()
        .company_locations(&company)
        .iter()
        .map(|l| (l.id.clone(), l.name.clone()))
        .collect();
    page(
        StatusCode::OK,
        html! {
            h1 { "Authorize " (r.client_id) }
            p { "Signed in as the admin of agency " code { (company) } "." }
            p { "The app asks for: " code #scopes { (r.scope) } }
            form #location method="post" {
                (hidden(&r))
                input type="hidden" name="decision" value="location";
                fieldset {
                    legend { "Install on one sub-account" }
                    select name="location" {
                        @for (id, name) in &locations { option value=(id) { (name) " (" (id) ")" } }
                    }
                    " " button #allow-location type="submit" { "Allow" }
                }
            }
            form #agency method="post" {
                (hidden(&r))
                input type="hidden" name="decision" value="agency";
                fieldset {
                    legend { "Install agency-wide" }
                    @for (id, name) in &locations {
                        label { input type="checkbox" name="approved" value=(id) checked; " " (name) " (" (id) ")" } br;
                    }
                    label { input type="checkbox" name="install_to_future" value="true"; " and every sub-account created later" } br;
                    button #allow-agency type="submit" { "Allow for the agency" }
                }
            }
            form #deny method="post" {
                (hidden(&r))
                input type="hidden" name="decision" value="deny";
                button #deny type="submit" { "Deny" }
            }
        },
    )
}

async fn decide(State(core): State<Shared>, body: Bytes) -> Response {
    let form = pairs(&body);
    let r = Request::parse(&form);
    let mut target = match r.check(&core) {
        Ok(t) => t,
        Err(why) => return refused(&why),
    };
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let issued = match field("decision") {
        Some("location") => match field("location") {
            Some(l) => core
                .issue_code(&r.client_id, Some(l), None, r.scopes())
                .map(Some),
            None => return refused("choose a sub-account"),
        },
        Some("agency") => {
            let approved: Vec<String> = form
                .iter()
                .filter(|(k, _)| k == "approved")
                .map(|(_, v)| v.clone())
                .collect();
            let future = field("install_to_future") == Some("true");
            if approved.is_empty() && !future {
                return refused("tick at least one sub-account");
            }
            core.issue_bulk_code(
                &r.client_id,
                &core.company_id,
                &approved,
                future,
                r.scopes(),
            )
            .map(Some)
        }
        Some("deny") => Ok(None),
        _ => return refused("no decision"),
    };
    {
        let mut q = target.query_pairs_mut();
        match issued {
            Ok(Some(code)) => q.append_pair("code", &code),
            Ok(None) => q.append_pair("error", "access_denied"),
            Err(e) => return refused(&e.to_string()),
        };
        if let Some(s) = &r.state {
            q.append_pair("state", s);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}
