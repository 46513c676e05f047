//! The webhook verifier on any headers and body: never panics, and never accepts. The
//! fuzzer holds no private key of the configured keys (a fixed test key and GHL's published
//! ones), so any accepted input would be a forgery.
//!
//! Input: byte 0 chooses which headers are sent; then `x-ghl-signature`, `x-wh-signature`
//! and the body, separated by 0xFF bytes. Half of the runs sign the body with an unknown key
//! and put the fuzzer's bytes around it (a near-miss of a real signature).
#![no_main]

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use ghl::webhook::{Signatures, WebhookConfig, WebhookVerifier};
use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::OnceLock;

struct Setup {
    verifier: WebhookVerifier,
    /// Not among the verifier's keys.
    stranger: ed25519_dalek::SigningKey,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let trusted = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pem = trusted
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("pem");
        let verifier = WebhookVerifier::new(&WebhookConfig {
            ed25519_keys: vec![pem, ghl::webhook::PUBLISHED_ED25519_KEY.to_owned()],
            ..WebhookConfig::default()
        })
        .expect("verifier");
        Setup {
            verifier,
            stranger: ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0xFF);
    let ghl_sig = parts.next().unwrap_or_default();
    let legacy = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let s = setup();
    let mut headers = HeaderMap::new();
    let mut add = |name: &'static str, value: &[u8]| {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), v);
        }
    };
    if mode & 1 != 0 {
        if mode & 4 != 0 {
            // A real signature by a key the verifier does not trust, with fuzzed bytes around.
            let sig = base64::engine::general_purpose::STANDARD
                .encode(s.stranger.sign(body).to_bytes());
            let mut v = ghl_sig.to_vec();
            v.extend_from_slice(sig.as_bytes());
            add("x-ghl-signature", &v);
        } else {
            add("x-ghl-signature", ghl_sig);
        }
    }
    if mode & 2 != 0 {
        add("x-wh-signature", legacy);
    }
    if mode & 8 != 0 {
        add("x-ghl-signature", legacy);
    }
    let now = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("a fixed instant");
    let result = s.verifier.verify(Signatures::from_headers(&headers), body, now);
    match result {
        Ok(event) => panic!("accepted a forged webhook: {event:?}"),
        Err(e) => assert!(matches!(e.http_status(), 400 | 401)),
    }
});
