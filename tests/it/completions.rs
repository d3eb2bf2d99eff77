//! Integration tests of what rprof generates about itself: shell completions (`rprof
//! completions SHELL`), man pages (`rprof man DIR`), and the git commit in `rprof --version`
//! (made by `build.rs`, whose commit lookup is tested here directly).

use std::path::Path;
use std::process::Command;

use crate::util::{repo_root, run_rprof, stderr, stdout, tempdir};

#[allow(dead_code)]
#[path = "../../build.rs"]
mod build_script;

/// The commands every generated text must know.
const COMMANDS: [&str; 7] = [
    "record",
    "report",
    "flame",
    "stat",
    "annotate",
    "completions",
    "man",
];

/// Issue 16: every shell's completion script is a real script that names every command and
/// some options.
#[test]
fn completions_for_every_shell() {
    let dir = tempdir();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run_rprof(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert_eq!(stderr(&out), "");
        let script = stdout(&out);
        assert!(script.len() > 2000, "{shell}: only {} bytes", script.len());
        for command in COMMANDS {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
        assert!(script.contains("call-graph"), "{shell}: no record options");
    }
    // bash can load the script.
    let out = run_rprof(dir.path(), &["completions", "bash"]);
    let file = dir.path().join("rprof.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p rprof", file.display()))
        .output()
        .expect("bash runs");
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("rprof"));
    // An unknown shell is a usage error that lists the shells.
    let out = run_rprof(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bash, elvish, fish, powershell, zsh"),
        "{}",
        stderr(&out)
    );
}

/// Issue 16: `rprof man DIR` writes rprof.1 and a page per command, creating DIR.
#[test]
fn man_pages_for_rprof_and_each_command() {
    let dir = tempdir();
    let pages = dir.path().join("share/man/man1");
    let out = run_rprof(dir.path(), &["man", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // rprof.1 and one page per command (other commands may be added: not a fixed number).
    let written = std::fs::read_dir(&pages).unwrap().count();
    assert!(written > COMMANDS.len(), "{written} pages");
    assert!(
        stderr(&out).starts_with(&format!("rprof: wrote {written} man pages to ")),
        "{}",
        stderr(&out)
    );
    let main = std::fs::read_to_string(pages.join("rprof.1")).unwrap();
    assert!(main.contains(".TH rprof 1"), "{main}");
    for command in COMMANDS {
        assert!(main.contains(command), "rprof.1 lacks {command}");
        let page = std::fs::read_to_string(pages.join(format!("rprof-{command}.1")))
            .unwrap_or_else(|e| panic!("rprof-{command}.1: {e}"));
        assert!(page.contains(&format!(".TH rprof-{command} 1")), "{page}");
        assert!(page.contains(".SH OPTIONS"), "{page}");
        assert!(page.len() > 400, "{page}");
    }
    let record = std::fs::read_to_string(pages.join("rprof-record.1")).unwrap();
    assert!(record.contains("call\\-graph"), "{record}");
    // A directory that cannot be made is one line, exit 1.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = run_rprof(dir.path(), &["man", file.join("sub").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("rprof: cannot create the directory"));
}

/// Issue 16: `rprof --version` carries the commit rprof was built from.
#[test]
fn version_carries_the_git_commit() {
    let dir = tempdir();
    let out = run_rprof(dir.path(), &["--version"]);
    assert!(out.status.success());
    let version = stdout(&out);
    let expected = match build_script::commit(&repo_root()) {
        Some(commit) => format!("rprof {} ({commit})\n", env!("CARGO_PKG_VERSION")),
        // Built outside git (a crates tarball): the version alone.
        None => format!("rprof {}\n", env!("CARGO_PKG_VERSION")),
    };
    assert_eq!(version, expected);
}

/// Issue 16: outside a git checkout, or in a directory of somebody else's repository (an
/// unpacked crate in a vendor directory), the build finds no commit; in rprof's checkout, HEAD's.
#[test]
fn the_commit_comes_only_from_rprofs_own_checkout() {
    let dir = tempdir();
    assert_eq!(build_script::commit(dir.path()), None);
    assert_eq!(build_script::commit(Path::new("/nonexistent/rprof")), None);
    // A directory inside a git repository that is not its top level.
    let outer = dir.path().join("outer");
    let inner = outer.join("vendor/rprof");
    std::fs::create_dir_all(&inner).unwrap();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&outer)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(git(&["init", "-q"]), "git init failed");
    std::fs::write(inner.join("f"), "x").unwrap();
    assert!(git(&["add", "."]));
    assert!(git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "x"
    ]));
    assert_eq!(build_script::commit(&inner), None);
    let top = build_script::commit(&outer).expect("the repository's own commit");
    assert!(top.len() >= 7 && top.bytes().all(|b| b.is_ascii_hexdigit()));
    // rprof's own checkout (the tests run in one: CI clones the repository).
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .expect("git runs");
    assert!(head.status.success(), "{}", stderr(&head));
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(build_script::commit(&repo_root()), Some(head));
}
