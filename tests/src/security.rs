//! Helpers of the security checks, shared with the chaos suite:
//!
//! - [`Planted`]: known secret values planted into a run, and a scanner that looks for each of
//!   them in logs, dumps and files — raw, JSON-escaped, URL-encoded, hex and base64 (standard
//!   and URL-safe, padded or not, at every byte alignment, so a secret inside a longer base64
//!   blob is found too). A [`Leak`] names the secret and the encoding, never the value;
//! - [`WebhookSigner`]: an Ed25519 key that signs webhook bodies as GHL does
//!   (`x-ghl-signature`, API.md §9.3), for forged and genuine deliveries;
//! - [`raw_http`]: one HTTP/1.1 exchange written byte for byte, for the header games a normal
//!   client will not play (upper-case names, repeated headers, whitespace, chunked bodies);
//! - [`pg_dump`] and [`sqlite_bytes`]: what an attacker with the database files would read.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Shorter values would match by chance in unrelated text.
pub const MIN_SECRET_LEN: usize = 12;

/// One form in which a secret could appear.
#[derive(Debug, Clone)]
struct Needle {
    label: String,
    encoding: &'static str,
    bytes: Vec<u8>,
}

/// Known secret values planted into a run, to be searched for afterwards.
#[derive(Debug, Clone, Default)]
pub struct Planted {
    needles: Vec<Needle>,
    labels: Vec<String>,
}

/// A planted value found where it must not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The secret's label (`"GHL access token"`), never its value.
    pub secret: String,
    /// How it was written: `raw`, `url-encoded`, `base64`…
    pub encoding: &'static str,
    /// The file or stream it was found in.
    pub source: String,
    /// 1-based line, for text sources.
    pub line: Option<usize>,
    /// The text around the hit with the value itself masked.
    pub context: String,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) in {}", self.secret, self.encoding, self.source)?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        write!(f, ": …{}…", self.context)
    }
}

