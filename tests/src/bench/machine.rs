//! What the machine is and how busy it was: every figure is reported with these.

use serde::Serialize;

/// The machine, as `nproc`, `free` and `/proc/cpuinfo` tell it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
    pub mem_available_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib = |key: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|l| l.trim_start_matches(':').split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_mib: kib("MemTotal") / 1024,
            mem_available_mib: kib("MemAvailable") / 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// The load averages (1, 5, 15 minutes), as `uptime` prints them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    pub load_1m: f64,
    pub load_5m: f64,
    pub load_15m: f64,
}

impl Load {
    pub fn now() -> Self {
        let raw = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut it = raw.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
        Self {
            load_1m: it.next().unwrap_or(0.0),
            load_5m: it.next().unwrap_or(0.0),
            load_15m: it.next().unwrap_or(0.0),
        }
    }
}

/// The load before and after a measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadSpan {
    pub before: Load,
    pub after: Load,
}

/// Peak resident set of this process so far (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM") as f64 / 1024.0
}

/// Resident set of this process now (`VmRSS`), in MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS") as f64 / 1024.0
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|l| l.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system, every thread) this process used so far, in seconds.
pub fn cpu_seconds() -> f64 {
    // /proc/self/stat: fields 14 and 15 are utime and stime in clock ticks (USER_HZ = 100
    // on Linux, `getconf CLK_TCK`). The command name (field 2) may hold spaces: split after
    // its closing parenthesis.
    let raw = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some((_, rest)) = raw.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field n is at index n - 3.
    let tick = |n: usize| -> f64 {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(14) + tick(15)) / 100.0
}
