//! Helpers shared by the integration tests: the binary, temporary directories, fixture builds and
//! golden-file comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Path of the `rprof` binary under test.
pub fn rprof_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rprof"))
}

/// A `Command` for `rprof` with the given arguments, run in `dir`.
pub fn rprof(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(rprof_bin());
    cmd.args(args).current_dir(dir).env_remove("RUST_BACKTRACE");
    cmd
}

/// Runs `rprof` with `args` in `dir` and returns its output.
pub fn run_rprof(dir: &Path, args: &[&str]) -> Output {
    rprof(dir, args).output().expect("rprof runs")
}

/// Headless Chromium (`chromium` is its path) under a 120 s `timeout`, with a fresh profile in
/// `scratch` and the flags that keep it off the network (this machine refuses connections);
/// the caller adds `--dump-dom` or `--screenshot` and the URL.
pub fn headless_chromium(chromium: &Path, scratch: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(chromium).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]);
    cmd.arg(format!("--user-data-dir={}", scratch.display()));
    cmd
}

/// Runs `rprof SUBCOMMAND ARGS` in `dir` and requires success (the failure shows stderr).
pub fn rprof_ok(dir: &Path, subcommand: &str, args: &[&str]) -> Output {
    let mut all = vec![subcommand];
    all.extend_from_slice(args);
    let out = run_rprof(dir, &all);
    assert!(
        out.status.success(),
        "rprof {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub use rprof_testkit::skip;

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rprof-test-")
        .tempdir()
        .expect("temporary directory")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where built fixtures go: `target/fixtures/` beside the test binary's target directory.
pub fn fixture_out_dir() -> PathBuf {
    let exe = rprof_bin();
    let target = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("fixtures");
    std::fs::create_dir_all(&dir).expect("fixture directory");
    dir
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Compiles `fixtures/<source>` (C) with gcc and `flags` into an executable named `name`,
/// rebuilding only when the source is newer. Returns the executable's path.
pub fn build_c(source: &str, name: &str, flags: &[&str]) -> PathBuf {
    build_fixture(source, name, |src, tmp| {
        let mut gcc = Command::new("gcc");
        gcc.args(flags)
            .arg("-o")
            .arg(tmp)
            .arg(src)
            .arg("-lpthread")
            .arg("-lm");
        gcc
    })
}

/// Compiles `fixtures/<source>` (Rust) with rustc (`-C opt-level=2 -C debuginfo=2`, edition
/// 2021) into an executable named `name`, rebuilding only when the source is newer. Returns
/// the executable's path.
pub fn build_rust(source: &str, name: &str) -> PathBuf {
    build_fixture(source, name, |src, tmp| {
        let mut rustc = Command::new("rustc");
        rustc
            .args([
                "-C",
                "opt-level=2",
                "-C",
                "debuginfo=2",
                "--edition",
                "2021",
            ])
            .arg("-o")
            .arg(tmp)
            .arg(src);
        rustc
    })
}

/// Runs the compiler `command(source, temporary output)` when `fixtures/<source>` is newer
/// than the executable `name` (or it is missing), then moves the output into place, so that
/// a test never runs a half-written executable. One build at a time.
fn build_fixture(
    source: &str,
    name: &str,
    command: impl FnOnce(&Path, &Path) -> Command,
) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = repo_root().join("fixtures").join(source);
    let out = fixture_out_dir().join(name);
    let stale = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => s.modified().ok() > o.modified().ok(),
        _ => true,
    };
    if stale {
        let tmp = out.with_extension("tmp");
        let mut compiler = command(&src, &tmp);
        let status = compiler.status().expect("the compiler runs");
        assert!(status.success(), "{compiler:?} failed on {}", src.display());
        std::fs::rename(&tmp, &out).expect("rename built fixture");
    }
    out
}

/// Compares `actual` with the expected file `fixtures/golden/<name>`; with `RPROF_BLESS=1` in the
/// environment, rewrites the expected file instead.
pub fn assert_golden(name: &str, actual: &str) {
    let path = repo_root().join("fixtures").join("golden").join(name);
    if std::env::var_os("RPROF_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("mkdir golden");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with RPROF_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let mut msg = format!("{} differs from the actual output\n", path.display());
        for diff in line_diff(&expected, actual).into_iter().take(40) {
            msg.push_str(&diff);
            msg.push('\n');
        }
        msg.push_str("(run with RPROF_BLESS=1 to accept the new output)");
        panic!("{msg}");
    }
}

fn line_diff(expected: &str, actual: &str) -> Vec<String> {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = Vec::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push(format!("{:>4} - {x}", i + 1));
                }
                if let Some(y) = y {
                    out.push(format!("{:>4} + {y}", i + 1));
                }
            }
        }
    }
    out
}

/// stderr of an output as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout of an output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A `Command` running `program` as the user nobody (uid and gid 65534, no supplementary groups,
/// a reset environment) through `setpriv`. Only root can do this: check [`is_root`] first.
pub fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--reset-env",
    ])
    .arg(program);
    cmd
}

/// Why an unprivileged recording cannot be checked here, or `None` when it can: the check needs
/// `kernel.perf_event_paranoid` at 2 or more (below that an unprivileged user may sample the
/// kernel, so there is nothing to check) and root (to become the user nobody).
pub fn unprivileged_check_unavailable() -> Option<&'static str> {
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if paranoid.is_none_or(|p| p < 2) {
        return Some(
            "kernel.perf_event_paranoid is below 2: unprivileged kernel sampling is allowed here",
        );
    }
    if !is_root() {
        return Some("needs root to run the recording as the user nobody");
    }
    None
}

/// The byte at file offset `offset` of `file` as process `pid` maps it, read through
/// `/proc/PID/mem` (a breakpoint that a probe planted shows there, not in the file).
pub fn mapped_byte(pid: u32, file: &Path, offset: u64) -> u8 {
    use std::io::{Read, Seek, SeekFrom};
    let file = file.canonicalize().unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || Path::new(f[5]) != file {
            continue;
        }
        let (start, end) = f[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let map_off = u64::from_str_radix(f[2], 16).unwrap();
        if offset >= map_off && offset - map_off < end - start {
            let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
            mem.seek(SeekFrom::Start(start + offset - map_off)).unwrap();
            let mut b = [0u8];
            mem.read_exact(&mut b).unwrap();
            return b[0];
        }
    }
    panic!(
        "offset {offset:#x} of {} not mapped in {pid}",
        file.display()
    );
}

/// A child process killed and reaped when the test ends, however it ends (a failed assertion
/// included).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
