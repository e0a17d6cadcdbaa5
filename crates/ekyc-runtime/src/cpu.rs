//! How many CPUs this process may use: the cgroup CPU quota of its container (`cpu.max` on
//! cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us` on v1), rounded up to whole CPUs,
//! and never more than the cores the scheduler lets it run on. Worker counts that are left
//! at 0 in the settings resolve to this, so a container limited to 2 CPUs on a 64-core node
//! starts 2 workers (each with its own model sessions and memory), not 64.
//!
//! A container with no CPU limit (the manifests set none, on purpose) has no quota: then it
//! is the cores it may run on, and the manifests set the worker counts from the CPU request.

use std::path::Path;

/// CPUs this process may use (at least 1).
pub fn available_cpus() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match quota_cpus(Path::new("/sys/fs/cgroup")) {
        Some(q) => q.min(cores).max(1),
        None => cores,
    }
}

/// The CPU quota under a cgroup file system mounted at `root`, in whole CPUs rounded up;
/// `None` when there is no quota (or no cgroup file to read).
pub fn quota_cpus(root: &Path) -> Option<usize> {
    if let Ok(v2) = std::fs::read_to_string(root.join("cpu.max")) {
        let mut fields = v2.split_whitespace();
        let (quota, period) = (fields.next()?, fields.next().unwrap_or("100000"));
        return cpus(quota.parse().ok()?, period.parse().ok()?);
    }
    let v1 = root.join("cpu");
    let quota: i64 = std::fs::read_to_string(v1.join("cpu.cfs_quota_us")).ok()?.trim().parse().ok()?;
    let period: i64 = std::fs::read_to_string(v1.join("cpu.cfs_period_us")).ok()?.trim().parse().ok()?;
    // -1: no quota.
    if quota <= 0 { None } else { cpus(quota as u64, period as u64) }
}

fn cpus(quota: u64, period: u64) -> Option<usize> {
    if period == 0 || quota == 0 {
        return None;
    }
    Some(quota.div_ceil(period) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroup(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("ekyc-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(p, text).expect("write");
        }
        root
    }

    #[test]
    fn quotas_are_read_from_cgroup_v2_and_v1() {
        assert_eq!(quota_cpus(&cgroup("v2-2", &[("cpu.max", "200000 100000\n")])), Some(2));
        assert_eq!(quota_cpus(&cgroup("v2-half", &[("cpu.max", "50000 100000\n")])), Some(1), "rounded up");
        assert_eq!(quota_cpus(&cgroup("v2-1.5", &[("cpu.max", "150000 100000\n")])), Some(2));
        assert_eq!(quota_cpus(&cgroup("v2-max", &[("cpu.max", "max 100000\n")])), None, "no limit");
        let v1 = cgroup("v1", &[("cpu/cpu.cfs_quota_us", "300000\n"), ("cpu/cpu.cfs_period_us", "100000\n")]);
        assert_eq!(quota_cpus(&v1), Some(3));
        let v1 = cgroup("v1-none", &[("cpu/cpu.cfs_quota_us", "-1\n"), ("cpu/cpu.cfs_period_us", "100000\n")]);
        assert_eq!(quota_cpus(&v1), None);
        assert_eq!(quota_cpus(&cgroup("empty", &[])), None);
    }

    #[test]
    fn never_more_than_the_cores() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let n = available_cpus();
        assert!((1..=cores).contains(&n), "{n} of {cores}");
    }
}
