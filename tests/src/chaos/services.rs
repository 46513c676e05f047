//! A RabbitMQ node and a PostgreSQL cluster of the chaos suite's own: started on free ports in
//! a temporary folder, restartable, and gone when dropped (even when the test panics). The
//! machine's shared services (127.0.0.1:5432 and :5672) are never touched.
//!
//! Both servers refuse to run as root (PostgreSQL) or are meant to run as their own user
//! (RabbitMQ), so when the test runs as root they are started as the `postgres` and
//! `rabbitmq` system users, through `CommandExt::uid/gid` (the child drops its groups too);
//! their folders are handed over to those users. As any other user they run as that user.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{signal, wait_for};

/// A system user to run a server as.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The effective user id of this process (from `/proc/self/status`).
fn euid() -> anyhow::Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no effective uid in /proc/self/status")
}

/// `Some(user)` when running as root (the server must drop to `name`), `None` otherwise.
fn run_as(name: &str) -> anyhow::Result<Option<RunAs>> {
    if euid()? != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return Ok(Some(RunAs {
                uid: f[2].parse().context("uid in /etc/passwd")?,
                gid: f[3].parse().context("gid in /etc/passwd")?,
            }));
        }
    }
    bail!(
        "the tests run as root, and the server must run as the system user {name:?}, which does not exist (install the server's package, which creates it)"
    )
}

