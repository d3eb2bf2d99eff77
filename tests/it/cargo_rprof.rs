//! Integration tests of `cargo rprof`: a small cargo project made at test time (no
//! dependencies, so it builds offline) is built, recorded and drawn; its hot function must top
//! the report and the flame graph must exist. The project's target directory is kept under
//! `target/tmp/`, so that a second run only relinks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{repo_root, stderr, stdout, tempdir};

const MANIFEST: &str = r#"[package]
name = "hotspot"
version = "0.1.0"
edition = "2021"

[[bin]]
name = "hotspot"
path = "src/main.rs"

[[bin]]
name = "other"
path = "src/other.rs"
"#;

/// `hot_spot_work` does about 90% of the work, `cold_spot_work` the rest.
const MAIN: &str = r#"use std::hint::black_box;

#[inline(never)]
fn hot_spot_work(n: u64) -> f64 {
    let mut x = 0.0f64;
    for i in 0..n {
        x = black_box(x * 0.999_999 + i as f64);
    }
    x
}

#[inline(never)]
fn cold_spot_work(n: u64) -> f64 {
    let mut x = 0.0f64;
    for i in 0..n {
        x = black_box(x * 0.999_998 + i as f64);
    }
    x
}

fn main() {
    let millions: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let n = millions * 1_000_000;
    let result = hot_spot_work(9 * n) + cold_spot_work(n);
    println!("{result}");
}
"#;

const OTHER: &str = "fn main() {}\n";

fn cargo_rprof_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-rprof"))
}

/// A fresh copy of the project in a temporary directory.
fn project() -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), MANIFEST).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), MAIN).unwrap();
    std::fs::write(dir.path().join("src/other.rs"), OTHER).unwrap();
    dir
}

/// Runs `cargo rprof ARGS` (as cargo runs it: `cargo-rprof rprof ARGS`) in `dir`.
fn cargo_rprof(dir: &Path, args: &[&str]) -> Output {
    let target = repo_root().join("target/tmp/cargo-rprof-target");
    Command::new(cargo_rprof_bin())
        .arg("rprof")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .env_remove("CARGO_PROFILE_RELEASE_STRIP")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo-rprof runs")
}

/// Issue 16: `cargo rprof --bin hotspot` builds with debug info (source lines in the report)
/// without touching Cargo.toml, records, writes flame.svg and prints the report with the hot
/// function on top.
#[test]
fn cargo_rprof_profiles_a_binary() {
    let dir = project();
    let out = cargo_rprof(dir.path(), &["--bin", "hotspot", "--top", "5", "--", "40"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "cargo rprof failed: {}\n{text}",
        stderr(&out)
    );
    // The report: the first row of the table is the hot function, with its source line.
    let mut rows = text.lines().skip_while(|l| !l.contains("Self%")).skip(1);
    let first = rows
        .next()
        .unwrap_or_else(|| panic!("no table in:\n{text}"));
    assert!(first.contains("hot_spot_work"), "{text}");
    assert!(
        first.contains("main.rs:"),
        "no source line (debug info off?): {text}"
    );
    let share: f64 = first.split('%').next().unwrap().trim().parse().unwrap();
    assert!(share >= 60.0, "{text}");
    assert!(text.contains("cold_spot_work"), "{text}");

    let svg = std::fs::read_to_string(dir.path().join("flame.svg")).expect("flame.svg written");
    assert!(svg.contains("hot_spot_work"));
    assert!(dir.path().join("rprof.data").is_file());
    assert!(
        stderr(&out).contains("rprof: wrote the flame graph to flame.svg"),
        "{}",
        stderr(&out)
    );
    // The user's manifest is untouched.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap(),
        MANIFEST
    );
}

/// Issue 16: with two binaries and no --bin, cargo rprof says which there are (exit 2); a
/// command-line error is one line.
#[test]
fn cargo_rprof_asks_which_binary() {
    let dir = project();
    let out = cargo_rprof(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap_or("").to_string();
    assert_eq!(
        last,
        "cargo rprof: the build made several binaries (hotspot, other): choose one with --bin NAME"
    );
    assert!(!dir.path().join("rprof.data").exists());

    let out = cargo_rprof(dir.path(), &["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("cargo rprof: unexpected argument '--bogus'"),
        "{err}"
    );
}
