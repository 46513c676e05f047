//! The service's processes: workers and an ingress from the real binary, each with its output
//! appended to a log file of its own (every line is scanned for secrets afterwards), and
//! one-shot commands (`migrate`, `tenants add`, `sync full`, …) whose output is kept too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::services::tail;

/// How long a process counts as starting (connecting to the database and the broker).
const STARTUP: std::time::Duration = std::time::Duration::from_secs(20);

/// One long-running process and where its output goes.
struct Slot {
    name: String,
    started: std::time::Instant,
    args: Vec<String>,
    /// Its own settings on top of the fleet's (e.g. `GES_HTTP__BIND`).
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

/// Why a process is not running.
#[derive(Debug, Clone)]
pub struct Exit {
    pub name: String,
    pub status: String,
    pub log_tail: String,
}

/// Workers and ingress, started, killed and restarted by name.
pub struct Fleet {
    bin: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    slots: Vec<Slot>,
    /// Processes found dead without the test having killed them.
    pub crashes: Vec<Exit>,
    /// Processes that exited at start because the database or the broker was down.
    pub failed_starts: u32,
    pub kills: u32,
    pub restarts: u32,
    commands: u32,
}

impl Fleet {
    /// `bin` is the binary under test, `env` every process's environment (configuration and
    /// secrets), `logs` the folder the output files go to.
    pub fn new(bin: &Path, env: Vec<(String, String)>, logs: &Path) -> anyhow::Result<Self> {
        let bin = bin.to_path_buf();
        if !bin.exists() {
            bail!("the binary under test is missing at {}", bin.display());
        }
        std::fs::create_dir_all(logs)?;
        Ok(Self {
            bin,
            env,
            logs: logs.to_path_buf(),
            slots: Vec::new(),
            crashes: Vec::new(),
            failed_starts: 0,
            kills: 0,
            restarts: 0,
            commands: 0,
        })
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    fn spawn(&self, slot: &Slot) -> anyhow::Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&slot.log)?;
        let mut cmd = self.command(&slot.args);
        cmd.envs(slot.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out.try_clone()?)
            .stderr(out)
            // A test that fails half-way must not leave workers behind.
            .kill_on_drop(true);
        cmd.spawn()
            .with_context(|| format!("starting {} ({})", slot.name, self.bin.display()))
    }

    /// Start a long-running process `name` with `args` and settings of its own.
    pub fn start(&mut self, name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut slot = Slot {
            name: name.to_owned(),
            started: std::time::Instant::now(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: self.logs.join(format!("{name}.log")),
            child: None,
        };
        slot.child = Some(self.spawn(&slot)?);
        self.slots.push(slot);
        Ok(())
    }

    /// Names of the running processes whose name starts with `prefix`.
    pub fn names(&self, prefix: &str) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Start again the processes that exited on their own. One that could not reach the
    /// database or the broker while it was starting (the restart of either is part of the
    /// test) is a failed start, as Kubernetes would see it, and is restarted; any other exit
    /// is a crash.
    pub fn reap_and_revive(&mut self) -> anyhow::Result<()> {
        let mut dead = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log_tail = tail(&s.log, 20);
                let last_error = log_tail
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error: "))
                    .unwrap_or_default();
                let dependency_down = last_error.starts_with("error: cannot connect to");
                if dependency_down && s.started.elapsed() < STARTUP {
                    self.failed_starts += 1;
                } else {
                    self.crashes.push(Exit {
                        name: s.name.clone(),
                        status: status.to_string(),
                        log_tail,
                    });
                }
                s.child = None;
                dead.push(i);
            }
        }
        for i in dead {
            let child = self.spawn(&self.slots[i])?;
            self.slots[i].child = Some(child);
            self.slots[i].started = std::time::Instant::now();
            self.restarts += 1;
        }
        Ok(())
    }

    /// `kill -9` the process `name`, wait for it to be gone, and start it again.
    pub async fn kill_and_restart(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .slots
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("no process {name}"))?;
        if let Some(mut c) = self.slots[i].child.take() {
            // SIGKILL: no drain, no goodbye to the broker or the database.
            c.start_kill().ok();
            tokio::time::timeout(Duration::from_secs(10), c.wait())
                .await
                .with_context(|| format!("{name} did not die within 10 s of SIGKILL"))??;
            self.kills += 1;
        }
        let child = self.spawn(&self.slots[i])?;
        self.slots[i].child = Some(child);
        self.slots[i].started = std::time::Instant::now();
        self.restarts += 1;
        Ok(())
    }

    /// SIGTERM every process and wait for it to drain and exit; the exits that are not
    /// clean (status 0 within `grace`) are returned.
    pub async fn stop_all(&mut self, grace: Duration) -> Vec<Exit> {
        let mut bad = Vec::new();
        for s in &mut self.slots {
            if let Some(c) = s.child.as_ref()
                && let Some(pid) = c.id()
            {
                let _ = super::signal("TERM", pid);
            }
        }
        for s in &mut self.slots {
            let Some(mut c) = s.child.take() else {
                continue;
            };
            match tokio::time::timeout(grace, c.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => bad.push(Exit {
                    name: s.name.clone(),
                    status: status.to_string(),
                    log_tail: tail(&s.log, 20),
                }),
                Ok(Err(e)) => bad.push(Exit {
                    name: s.name.clone(),
                    status: format!("wait failed: {e}"),
                    log_tail: tail(&s.log, 20),
                }),
                Err(_) => {
                    c.start_kill().ok();
                    let _ = c.wait().await;
                    bad.push(Exit {
                        name: s.name.clone(),
                        status: format!("still running {grace:?} after SIGTERM (killed)"),
                        log_tail: tail(&s.log, 20),
                    });
                }
            }
        }
        bad
    }

    /// Run a one-shot command to its end (within `limit`); its output is kept in the logs
    /// folder and returned as stdout.
    pub async fn run(
        &mut self,
        args: &[&str],
        extra_env: &[(&str, &str)],
        limit: Duration,
    ) -> anyhow::Result<String> {
        self.commands += 1;
        let log = self.logs.join(format!(
            "cmd-{:03}-{}.log",
            self.commands,
            args.iter().take(2).copied().collect::<Vec<_>>().join("-")
        ));
        let mut cmd = self.command(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        cmd.envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .with_context(|| format!("`{}` took longer than {limit:?}", args.join(" ")))?
            .with_context(|| format!("running `{}`", args.join(" ")))?;
        let mut text = out.stdout.clone();
        text.extend_from_slice(&out.stderr);
        std::fs::write(&log, &text)?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}):\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&text)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every log file written so far (processes and commands).
    pub fn log_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.logs)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}
