//! `rprof record --alloc` (issue 14): allocation profiling through uprobes, checked against
//! fixtures with a designed allocation profile (fixtures/alloc.c, fixtures/alloc_rust.rs).
//!
//! Exact numbers (calls, leaked bytes, the peak, each site's numbers) come from the records
//! of every call, so they are checked exactly; only the flame graphs' stacks are sampled.
//! Uprobes and BPF need root: without it each test says SKIP (the unprivileged test checks
//! the message instead).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    as_nobody, build_c, build_rust, is_root, mapped_byte, rprof, rprof_bin, skip, stderr, stdout,
    tempdir, KillOnDrop,
};

fn fixture() -> PathBuf {
    build_c("alloc.c", "alloc", &["-g", "-O2"])
}

/// Records `exe` with `extra` flags; returns the profile's `--json` report.
fn record(dir: &Path, exe: &Path, extra: &[&str]) -> Value {
    let _one = one_at_a_time();
    let mut args = vec!["record", "--alloc", "-o", "alloc.data"];
    args.extend_from_slice(extra);
    args.push("--");
    args.push(exe.to_str().unwrap());
    let out = rprof(dir, &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("rprof: allocations: "), "{text}");
    // Calls are never lost at the defaults (their ring has room for seconds of calls); a
    // stack copy may be, under a heavy load (seen once in a full test run: "the kernel
    // dropped 200 stack copies"), which leaves the exact numbers alone.
    assert!(
        !text.contains("dropped") || text.contains("stack copies"),
        "records were lost: {text}"
    );
    if text.contains("stack copies") {
        eprintln!("note: {text}");
    }
    let out = rprof(dir, &["report", "-i", "alloc.data", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn site<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no site {name} in {json:#}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// One recording at a time: the kill -9 test waits until no BPF program of rprof is loaded,
/// and the recordings compete for the same 2 CPUs.
static RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    RECORDING.lock().unwrap_or_else(|e| e.into_inner())
}

const LEAK: u64 = 1000 * 1024;
const PEAK: u64 = 32 << 20;

/// Issue 14: the designed profile, exactly: 201,501 allocation calls (1000 + 200,000 + 1 +
/// 500 reallocs), 1000 × 1 KiB leaked under leak_kib, 200,000 × 64 B temporaries, the 32 MiB
/// buffer at the peak with the leaks, and the realloc count.
#[test]
fn designed_profile_is_measured_exactly() {
    if !is_root() {
        return skip("uprobes and BPF need root");
    }
    let dir = tempdir();
    let json = record(dir.path(), &fixture(), &[]);
    let s = &json["summary"];
    assert_eq!(u(&s["lost"]), 0, "{s}");
    assert_eq!(u(&s["alloc_calls"]), 201_501, "{s}");
    assert_eq!(u(&s["calls_by_function"]["realloc"]), 500, "{s}");
    assert_eq!(u(&s["calls_by_function"]["malloc"]), 201_001, "{s}");
    assert_eq!(u(&s["leaked_bytes"]), LEAK, "{s}");
    assert_eq!(u(&s["leaked_calls"]), 1000, "{s}");
    // 200,000 temporaries, 499 reallocs of the thread's last block and the final free.
    assert_eq!(u(&s["temporary_calls"]), 200_500, "{s}");
    // The peak: the buffer, the leaks and the realloc'd block at its largest (500 × 256 B).
    assert_eq!(u(&s["peak_bytes"]), PEAK + LEAK + 500 * 256, "{s}");

    let leak = site(&json, "leak_kib");
    assert_eq!((u(&leak["count"]), u(&leak["leaked_bytes"])), (1000, LEAK));
    let temp = site(&json, "temporaries");
    assert_eq!(u(&temp["count"]), 200_000);
    assert_eq!(u(&temp["temporary_count"]), 200_000);
    assert_eq!(
        (u(&temp["bytes"]), u(&temp["leaked_bytes"])),
        (200_000 * 64, 0)
    );
    let peak = site(&json, "peak_buffer");
    assert_eq!(
        (u(&peak["peak_bytes"]), u(&peak["leaked_bytes"])),
        (PEAK, 0)
    );
    assert_eq!(u(&leak["peak_bytes"]), LEAK);
    let growth = site(&json, "realloc_growth");
    assert_eq!(u(&growth["count"]), 500);
    assert_eq!(u(&growth["leaked_bytes"]), 0);

    // The text report: the summary line and the sites.
    let out = rprof(dir.path(), &["report", "-i", "alloc.data"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.starts_with("allocations: 201,501 calls (200,500 temporary)"),
        "{text}"
    );
    assert!(text.contains("most bytes leaked"), "{text}");
    let leaked_table = text.split("most bytes leaked").nth(1).unwrap();
    let first_row = leaked_table.lines().nth(2).unwrap();
    assert!(first_row.ends_with("leak_kib (alloc)"), "{text}");
}

/// Issue 14: with the default byte sampling, the sampled stacks (flame graphs) put the peak
/// on the right sites: the 32 MiB buffer is always sampled (a call of R bytes or more always
/// is), and what else the peak holds is the leaks and the growing block. The stacks carry
/// their call site's exact numbers (calibrated), not raw estimates.
#[test]
fn sampled_stacks_name_the_peak_and_the_callers() {
    if !is_root() {
        return skip("uprobes and BPF need root");
    }
    let dir = tempdir();
    record(dir.path(), &fixture(), &[]);
    let folded = |what: &str| {
        let out = rprof(
            dir.path(),
            &["flame", "-i", "alloc.data", "--alloc", what, "--folded"],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let peak = folded("peak");
    let total = |text: &str, keep: &dyn Fn(&str) -> bool| -> u64 {
        text.lines()
            .filter(|l| keep(l))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum()
    };
    let all = total(&peak, &|_| true);
    let right = total(&peak, &|l| {
        l.contains(";main;peak_buffer ")
            || l.contains(";main;leak_kib ")
            || l.contains(";main;realloc_growth ")
    });
    assert!(all >= PEAK, "{peak}");
    assert!(right * 100 >= all * 95, "{right} of {all}:\n{peak}");
    assert!(peak.contains("main;peak_buffer 33554432"), "{peak}");
    // Every stack reaches main: the callers are unwound.
    let bytes = folded("bytes");
    assert!(bytes.lines().all(|l| l.contains(";main;")), "{bytes}");
    // The sampled stacks share their call site's exact numbers: 200,000 × 64 B through the
    // one call site of temporaries (about 24 stacks expected; none with probability e^-24).
    assert!(bytes.contains(";main;temporaries 12800000\n"), "{bytes}");
    assert!(bytes.contains(";main;peak_buffer 33554432\n"), "{bytes}");
    let count = folded("count");
    assert!(count.contains(";main;temporaries 200000\n"), "{count}");
    // The SVG.
    let out = rprof(
        dir.path(),
        &[
            "flame",
            "-i",
            "alloc.data",
            "--alloc",
            "bytes",
            "-o",
            "a.svg",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(dir.path().join("a.svg")).unwrap();
    assert!(svg.contains("peak_buffer") && svg.contains("bytes allocated"));
}

/// Issue 14: a Rust program's allocations go through the system allocator (libc malloc) and
/// are counted exactly; the sites are the Rust functions.
#[test]
fn rust_program_through_the_system_allocator() {
    if !is_root() {
        return skip("uprobes and BPF need root");
    }
    let exe = build_rust("alloc_rust.rs", "alloc_rust");
    let dir = tempdir();
    let json = record(dir.path(), &exe, &["--alloc-sample", "64K"]);
    let s = &json["summary"];
    // The runtime allocates a little too (thread info, arguments).
    let calls = u(&s["alloc_calls"]);
    assert!((21_000..21_100).contains(&calls), "{s}");
    let leaked = u(&s["leaked_bytes"]);
    assert!((LEAK..LEAK + 16 * 1024).contains(&leaked), "{s}");
    let leak = site(&json, "alloc_rust::leak_vectors");
    assert_eq!((u(&leak["count"]), u(&leak["leaked_bytes"])), (1000, LEAK));
    let temp = site(&json, "alloc_rust::temporaries");
    assert_eq!(u(&temp["temporary_count"]), 20_000, "{json:#}");
}

/// Issue 14: without privileges, one line with the fix (exit 1), and COMMAND never ran.
#[test]
fn unprivileged_is_one_line_and_command_never_runs() {
    if !is_root() {
        return skip("needs root to become another user with setpriv");
    }
    let dir = tempdir();
    let marker = dir.path().join("ran");
    let out = as_nobody(&rprof_bin())
        .args([
            "record",
            "--alloc",
            "-o",
            "/tmp/never.data",
            "--",
            "/usr/bin/touch",
        ])
        .arg(&marker)
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("permission denied") && text.contains("sudo"),
        "{text}"
    );
    assert!(!marker.exists(), "COMMAND ran half-instrumented");
}

/// Issue 14: a statically linked program has no C library to probe: one line naming what
/// was searched (exit 1), and it never ran.
#[test]
fn static_program_names_what_was_searched() {
    let dir = tempdir();
    let exe = dir.path().join("static_touch");
    let src = dir.path().join("t.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(int c, char **v) { fclose(fopen(v[1], \"w\")); return 0; }\n",
    )
    .unwrap();
    let ok = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return skip("gcc -static does not work here (no static libc)");
    }
    let marker = dir.path().join("ran");
    let out = rprof(
        dir.path(),
        &[
            "record",
            "--alloc",
            "--",
            exe.to_str().unwrap(),
            marker.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("no allocator to probe")
            && text.contains("searched: ")
            && text.contains("static_touch"),
        "{text}"
    );
    assert!(!marker.exists(), "COMMAND ran");
}

/// `malloc`'s file offset in `libc`, from `nm -D`-like reading through the profile's own
/// resolver: `rprof latency` would do, but a plain ELF read keeps this test independent.
fn malloc_offset(libc: &Path) -> u64 {
    let out = Command::new("readelf")
        .args(["-W", "--dyn-syms", "-l"])
        .arg(libc)
        .output()
        .expect("readelf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let address = text
        .lines()
        .find(|l| {
            l.ends_with(" malloc@@GLIBC_2.2.5")
                || l.split_whitespace().last() == Some("malloc@@GLIBC_2.2.5")
        })
        .and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .expect("malloc in libc's dynamic symbols");
    // PT_LOAD: Offset VirtAddr PhysAddr FileSiz MemSiz ...
    for l in text.lines().filter(|l| l.trim_start().starts_with("LOAD")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let (off, vaddr, filesz) = (hex(f[1]), hex(f[2]), hex(f[4]));
        if address >= vaddr && address - vaddr < filesz {
            return off + (address - vaddr);
        }
    }
    panic!("malloc outside every PT_LOAD");
}

/// Issue 14: `-p` attaches to a running process and the probes (breakpoints in libc's
/// malloc) and BPF filters are gone when rprof ends, however it ends: here SIGKILL.
#[test]
fn attach_and_probes_go_away_after_kill_9() {
    if !is_root() {
        return skip("uprobes and BPF need root");
    }
    let dir = tempdir();
    let target = KillOnDrop(
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    let _one = one_at_a_time();
    std::thread::sleep(Duration::from_millis(200));
    let libc = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
        .map(PathBuf::from)
        .expect("sleep maps libc");
    let offset = malloc_offset(&libc);
    let original = mapped_byte(pid, &libc, offset);
    assert_ne!(original, 0xcc, "no breakpoint before rprof runs");
    let pid_s = pid.to_string();
    // -p with --duration: a profile of a process that allocates nothing.
    let out = rprof(
        dir.path(),
        &[
            "record",
            "--alloc",
            "-p",
            &pid_s,
            "--duration",
            "0.5",
            "-o",
            "p.data",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("allocations: 0 calls"),
        "{}",
        stderr(&out)
    );
    let mut running = rprof(
        dir.path(),
        &["record", "--alloc", "-p", &pid_s, "-o", "k.data"],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while mapped_byte(pid, &libc, offset) != 0xcc {
        assert!(Instant::now() < deadline, "the probe never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rprof_alloc::bpf::programs_named(rprof_alloc::bpf::PROGRAM_NAME).unwrap() > 0);
    running.kill().unwrap();
    running.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while mapped_byte(pid, &libc, offset) != original {
        assert!(
            Instant::now() < deadline,
            "the probe stayed after rprof was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // No BPF program of rprof is left in the kernel (freed with the last perf event).
    let deadline = Instant::now() + Duration::from_secs(60);
    while rprof_alloc::bpf::programs_named(rprof_alloc::bpf::PROGRAM_NAME).unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "a BPF program of rprof stayed loaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 14: the probes are enabled only once their BPF filter is attached. Enabled at once,
/// they recorded a stack for the calls of an attached process until then (400–530 stacks in
/// 2 s where about 15 were due); now the stacks follow the sampling rate.
#[test]
fn attached_stacks_follow_the_sampling_rate() {
    if !is_root() {
        return skip("uprobes and BPF need root");
    }
    let exe = build_c("bench_alloc.c", "bench_alloc", &["-g", "-O2"]);
    let _one = one_at_a_time();
    let target = KillOnDrop(
        Command::new(&exe)
            .arg("100000000000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempdir();
    let pid = target.0.id().to_string();
    // Twice: before the fix, about 2 runs in 3 showed it.
    for _ in 0..2 {
        let args = [
            "record",
            "--alloc",
            "-p",
            &pid,
            "--duration",
            "2",
            "-o",
            "p.data",
        ];
        let out = rprof(dir.path(), &args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let out = rprof(dir.path(), &["report", "-i", "p.data", "--json"])
            .output()
            .unwrap();
        let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let s = &json["summary"];
        assert!(u(&s["alloc_calls"]) >= 1000, "{s}");
        // Calls of 16–271 bytes: a stack with probability size / 512 KiB.
        let due = u(&s["alloc_bytes"]) / (512 * 1024);
        let taken = u(&s["stacks"]);
        assert!(
            taken <= 3 * due + 20,
            "{taken} stacks where {due} were due: {s}"
        );
    }
}
