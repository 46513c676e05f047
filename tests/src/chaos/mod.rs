//! The chaos suite's machinery (issue 9): its own RabbitMQ node and PostgreSQL cluster
//! ([`services`]), the service's processes from the real binary ([`fleet`]), and what the
//! test watches and asserts with ([`watch`]). The scenario itself is `tests/it/chaos.rs`.

pub mod fleet;
pub mod services;
pub mod watch;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

/// Send `sig` (`TERM`, `QUIT`, `KILL`, …) to `pid` with kill(1): std can only SIGKILL its own
/// children, and these signals mean different shutdowns to the servers.
pub fn signal(sig: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kill -s {sig} {pid} failed ({status})");
    }
    Ok(())
}

/// Check `condition` every `every` until it holds (true) or `deadline` passed (false).
pub async fn wait_for(
    deadline: Duration,
    every: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        // The polling interval of a condition with a deadline, not a guess at a duration.
        tokio::time::sleep(every).await;
    }
}