/// Every character outside `A-Z a-z 0-9 - . _ ~` as `%XX` (RFC 3986 §2.1 unreserved).
fn percent_encode(value: &[u8], upper: bool) -> String {
    let mut out = String::new();
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The base64 characters that depend only on `value` when it sits at byte offset `shift`
/// (0, 1 or 2) of a longer encoded blob.
fn base64_core(engine: &impl base64::Engine, value: &[u8], shift: usize) -> Option<String> {
    let mut padded = vec![0u8; shift];
    padded.extend_from_slice(value);
    let encoded = engine.encode(&padded);
    // Characters are 6-bit groups: the first one made only of `value`'s bits starts at bit
    // 8·shift (rounded up to a group), the last one ends at bit 8·(shift + len).
    let start = (8 * shift).div_ceil(6);
    let end = (8 * (shift + value.len())) / 6;
    (end > start && end - start >= MIN_SECRET_LEN).then(|| encoded[start..end].to_owned())
}

impl Planted {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plant `value` under `label`. Values shorter than [`MIN_SECRET_LEN`] are refused: a
    /// scan for them would prove nothing.
    pub fn add(&mut self, label: impl Into<String>, value: impl AsRef<[u8]>) -> &mut Self {
        let label = label.into();
        let value = value.as_ref();
        assert!(
            value.len() >= MIN_SECRET_LEN,
            "planted secret {label:?} is shorter than {MIN_SECRET_LEN} bytes; plant a longer one"
        );
        let mut forms: Vec<(&'static str, Vec<u8>)> = vec![("raw", value.to_vec())];
        if let Ok(text) = std::str::from_utf8(value) {
            let json = serde_json::to_string(text).unwrap_or_default();
            forms.push(("json-escaped", json.trim_matches('"').as_bytes().to_vec()));
            let form: String = url::form_urlencoded::byte_serialize(value).collect();
            forms.push(("form-urlencoded", form.into_bytes()));
        }
        forms.push(("url-encoded", percent_encode(value, true).into_bytes()));
        forms.push(("url-encoded", percent_encode(value, false).into_bytes()));
        forms.push(("hex", hex_lower(value).into_bytes()));
        forms.push(("hex", hex_lower(value).to_uppercase().into_bytes()));
        for shift in 0..3 {
            for (name, core) in [
                ("base64", base64_core(&STANDARD, value, shift)),
                ("base64url", base64_core(&URL_SAFE, value, shift)),
            ] {
                if let Some(core) = core {
                    forms.push((name, core.into_bytes()));
                }
            }
        }
        forms.push(("base64", STANDARD.encode(value).into_bytes()));
        forms.push(("base64", STANDARD_NO_PAD.encode(value).into_bytes()));
        forms.push(("base64url", URL_SAFE.encode(value).into_bytes()));
        forms.push(("base64url", URL_SAFE_NO_PAD.encode(value).into_bytes()));
        let mut seen = std::collections::HashSet::new();
        for (encoding, bytes) in forms {
            if bytes.len() >= MIN_SECRET_LEN && seen.insert(bytes.clone()) {
                self.needles.push(Needle {
                    label: label.clone(),
                    encoding,
                    bytes,
                });
            }
        }
        self.labels.push(label);
        self
    }

    /// The labels planted so far.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Every planted value found in `haystack` (any bytes: a log, a dump, a database file).
    /// Text sources get line numbers.
    pub fn scan(&self, haystack: &[u8], source: &str) -> Vec<Leak> {
        let mut leaks = Vec::new();
        for n in &self.needles {
            let mut from = 0;
            while let Some(at) = find(&haystack[from..], &n.bytes) {
                let at = from + at;
                let line = haystack[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                let before = &haystack[at.saturating_sub(60)..at];
                let after = &haystack[(at + n.bytes.len()).min(haystack.len())
                    ..(at + n.bytes.len() + 60).min(haystack.len())];
                leaks.push(Leak {
                    secret: n.label.clone(),
                    encoding: n.encoding,
                    source: source.to_owned(),
                    line: Some(line),
                    context: format!(
                        "{}<{}>{}",
                        String::from_utf8_lossy(before),
                        n.label,
                        String::from_utf8_lossy(after)
                    ),
                });
                from = at + 1;
            }
        }
        leaks
    }

    /// [`Self::scan`] over files; a file that cannot be read is an error, not a pass.
    pub fn scan_files(&self, paths: &[&Path]) -> anyhow::Result<Vec<Leak>> {
        let mut leaks = Vec::new();
        for p in paths {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            leaks.extend(self.scan(&bytes, &p.display().to_string()));
        }
        Ok(leaks)
    }
}

/// Fail with every leak listed (labels and masked context only).
pub fn assert_no_leaks(leaks: &[Leak], what: &str) {
    if leaks.is_empty() {
        return;
    }
    let mut listed: Vec<String> = leaks.iter().map(|l| format!("  - {l}")).collect();
    listed.dedup();
    panic!(
        "{} planted secret value(s) found in {what}:\n{}",
        leaks.len(),
        listed.join("\n")
    );
}

fn hex_lower(value: &[u8]) -> String {
    value.iter().map(|b| format!("{b:02x}")).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A random printable secret of `len` characters with characters that URL and JSON encoders
/// change (`+`, `/`, `=`, `&`, `"`), so every encoding of it differs from the raw value.
pub fn random_secret(prefix: &str, len: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=&-_";
    let mut rng = rand::thread_rng();
    let body: String = (0..len)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect();
    format!("{prefix}{body}")
}

// ------------------------------------------------------------------------------- webhooks

/// An Ed25519 key that signs webhook bodies as GHL does: base64 of the signature over the raw
/// bytes, sent in `x-ghl-signature` (API.md §9.3).
pub struct WebhookSigner {
    key: ed25519_dalek::SigningKey,
}

impl WebhookSigner {
    pub fn generate() -> Self {
        Self {
            key: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The public key as SPKI PEM, the form `ghl.webhook_ed25519_key` takes.
    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap_or_default()
    }

    pub fn signature(&self, body: &[u8]) -> [u8; 64] {
        self.key.sign(body).to_bytes()
    }

    /// The header value for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        STANDARD.encode(self.signature(body))
    }
}

/// What the server answered to a raw request.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// A `POST` request as bytes: the headers exactly as given (names, case, repeats and spacing
/// untouched), `Host`, `Connection: close` and a `Content-Length` of `body` added unless
/// `chunked`, which sends the body in 8 KiB chunks instead.
pub fn post_request(path: &str, headers: &[(&str, &str)], body: &[u8], chunked: bool) -> Vec<u8> {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}:{value}\r\n"));
    }
    let mut out;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        out = head.into_bytes();
        for chunk in body.chunks(8192) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        out = head.into_bytes();
        out.extend_from_slice(body);
    }
    out
}

/// Send `request` as it is and read the answer to the end (the request says
/// `Connection: close`). The request is written while the answer is read, so a server that
/// answers early (413) and stops reading does not deadlock the exchange.
pub async fn raw_http(addr: SocketAddr, request: Vec<u8>) -> anyhow::Result<RawAnswer> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // An early answer may close the connection before the body is written: expected.
        let _ = wr.write_all(&request).await;
        let _ = wr.flush().await;
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the answer arrived (the server stopped reading our body).
                Err(_) if !buf.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await
    .context("no answer within 30 s")?;
    read.context("reading the answer")?;
    let _ = writer.await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {head:?}"))?;
    Ok(RawAnswer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

// ------------------------------------------------------------------------------- dumps

/// `pg_dump` of the database at `url` (schema and data, plain SQL). Fails, saying how to get
/// the tool, when it is not installed.
pub fn pg_dump(url: &str) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--no-privileges", "--dbname", url])
        .output()
        .context(
            "running pg_dump (install the PostgreSQL client tools: apt-get install postgresql-client)",
        )?;
    if !out.status.success() {
        bail!(
            "pg_dump failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// The bytes of a SQLite database file and its `-wal` and `-journal` companions when present:
/// what a copy of the data folder holds, free pages included.
pub fn sqlite_bytes(db: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::fs::read(db).with_context(|| format!("reading {}", db.display()))?;
    for suffix in ["-wal", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(extra) = std::fs::read(Path::new(&p)) {
            bytes.extend_from_slice(&extra);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_of_a_planted_value_is_found() {
        // "~~~" makes the base64 alphabets differ (it encodes to "fn5+"), so each form is told
        // apart from the other.
        let secret = "tok+en/wi~~~th=chars&\"quote\"-0123456789";
        let mut p = Planted::new();
        p.add("token", secret);
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let in_blob = STANDARD.encode(format!("{{\"user\":\"x\",\"t\":\"{secret}\"}}"));
        for (text, encoding) in [
            (format!("a {secret} b"), "raw"),
            (
                serde_json::json!({ "m": secret }).to_string(),
                "json-escaped",
            ),
            (format!("GET /x?apiKey={form}"), "form-urlencoded"),
            (
                format!("?t={}", percent_encode(secret.as_bytes(), false)),
                "url-encoded",
            ),
            (format!("h={}", hex_lower(secret.as_bytes())), "hex"),
            (format!("Basic {}", STANDARD.encode(secret)), "base64"),
            (format!("blob {in_blob} end"), "base64"),
            (format!("u={}", URL_SAFE_NO_PAD.encode(secret)), "base64url"),
        ] {
            let leaks = p.scan(text.as_bytes(), "test");
            assert!(
                leaks.iter().any(|l| l.encoding == encoding),
                "{encoding} not found in {text}: {leaks:?}"
            );
            assert!(leaks.iter().all(|l| !l.context.contains(secret)));
        }
        assert!(
            p.scan(b"nothing to see here, tok+en/with", "test")
                .is_empty()
        );
    }
}
