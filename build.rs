//! Build script of the rprof binaries: the version `rprof --version` prints, with the git
//! commit it was built from.
//!
//! `RPROF_VERSION` is `0.1.0 (abc1234)` when the package is built from its own git checkout
//! (the repository's top level is this package's directory), `0.1.0 (abc1234, from
//! RPROF_BUILD_COMMIT)` when a packager sets `RPROF_BUILD_COMMIT`, and plain `0.1.0` otherwise:
//! built from a crates tarball, without git, or from a copy inside somebody else's repository.
//! Nothing else is generated.

use std::path::Path;
use std::process::Command;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RPROF_BUILD_COMMIT");
    let packaged = std::env::var("RPROF_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    let full = match packaged {
        Some(commit) => format!("{version} ({commit})"),
        None => match commit(Path::new(&manifest_dir)) {
            Some(commit) => {
                for file in watched(Path::new(&manifest_dir)) {
                    println!("cargo:rerun-if-changed={file}");
                }
                format!("{version} ({commit})")
            }
            None => version,
        },
    };
    println!("cargo:rustc-env=RPROF_VERSION={full}");
}

/// Runs git in `dir` with `args`; its trimmed output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The short commit of HEAD, when `dir` is the top level of a git work tree (not a directory
/// inside another repository, as an unpacked crate in a vendor directory may be).
pub fn commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = std::fs::canonicalize(&top).ok()? == std::fs::canonicalize(dir).ok()?;
    if !same {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short", "HEAD"])?;
    commit
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(commit)
}

/// The files whose change moves HEAD: HEAD itself, the branch it points to, packed refs.
fn watched(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut paths = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for path in paths {
        // Relative to `dir`, or absolute (in a linked work tree).
        if let Some(file) = git(dir, &["rev-parse", "--git-path", &path]) {
            let file = dir.join(file);
            if file.exists() {
                files.push(file.display().to_string());
            }
        }
    }
    files
}
