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
    let stacks: Vec<Vec<u64>> = (0..20u64).map(|i| vec![base + 0x10 * i]).collect();
    write_unfinished(dir, "unfinished.rprof", pid, module, &stacks)
}

/// An unfinished profile of process `pid` with one sample per stack of `stacks` (module
/// addresses, leaf first), all in `module`.
fn write_unfinished(
    dir: &Path,
    name: &str,
    pid: u32,
    module: Module,
    stacks: &[Vec<u64>],
) -> PathBuf {
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
    for (i, stack) in stacks.iter().enumerate() {
        let user = stack
            .iter()
            .map(|&address| Address {
                module: Some(id),
                address,
            })
            .collect();
        w.push(Record::Sample(Sample {
            time: 2 + i as u64,
            pid,
            tid: pid,
            cpu: 0,
            period: 1_000_000,
            user,
            kernel: vec![],
            truncated: false,
        }))
        .expect("sample");
        if i % 1000 == 999 {
            w.flush().expect("flush");
        }
    }
    w.flush().expect("flush");
    drop(w);
    let path = dir.join(name);
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

/// The `.text` range of the ELF file at `path`, from `readelf -SW`.
fn text_range(path: &Path) -> (u64, u64) {
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(path)
        .output()
        .expect("readelf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(" .text "))
        .expect(".text in readelf -S");
    // [16] .text PROGBITS ADDRESS OFFSET SIZE ...
    let fields: Vec<&str> = line
        .split(']')
        .nth(1)
        .expect("section line")
        .split_whitespace()
        .collect();
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex field");
    let start = hex(fields[2]);
    (start, start + hex(fields[4]))
}

/// Peak resident memory, in bytes, of `rprof report -i PROFILE` (killed after 5 minutes).
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also gives its resource usage"
)]
fn report_peak_rss(dir: &Path, profile: &Path) -> u64 {
    let child = Command::new(rprof_bin())
        .arg("report")
        .arg("-i")
        .arg(profile)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rprof starts");
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; both pointers are valid for the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: as above; WNOHANG makes the call return at once.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(rc >= 0, "wait4: {}", std::io::Error::last_os_error());
        if rc == pid {
            break;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kill has no memory preconditions; the child is ours and not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("rprof report of {} took over 5 minutes", profile.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "rprof report failed: status {status:#x}"
    );
    // ru_maxrss is in KiB on Linux.
    usage.ru_maxrss as u64 * 1024
}

/// Issue 9.3: naming an unfinished profile cost about 870 bytes of memory per further distinct
/// address of the rprof binary (every address's names held as owned strings several times over;
/// 1.7 KB for the deeper inlining of an optimized binary); now about 280. Measured between
/// profiles of 60,000 and 200,000 distinct addresses, where the DWARF parsed for the first ones
/// (a cost per module, not per address) has stopped growing.
#[test]
fn naming_memory_per_address_is_small() {
    let bin = rprof_bin();
    let (start, end) = text_range(&bin);
    let module = || Module {
        id: ModuleId(0),
        path: bin.display().to_string(),
        build_id: None,
        kind: ModuleKind::Elf,
        jit_pid: None,
    };
    // Distinct addresses spread over the whole text (xorshift), 20 frames a sample.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seen = std::collections::BTreeSet::new();
    let mut addresses = |n: usize| -> Vec<Vec<u64>> {
        let mut all = Vec::with_capacity(n);
        while all.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = start + x % (end - start);
            if seen.insert(a) {
                all.push(a);
            }
        }
        all.chunks(20).map(<[u64]>::to_vec).collect()
    };
    let (small_n, big_n) = (60_000usize, 200_000usize);
    let dir = tempdir();
    let small = write_unfinished(dir.path(), "small.rprof", 1, module(), &addresses(small_n));
    let big = write_unfinished(dir.path(), "big.rprof", 1, module(), &addresses(big_n));
    let small_rss = report_peak_rss(dir.path(), &small);
    let big_rss = report_peak_rss(dir.path(), &big);
    let per_address = big_rss.saturating_sub(small_rss) / (big_n - small_n) as u64;
    assert!(
        per_address < 500,
        "{per_address} bytes per further address named ({small_rss} bytes for {small_n} \
         addresses, {big_rss} for {big_n})"
    );
}

/// Issue 9.2: `rprof report -i FIFO` blocked in open() until a writer came; a profile path that
/// is not a regular file is refused at once, with exit code 1 and one line.
#[test]
fn fifo_profile_is_refused() {
    let dir = tempdir();
    let fifo = dir.path().join("profile.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fifo = fifo.display().to_string();
    for command in [&["report"][..], &["flame", "--folded"]] {
        let out = Command::new("timeout")
            .args(["--kill-after=5", "60"])
            .arg(rprof_bin())
            .args(command)
            .args(["-i", &fifo])
            .current_dir(dir.path())
            .output()
            .expect("timeout runs rprof");
        assert_eq!(out.status.code(), Some(1), "{command:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("rprof: cannot read {fifo}: not a regular file (a FIFO)\n"),
            "{command:?}"
        );
    }
}