/// A folder the server's user owns.
fn own_dir(path: &Path, user: Option<RunAs>) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    if let Some(u) = user {
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
            .with_context(|| format!("handing {} to uid {}", path.display(), u.uid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn write_owned(path: &Path, text: &str, user: Option<RunAs>) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if let Some(u) = user {
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A port nobody listens on right now (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The last lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn(mut cmd: Command, user: Option<RunAs>, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: the clean-up can stop the server and every child it forked.
        .process_group(0);
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd.spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

/// Stop a process group: `sig` to the leader, then SIGKILL to the group after `grace`.
fn stop_group(child: &mut Child, sig: &str, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = child.id();
    let _ = signal(sig, pid);
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever is left of the group (a server that ignored the signal, its children).
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

// ------------------------------------------------------------------------------- RabbitMQ

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A RabbitMQ node of our own: its own node name, ports, data and logs.
pub struct RabbitNode {
    dir: PathBuf,
    user: Option<RunAs>,
    pub port: u16,
    dist_port: u16,
    pub node: String,
    pub user_name: String,
    pub password: String,
    child: Option<Child>,
    pub restarts: u32,
}

impl RabbitNode {
    /// Start a node in `dir` (created) and wait until it accepts AMQP connections.
    pub async fn start(dir: &Path, password: &str, deadline: Duration) -> anyhow::Result<Self> {
        if !Path::new(RABBITMQ_SERVER).exists() {
            bail!(
                "{RABBITMQ_SERVER} is missing: the chaos suite starts its own RabbitMQ node and needs the rabbitmq-server package"
            );
        }
        let user = run_as("rabbitmq")?;
        own_dir(dir, user)?;
        let port = free_port()?;
        let mut dist_port = free_port()?;
        while dist_port == port {
            dist_port = free_port()?;
        }
        let node = format!(
            "ges-chaos-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        // rabbitmq.conf (new style). default_user/default_pass create our user on first boot
        // (and no guest): the password is one of the secrets the log scan looks for.
        write_owned(
            &dir.join("rabbitmq.conf"),
            &format!(
                "listeners.tcp.default = 127.0.0.1:{port}\n\
                 default_user = chaos\n\
                 default_pass = {password}\n\
                 loopback_users = none\n\
                 log.console = false\n\
                 log.file.level = info\n\
                 # a loaded CI machine must not trip the disk or memory alarms\n\
                 disk_free_limit.absolute = 50MB\n\
                 vm_memory_high_watermark.relative = 0.8\n"
            ),
            user,
        )?;
        write_owned(&dir.join("enabled_plugins"), "[].\n", user)?;
        // An empty env file, so /etc/rabbitmq/rabbitmq-env.conf (the shared node's) is not read.
        write_owned(&dir.join("rabbitmq-env.conf"), "", user)?;
        let mut me = Self {
            dir: dir.to_path_buf(),
            user,
            port,
            dist_port,
            node,
            user_name: "chaos".into(),
            password: password.to_owned(),
            child: None,
            restarts: 0,
        };
        me.launch(deadline).await?;
        Ok(me)
    }

    pub fn url(&self) -> String {
        format!(
            "amqp://{}:{}@127.0.0.1:{}/%2f",
            self.user_name, self.password, self.port
        )
    }

    pub fn log_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.join("server.out")];
        if let Ok(rd) = std::fs::read_dir(self.dir.join("log")) {
            v.extend(rd.flatten().map(|e| e.path()));
        }
        v
    }

    async fn launch(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let d = &self.dir;
        let mut cmd = Command::new(RABBITMQ_SERVER);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            // The Erlang cookie is created here, not in the shared node's home.
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            .env("RABBITMQ_GENERATED_CONFIG_DIR", d.join("generated"))
            .current_dir(d);
        let log = d.join("server.out");
        self.child = Some(spawn(cmd, self.user, &log)?);
        let port = self.port;
        let child = self.child.as_mut();
        let mut exited = None;
        if let Some(c) = child {
            let ok = wait_for(deadline, Duration::from_millis(250), || {
                if let Ok(Some(status)) = c.try_wait() {
                    exited = Some(status);
                    return true;
                }
                port_open(port)
            })
            .await;
            if let Some(status) = exited {
                bail!(
                    "the chaos suite's RabbitMQ node exited at start ({status}); its output:\n{}",
                    tail(&log, 30)
                );
            }
            if !ok {
                bail!(
                    "the chaos suite's RabbitMQ node did not listen on {port} within {deadline:?}; its output:\n{}",
                    tail(&log, 30)
                );
            }
        }
        Ok(())
    }

    /// Stop the node gracefully (SIGTERM: the start script runs `rabbitmqctl stop`'s path)
    /// and start it again on the same ports and data.
    pub async fn restart(&mut self, deadline: Duration) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            tokio::task::block_in_place(|| stop_group(&mut c, "TERM", Duration::from_secs(30)));
        }
        self.restarts += 1;
        self.launch(deadline).await
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The data is thrown away: no need for a graceful stop.
            stop_group(&mut c, "TERM", Duration::from_secs(5));
        }
    }
}

// ----------------------------------------------------------------------------- PostgreSQL

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `postgres`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql is missing: the chaos suite starts its own PostgreSQL cluster and needs the postgresql server package")?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .context("no /usr/lib/postgresql/*/bin has initdb and postgres")
}

/// A PostgreSQL cluster of our own.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<RunAs>,
    pub port: u16,
    pub password: String,
    child: Option<Child>,
    pub restarts: u32,
}

impl PgCluster {
    /// `initdb` in `dir` (created) with a password-protected superuser `chaos`, start, and
    /// wait until it answers.
    pub async fn start(dir: &Path, password: &str, deadline: Duration) -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let user = run_as("postgres")?;
        own_dir(dir, user)?;
        let pwfile = dir.join("pwfile");
        write_owned(&pwfile, &format!("{password}\n"), user)?;
        let log = dir.join("initdb.log");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "chaos",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LANG", "C.UTF-8")
            .current_dir(dir);
        let mut c = spawn(initdb, user, &log)?;
        let status = tokio::task::block_in_place(|| c.wait())?;
        std::fs::remove_file(&pwfile).ok();
        if !status.success() {
            bail!("initdb failed ({status}):\n{}", tail(&log, 30));
        }
        let mut me = Self {
            dir: dir.to_path_buf(),
            bin,
            user,
            port: free_port()?,
            password: password.to_owned(),
            child: None,
            restarts: 0,
        };
        me.launch(deadline).await?;
        Ok(me)
    }

    /// The URL of the cluster's `postgres` database (the app's; the cluster is ours alone).
    pub fn url(&self) -> String {
        format!(
            "postgres://chaos:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    pub fn log_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("initdb.log"), self.dir.join("server.log")]
    }

    async fn launch(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            // The socket in our folder, not /var/run/postgresql (the shared cluster's).
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            // 3 workers + ingress + commands, each with a pool of 20.
            .args(["-c", "max_connections=200"])
            // Durability against a crash of the server process is what the test needs;
            // fsync only guards against a crash of the machine.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .env("LANG", "C.UTF-8")
            .current_dir(&self.dir);
        let log = self.dir.join("server.log");
        self.child = Some(spawn(cmd, self.user, &log)?);
        let port = self.port;
        let mut exited = None;
        if let Some(c) = self.child.as_mut() {
            let ok = wait_for(deadline, Duration::from_millis(100), || {
                if let Ok(Some(status)) = c.try_wait() {
                    exited = Some(status);
                    return true;
                }
                port_open(port)
            })
            .await;
            if let Some(status) = exited {
                bail!(
                    "the chaos suite's PostgreSQL exited at start ({status}):\n{}",
                    tail(&log, 30)
                );
            }
            if !ok {
                bail!(
                    "the chaos suite's PostgreSQL did not listen on {port} within {deadline:?}:\n{}",
                    tail(&log, 30)
                );
            }
        }
        Ok(())
    }

    /// Crash-stop the server (SIGQUIT: immediate shutdown, as after a crash every
    /// connection is cut and the next start runs recovery) and start it again.
    pub async fn restart(&mut self, deadline: Duration) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            tokio::task::block_in_place(|| stop_group(&mut c, "QUIT", Duration::from_secs(30)));
        }
        self.restarts += 1;
        self.launch(deadline).await
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_group(&mut c, "QUIT", Duration::from_secs(5));
        }
    }
}
