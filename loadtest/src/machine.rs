//! Facts about the machine and the exact command line, so a result can be pasted into
//! `loadtest/RESULTS.md` and reproduced.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub hostname: String,
    /// CPUs this process may run on (what `nproc` prints).
    pub nproc: usize,
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub cpu_model: String,
    /// Total memory from /proc/meminfo, in MiB.
    pub memory_mib: Option<u64>,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).ok().filter(|s| !s.is_empty());
        Self {
            hostname: read("/proc/sys/kernel/hostname")
                .or_else(|| read("/etc/hostname"))
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "unknown".into()),
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model: read("/proc/cpuinfo").and_then(|s| cpu_model(&s)).unwrap_or_else(|| "unknown".into()),
            memory_mib: read("/proc/meminfo").and_then(|s| mem_total_mib(&s)),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| std::env::consts::OS.into()),
        }
    }

    /// `host: 2 CPUs, Intel(R) Xeon(R) ..., 7.8 GiB, Linux 6.1.0`.
    pub fn line(&self) -> String {
        let mem = self.memory_mib.map(|m| format!(", {:.1} GiB", m as f64 / 1024.0)).unwrap_or_default();
        format!("{}: {} CPUs, {}{mem}, kernel {}", self.hostname, self.nproc, self.cpu_model, self.kernel)
    }
}

/// The first `model name` (x86) or `Model`/`CPU part` style name in /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    for key in ["model name", "Model", "cpu model", "Processor"] {
        for line in cpuinfo.lines() {
            if let Some((k, v)) = line.split_once(':')
                && k.trim() == key
                && !v.trim().is_empty()
            {
                return Some(v.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    None
}

fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat`;
/// `None` where there is no such file.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Clock ticks per second: 100 on every Linux this runs on (`getconf CLK_TCK`).
    cpu_ticks(&stat).map(|t| t as f64 / 100.0)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks. The command
/// name (field 2) is in parentheses and may hold spaces, so fields count from the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The command line as a shell would need it typed again.
pub fn command_line() -> String {
    std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
}

/// Quotes `arg` for a POSIX shell when it contains anything but safe characters.
pub fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_from_x86_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(text).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
    }

    #[test]
    fn cpu_model_from_arm_cpuinfo_and_missing() {
        assert_eq!(cpu_model("processor : 0\nBogoMIPS : 50.00\nModel : Raspberry Pi 4\n").as_deref(), Some("Raspberry Pi 4"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn memory_total() {
        assert_eq!(mem_total_mib("MemTotal:        8039516 kB\nMemFree: 1 kB\n"), Some(7851));
        assert_eq!(mem_total_mib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(shell_quote("--rate"), "--rate");
        assert_eq!(shell_quote("/work/shared/faces/obama_1.jpg"), "/work/shared/faces/obama_1.jpg");
        assert_eq!(shell_quote("http://127.0.0.1:50054"), "http://127.0.0.1:50054");
        assert_eq!(shell_quote("my photo.jpg"), "'my photo.jpg'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn cpu_ticks_from_proc_stat() {
        let line = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 9 0 100 1000 50";
        assert_eq!(cpu_ticks(line), Some(1290));
        assert_eq!(cpu_ticks("4242 (x) S 1"), None);
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.nproc >= 1);
        assert!(!m.hostname.is_empty());
        assert!(m.line().contains("CPUs"));
    }
}
