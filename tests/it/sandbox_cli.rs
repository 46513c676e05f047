//! `ghl-ekyte-sync sandbox` as a person trying the API by hand uses it: the real binary,
//! its printed credentials, and the printed `curl` lines pasted into a shell.

use std::process::Stdio;
use std::time::Duration;

use e2e::support::binary_command;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

const WITHIN: Duration = Duration::from_secs(60);

/// Read stdout until the lines read so far parse as one JSON document.
async fn read_json(out: &mut BufReader<ChildStdout>) -> Value {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = out
            .read_line(&mut line)
            .await
            .expect("reading the sandbox's stdout");
        assert!(
            n > 0,
            "the sandbox closed stdout before a whole JSON document; got: {text}"
        );
        text.push_str(&line);
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            return v;
        }
    }
}

/// Read stdout until a line starting with `prefix` (trimmed), returning every line read.
async fn read_until(out: &mut BufReader<ChildStdout>, prefix: &str, count: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen = 0;
    while seen < count {
        let mut line = String::new();
        let n = out
            .read_line(&mut line)
            .await
            .expect("reading the sandbox's stdout");
        assert!(n > 0, "stdout closed early; read: {lines:?}");
        if line.trim_start().starts_with(prefix) {
            seen += 1;
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// Run a pasted command line the way a shell does; its stdout, which must be JSON.
async fn paste(line: &str) -> Value {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .output()
        .await
        .expect("run sh (and curl: apt-get install curl)");
    assert!(
        out.status.success(),
        "`{line}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`{line}` did not answer JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn start(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = binary_command()
        .await
        .arg("sandbox")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start `ghl-ekyte-sync sandbox`");
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    (child, out)
}

/// SIGTERM, as Ctrl-C or a process manager stops it; the exit must be clean.
async fn stop(mut child: Child) {
    let pid = child.id().expect("the sandbox is running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(WITHIN, child.wait())
        .await
        .expect("the sandbox did not stop within a minute of SIGTERM")
        .expect("waiting for the sandbox");
    assert!(
        exit.success(),
        "the sandbox exited with {exit} after SIGTERM"
    );
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    let found = path.split('.').fold(v, |v, k| &v[k]);
    let s = found
        .as_str()
        .unwrap_or_else(|| panic!("{path} is missing or not a string in {v:#}"));
    assert!(!s.trim().is_empty(), "{path} is empty");
    s
}

fn id(v: &Value, path: &str) -> i64 {
    let found = path.split('.').fold(v, |v, k| &v[k]);
    let n = found
        .as_i64()
        .unwrap_or_else(|| panic!("{path} is missing or not an integer in {v:#}"));
    assert!(n > 0, "{path} is {n}");
    n
}

#[tokio::test]
async fn sandbox_json_prints_every_credential_and_its_curl_lines_work_when_pasted() {
    let (child, mut out) = start(&["--json", "--contacts", "2"]).await;
    let creds = tokio::time::timeout(WITHIN, read_json(&mut out))
        .await
        .expect("no credentials on stdout within a minute");

    // GHL: what a client of the API or of the Marketplace app needs.
    let ghl_base = text(&creds, "ghl.base_url");
    assert!(ghl_base.starts_with("http://127.0.0.1:"), "{ghl_base}");
    let location = text(&creds, "ghl.location_id");
    text(&creds, "ghl.private_integration_token");
    text(&creds, "ghl.client_id");
    text(&creds, "ghl.client_secret");
    let pem = text(&creds, "ghl.webhook_public_key_pem");
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----"),
        "not a PEM public key: {pem}"
    );
    assert_eq!(text(&creds, "ghl.version_header"), "2021-07-28");
    let contact = text(&creds, "ghl.sample_contact_id");

    // eKyte: the three surfaces' keys and the ids a task needs.
    let ekyte_base = text(&creds, "ekyte.base_url");
    assert!(ekyte_base.starts_with("http://127.0.0.1:"), "{ekyte_base}");
    id(&creds, "ekyte.company_id");
    text(&creds, "ekyte.api_key");
    let email = text(&creds, "ekyte.user_email");
    assert!(email.contains('@'), "not an e-mail: {email}");
    let mcp_token = text(&creds, "ekyte.mcp_token");
    let mcp_url = text(&creds, "ekyte.mcp_url");
    id(&creds, "ekyte.workspace_id");
    id(&creds, "ekyte.task_type_id");
    assert!(
        mcp_url.ends_with(&format!("token={mcp_token}")),
        "the MCP url does not carry the MCP token: {mcp_url}"
    );

    // The printed lines, pasted into a shell.
    let ghl_line = text(&creds, "curl.ghl");
    let ghl = paste(ghl_line).await;
    assert_eq!(
        ghl["contact"]["id"], contact,
        "the GHL line did not read the sample contact: {ghl:#}"
    );
    assert_eq!(ghl["contact"]["locationId"], location, "{ghl:#}");
    let ekyte_line = text(&creds, "curl.ekyte");
    let ekyte = paste(ekyte_line).await;
    assert!(
        ekyte.is_array() || ekyte.is_object(),
        "the eKyte line answered {ekyte:#}"
    );

    // The MCP token is the printed user's.
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(mcp_url)
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "get_current_user", "arguments": {}},
        }))
        .send()
        .await
        .expect("POST the MCP url")
        .json()
        .await
        .expect("the MCP answer is JSON");
    assert!(
        answer.to_string().contains(email),
        "get_current_user through the printed MCP url is not {email}: {answer:#}"
    );

    stop(child).await;
}

#[tokio::test]
async fn sandbox_table_prints_the_same_credentials_and_two_curl_lines() {
    let (child, mut out) = start(&["--contacts", "1"]).await;
    let lines = tokio::time::timeout(WITHIN, read_until(&mut out, "curl ", 2))
        .await
        .expect("no curl lines on stdout within a minute");
    let all = lines.join("\n");
    for label in [
        "base URL",
        "location",
        "Private Integration Token",
        "client id",
        "client secret",
        "webhook public key",
        "company",
        "API key",
        "e-mail",
        "MCP token",
        "MCP URL",
        "workspace",
        "task type",
    ] {
        assert!(
            all.to_lowercase().contains(&label.to_lowercase()),
            "the table has no {label:?}:\n{all}"
        );
    }
    let curls: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl "))
        .collect();
    for line in curls {
        paste(line).await;
    }
    stop(child).await;
}
