//! Files on disk that other users can plant (issue 9, items 2 and 3): an unfinished profile is
//! named from disk, so a module path that is a FIFO, a `/tmp/perf-PID.map` that is a FIFO, a link
//! to `/dev/zero` or an enormous file must each be refused at once with a warning, the addresses
//! left unnamed, and the report still written.
//!
//! rprof runs under `timeout` here, so a regression fails the test instead of hanging it. The
//! profiles use process ids above the kernel's largest possible pid (`PID_MAX_LIMIT`, 2^22), so
//! no live process owns the perf maps these tests create in `/tmp`; each one is removed when its
//! test ends, failed or not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rprof_profile::{Address, Header, Module, ModuleId, ModuleKind, Record, Sample, Writer};

use crate::util::{rprof_bin, stderr, stdout, tempdir};

/// Above `PID_MAX_LIMIT` (4,194,304 on 64-bit Linux): never a live process.
const PID_BASE: u32 = 1 << 22;

/// A pid no process can have, distinct per test (`slot`) and per test run (two runs of the
/// suite at once must not share a `/tmp` file).
fn dead_pid(slot: u32) -> u32 {
    PID_BASE + (std::process::id() % 100_000) * 8 + slot
}

/// Removes a path when dropped: the `/tmp` files go even when an assertion fails.
struct Planted(PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `/tmp/perf-PID.map`, removed first if a crashed earlier run left it behind.
fn perf_map(pid: u32) -> Planted {
    let path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let _ = std::fs::remove_file(&path);
    Planted(path)
}

/// An unfinished profile (no names, no summary, as a killed recording leaves it) of process
/// `pid` with one module and 20 samples at distinct addresses in it.
fn unfinished_profile(dir: &Path, pid: u32, module: Module, base: u64) -> PathBuf {
    let header = Header {
        rprof_version: "0.1.0".into(),
        command: vec!["./jit-app".into()],
        event: "cpu-clock".into(),
        frequency: Some(1000),
        call_graph: "dwarf,32768".into(),
        ..Header::default()
    };
    let mut bytes = Vec::new();
    let mut w = Writer::new(&mut bytes, &header).expect("header");
    let id = module.id;
    w.push(Record::Module(module)).expect("module");
    w.push(Record::Comm {
        time: 1,
        pid,
        tid: pid,
        name: "jit-app".into(),
        exec: true,
    })
    .expect("comm");
    for i in 0..20u64 {
        w.push(Record::Sample(Sample {
            time: 2 + i,
            pid,
            tid: pid,
            cpu: 0,
            period: 1_000_000,
            user: vec![Address {
                module: Some(id),
                address: base + 0x10 * i,
            }],
            kernel: vec![],
            truncated: false,
        }))
        .expect("sample");
    }
    w.flush().expect("flush");
    drop(w);
    let path = dir.join("unfinished.rprof");
    std::fs::write(&path, bytes).expect("profile written");
    path
}

fn jit_module(pid: u32) -> Module {
    Module {
        id: ModuleId(0),
        path: format!("/tmp/perf-{pid}.map"),
        build_id: None,
        kind: ModuleKind::Jit,
        jit_pid: Some(pid),
    }
}

/// Runs `rprof ARGS` in `dir`, killed after 60 s: a hang fails the test as a timeout.
fn run_bounded(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args(["--kill-after=5", "60"])
        .arg(rprof_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("timeout runs rprof");
    assert_ne!(
        out.status.code(),
        Some(124),
        "rprof {args:?} hung (killed after 60 s); stderr: {}",
        stderr(&out)
    );
    assert!(
        out.status.success(),
        "rprof {args:?} failed ({}): {}",
        out.status,
        stderr(&out)
    );
    out
}

/// The report shows all 20 samples under `shown+0x…` names: unnamed, but counted.
fn assert_unnamed(report: &str, shown: &str) {
    let rows = report
        .lines()
        .filter(|l| l.contains(&format!("{shown}+0x")))
        .count();
    assert_eq!(rows, 20, "20 unnamed addresses of {shown} in:\n{report}");
}

/// Issue 9.2: a FIFO as `/tmp/perf-PID.map` blocked `rprof report` forever in open().
#[test]
fn fifo_perf_map_is_refused() {
    let pid = dead_pid(0);
    let map = perf_map(pid);
    nix::unistd::mkfifo(&map.0, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let dir = tempdir();
    let profile = unfinished_profile(dir.path(), pid, jit_module(pid), 0x7f00_0000_1000);
    let profile = profile.display().to_string();
    let out = run_bounded(dir.path(), &["report", "-i", &profile, "--top", "50"]);
    let err = stderr(&out);
    let expected =
        format!("rprof: warning: /tmp/perf-{pid}.map: cannot read: not a regular file (a FIFO)");
    assert!(err.contains(&expected), "{expected:?} in stderr:\n{err}");
    assert_unnamed(&stdout(&out), &format!("perf-{pid}.map"));
}

/// Issue 9.3: `/tmp/perf-PID.map` linked to `/dev/zero` made `rprof flame --folded` read until
/// it ran out of memory (4.2 GB). A link there is refused, whatever it points to.
#[test]
fn dev_zero_linked_perf_map_is_refused() {
    let pid = dead_pid(1);
    let map = perf_map(pid);
    std::os::unix::fs::symlink("/dev/zero", &map.0).expect("symlink");
    let dir = tempdir();
    let profile = unfinished_profile(dir.path(), pid, jit_module(pid), 0x7f00_0000_1000);
    let profile = profile.display().to_string();
    let out = run_bounded(
        dir.path(),
        &["flame", "--folded", "-i", &profile, "-o", "-"],
    );
    let err = stderr(&out);
    let expected = format!(
        "rprof: warning: /tmp/perf-{pid}.map: cannot read: is a symbolic link, not followed for \
         a perf map"
    );
    assert!(err.contains(&expected), "{expected:?} in stderr:\n{err}");
    let folded = stdout(&out);
    let total: u64 = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 20, "all samples folded, unnamed:\n{folded}");
    assert!(
        folded
            .lines()
            .all(|l| l.contains(&format!("perf-{pid}.map+0x"))),
        "{folded}"
    );
}

/// Issue 9.3: a perf map far over its size cap (a sparse 1 GiB file) is refused by its size
/// before anything is read.
#[test]
fn oversized_perf_map_is_refused() {
    let pid = dead_pid(2);
    let map = perf_map(pid);
    let file = std::fs::File::create(&map.0).expect("create perf map");
    file.set_len(1 << 30).expect("sparse 1 GiB");
    drop(file);
    let dir = tempdir();
    let profile = unfinished_profile(dir.path(), pid, jit_module(pid), 0x7f00_0000_1000);
    let profile = profile.display().to_string();
    let out = run_bounded(dir.path(), &["report", "-i", &profile, "--top", "50"]);
    let err = stderr(&out);
    let expected = format!(
        "rprof: warning: /tmp/perf-{pid}.map: cannot read: is 1 GiB, over the 256 MiB limit for \
         a perf map"
    );
    assert!(err.contains(&expected), "{expected:?} in stderr:\n{err}");
    assert_unnamed(&stdout(&out), &format!("perf-{pid}.map"));
}

/// Issue 9.2: an unfinished profile whose module path is a FIFO blocked `rprof report` forever
/// in open() while naming its addresses from disk.
#[test]
fn fifo_module_is_refused() {
    let dir = tempdir();
    let fifo = dir.path().join("libhostile.so");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let module = Module {
        id: ModuleId(0),
        path: fifo.display().to_string(),
        build_id: None,
        kind: ModuleKind::Elf,
        jit_pid: None,
    };
    let profile = unfinished_profile(dir.path(), dead_pid(3), module, 0x1000);
    let profile = profile.display().to_string();
    let out = run_bounded(dir.path(), &["report", "-i", &profile, "--top", "50"]);
    let err = stderr(&out);
    let expected = format!(
        "rprof: warning: {}: cannot read: not a regular file (a FIFO)",
        fifo.display()
    );
    assert!(err.contains(&expected), "{expected:?} in stderr:\n{err}");
    assert_unnamed(&stdout(&out), "libhostile.so");
}
