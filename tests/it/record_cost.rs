//! Integration tests of what recording costs and keeps (issue 13): short-lived processes
//! sampled at the rate asked for, and nothing lost by an unprivileged user whose ring buffers
//! are capped by the locked-memory limits.

use std::path::Path;
use std::process::Stdio;

use rprof_profile::Profile;

use crate::util::{build_c, rprof, skip, stderr, stdout, tempdir};

fn open(path: &Path) -> Profile {
    Profile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Where the cgroup v2 hierarchy is mounted (rprof makes the command's cgroup there).
fn cgroup2_mount() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (before, fs) = line.split_once(" - ")?;
        if !fs.starts_with("cgroup2 ") {
            return None;
        }
        before.split_whitespace().nth(4).map(str::to_string)
    })
}

/// Issue 13: a process shorter than one sampling period is sampled at the rate asked for.
/// Children exec'ing `/bin/true` (0.5-1.5 ms of CPU each, less than a period) got a sample in
/// only a few of them: the kernel starts the inherited copy of the event in every new task at
/// a full period. On the command's own cgroup, the samples of 1,000 such children must match
/// the CPU time they used (the fixture prints it). At 199 Hz (a 5 ms period, several times a
/// child's life even when a loaded machine slows them down) inherited events find almost none.
#[test]
fn short_processes_are_sampled_at_the_rate_asked_for() {
    if !is_root() {
        skip("per-CPU events on a cgroup need root");
        return;
    }
    if cgroup2_mount().is_none() {
        skip("no cgroup v2 hierarchy is mounted");
        return;
    }
    let bin = build_c("record_short_procs.c", "record_short_procs", &["-O1", "-g"]);
    let bin = bin.to_string_lossy();
    let dir = tempdir();
    let child = rprof(
        dir.path(),
        &["record", "-F", "199", "-o", "s.data", "--", &bin, "1000"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("rprof runs");
    let rprof_pid = child.id();
    let out = child.wait_with_output().expect("rprof runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let cpu: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("children_cpu_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CPU time in the fixture's output: {text}"));
    let expected = cpu * 199.0;
    // Enough work that sampling noise cannot decide (binomial sd ~ sqrt(expected)).
    assert!(expected >= 100.0, "the children used only {cpu} s of CPU");
    let profile = open(&dir.path().join("s.data"));
    let children: u64 = profile
        .samples
        .iter()
        .filter(|s| {
            profile
                .processes
                .get(&s.pid)
                .is_some_and(|p| p.ppid.is_some())
        })
        .count() as u64;
    let processes = profile
        .processes
        .values()
        .filter(|p| p.ppid.is_some())
        .count();
    assert!(processes >= 1000, "{processes} child processes recorded");
    assert!(
        children as f64 >= 0.6 * expected && children as f64 <= 1.5 * expected,
        "{children} samples in the children for {cpu:.3} s of their CPU at 199 Hz (~{expected:.0} expected)\n{}",
        stderr(&out)
    );
    // The cgroup (rprof-PID beside the test's own) is gone once the recording ends.
    let mount = cgroup2_mount().expect("cgroup2 is mounted");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim_start_matches('/');
    let cgroup = Path::new(&mount)
        .join(own)
        .join(format!("rprof-{rprof_pid}"));
    assert!(!cgroup.exists(), "{} was left behind", cgroup.display());
}
