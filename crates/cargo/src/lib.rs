//! rprof-cargo: the work of `cargo rprof`, the way Rust users profile a cargo target in one
//! command (as with `cargo flamegraph`, without perf).
//!
//! [`run`] builds the target through `cargo build --message-format=json-render-diagnostics`
//! with debug information turned on by the environment (`CARGO_PROFILE_<P>_DEBUG=true`; the
//! user's `Cargo.toml` is never edited), learns the executable's path from cargo's
//! `compiler-artifact` messages ([`parse_messages`], [`choose`]), records it with
//! `rprof record`, writes the flame graph with `rprof flame` and prints the top of
//! `rprof report`. The `rprof` binary is the one beside `cargo-rprof` or else the one on
//! `PATH` ([`find_rprof`]).
//!
//! It leaves to others the command line of `cargo-rprof` (the binary, `src/bin/cargo-rprof.rs`)
//! and everything about recording and rendering (the `rprof` binary it runs).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde::Deserialize;

/// The kind of target to profile, as cargo's `--bin`/`--example`/`--test`/`--bench` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A binary (`--bin`).
    Bin,
    /// An example (`--example`).
    Example,
    /// An integration test (`--test`).
    Test,
    /// A benchmark (`--bench`); run with `--bench` as its first argument, as `cargo bench` does.
    Bench,
}

impl TargetKind {
    /// The cargo flag, without dashes, and the target kind cargo's messages give.
    pub fn flag(self) -> &'static str {
        match self {
            TargetKind::Bin => "bin",
            TargetKind::Example => "example",
            TargetKind::Test => "test",
            TargetKind::Bench => "bench",
        }
    }
}

/// A target asked for by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its kind.
    pub kind: TargetKind,
    /// Its name.
    pub name: String,
}

/// What `cargo rprof` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The cargo to run. Default: `$CARGO` (set when cargo runs a subcommand), else `cargo`.
    pub cargo: OsString,
    /// The target. Default `None`: the package's one binary.
    pub target: Option<Target>,
    /// `-p SPEC`: the package in a workspace. Default `None`.
    pub package: Option<String>,
    /// `--manifest-path`. Default `None`.
    pub manifest_path: Option<PathBuf>,
    /// The cargo profile built. Default `release`.
    pub profile: String,
    /// `--features` (comma-joined). Default none.
    pub features: Vec<String>,
    /// `--all-features`. Default `false`.
    pub all_features: bool,
    /// `--no-default-features`. Default `false`.
    pub no_default_features: bool,
    /// Options passed to `rprof record` before `--`. Default none.
    pub record_args: Vec<OsString>,
    /// Where the profile goes. Default `rprof.data`.
    pub data: PathBuf,
    /// Where the flame graph goes. Default `flame.svg`.
    pub flame: PathBuf,
    /// Rows of the report printed. Default 20.
    pub top: usize,
    /// Open the flame graph with `xdg-open`. Default `false`.
    pub open: bool,
    /// Arguments of the profiled program. Default none.
    pub args: Vec<OsString>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            target: None,
            package: None,
            manifest_path: None,
            profile: "release".into(),
            features: Vec::new(),
            all_features: false,
            no_default_features: false,
            record_args: Vec::new(),
            data: "rprof.data".into(),
            flame: "flame.svg".into(),
            top: 20,
            open: false,
            args: Vec::new(),
        }
    }
}

/// Why `cargo rprof` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// `cargo build` failed (its messages are on stderr already).
    #[error("cargo build failed{}", exit_text(*.code))]
    Build {
        /// Its exit code.
        code: i32,
    },
    /// The build made no executable to profile.
    #[error("the build made no executable{}; name one with --bin, --example, --test or --bench", match .wanted { Some(t) => format!(" for --{} {}", t.kind.flag(), t.name), None => String::new() })]
    NoExecutable {
        /// The target asked for.
        wanted: Option<Target>,
    },
    /// Several binaries and no `--bin`.
    #[error("the build made several binaries ({}): choose one with --bin NAME", .names.join(", "))]
    Ambiguous {
        /// Their names.
        names: Vec<String>,
    },
    /// No `rprof` binary to run.
    #[error(
        "cannot find rprof beside {} or on PATH: install both with `cargo install --path .` in \
         rprof's repository",
        .beside.display()
    )]
    NoRprof {
        /// Where cargo-rprof looked first.
        beside: PathBuf,
    },
    /// Reading cargo's messages failed.
    #[error("cannot read cargo's messages: {0}")]
    Messages(io::Error),
}

fn exit_text(code: i32) -> String {
    format!(" (exit code {code})")
}

impl Error {
    /// The exit code `cargo rprof` ends with: cargo's own when the build failed, 2 when the
    /// command line names no single executable, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Build { code } => *code,
            Error::NoExecutable { .. } | Error::Ambiguous { .. } => 2,
            _ => 1,
        }
    }
}

/// The environment variable that sets `key` of cargo profile `profile`:
/// `CARGO_PROFILE_RELEASE_DEBUG` for (`release`, `debug`); dashes become underscores.
pub fn profile_env(profile: &str, key: &str) -> String {
    format!("CARGO_PROFILE_{}_{}", profile, key)
        .to_uppercase()
        .replace('-', "_")
}

/// The `cargo build` of `options`, with its messages as JSON on stdout (diagnostics rendered
/// on stderr) and debug information turned on (and symbols kept) by the environment, unless
/// the user set those variables themselves.
pub fn build_command(options: &Options) -> Command {
    let mut cmd = Command::new(&options.cargo);
    cmd.args([
        "build",
        "--message-format=json-render-diagnostics",
        "--profile",
    ])
    .arg(&options.profile);
    if let Some(target) = &options.target {
        cmd.arg(format!("--{}", target.kind.flag()))
            .arg(&target.name);
    }
    if let Some(package) = &options.package {
        cmd.arg("--package").arg(package);
    }
    if let Some(manifest) = &options.manifest_path {
        cmd.arg("--manifest-path").arg(manifest);
    }
    if !options.features.is_empty() {
        cmd.arg("--features").arg(options.features.join(","));
    }
    if options.all_features {
        cmd.arg("--all-features");
    }
    if options.no_default_features {
        cmd.arg("--no-default-features");
    }
    for (key, value) in [("debug", "true"), ("strip", "false")] {
        let name = profile_env(&options.profile, key);
        if std::env::var_os(&name).is_none() {
            cmd.env(name, value);
        }
    }
    cmd
}

/// An executable cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The target's name.
    pub name: String,
    /// The target's kinds (`bin`, `example`, `test`, `bench`, ...).
    pub kinds: Vec<String>,
    /// Built as a test harness (`--test`, `--bench`).
    pub test: bool,
    /// The executable.
    pub executable: PathBuf,
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<MessageTarget>,
    #[serde(default)]
    profile: Option<MessageProfile>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct MessageTarget {
    name: String,
    #[serde(default)]
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct MessageProfile {
    #[serde(default)]
    test: bool,
}

/// The longest message line read; longer lines are skipped (cargo's are far shorter).
const MAX_LINE: usize = 1 << 20;

/// The executables among cargo's JSON messages (one per line; other lines and other messages
/// are skipped).
pub fn parse_messages(input: impl BufRead) -> io::Result<Vec<Artifact>> {
    let mut artifacts = Vec::new();
    let mut input = input;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            // Skip the rest of an overlong line.
            input.skip_until(b'\n')?;
            continue;
        }
        let Ok(message) = serde_json::from_slice::<Message>(&line) else {
            continue;
        };
        if message.reason != "compiler-artifact" {
            continue;
        }
        if let (Some(target), Some(executable)) = (message.target, message.executable) {
            artifacts.push(Artifact {
                name: target.name,
                kinds: target.kind,
                test: message.profile.is_some_and(|p| p.test),
                executable,
            });
        }
    }
    Ok(artifacts)
}

/// The executable to profile: the one of `wanted`, or the only binary.
pub fn choose<'a>(
    artifacts: &'a [Artifact],
    wanted: Option<&Target>,
) -> Result<&'a Artifact, Error> {
    let kind_of = |a: &Artifact, kind: &str| a.kinds.iter().any(|k| k == kind);
    match wanted {
        Some(target) => artifacts
            .iter()
            .find(|a| a.name == target.name && kind_of(a, target.kind.flag()))
            .ok_or_else(|| Error::NoExecutable {
                wanted: Some(target.clone()),
            }),
        None => {
            let bins: Vec<&Artifact> = artifacts
                .iter()
                .filter(|a| kind_of(a, "bin") && !a.test)
                .collect();
            match bins.as_slice() {
                [one] => Ok(one),
                [] => Err(Error::NoExecutable { wanted: None }),
                many => {
                    let mut names: Vec<String> = many.iter().map(|a| a.name.clone()).collect();
                    names.sort();
                    names.dedup();
                    Err(Error::Ambiguous { names })
                }
            }
        }
    }
}

/// The `rprof` binary: beside `cargo-rprof` (how `cargo install` puts them), else on `PATH`.
pub fn find_rprof() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let beside = dir.join("rprof");
    if beside.is_file() {
        return Ok(beside);
    }
    rprof_launch::find_program(OsStr::new("rprof")).map_err(|_| Error::NoRprof { beside: dir })
}

/// The exit code of a finished child (128+N for a signal, as a shell says it).
fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn spawn_error(program: &OsStr) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

/// Identifies the file at `path`, so that a profile left from an earlier run is not taken for
/// a new one (rprof writes a new file and renames it into place).
fn identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// What [`run`] tells the user along the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The executable that is recorded.
    Recording(PathBuf),
    /// `--open` without `xdg-open` on this machine.
    NoOpener(PathBuf),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Recording(exe) => write!(f, "recording {}", exe.display()),
            Note::NoOpener(svg) => write!(
                f,
                "no xdg-open on this machine: open {} in a browser",
                svg.display()
            ),
        }
    }
}

/// Builds, records, writes the flame graph and prints the report. Returns the exit code: the
/// recorded program's (as `rprof record` gives it), or the first failing step's.
pub fn run(options: &Options, tell: &mut dyn FnMut(Note)) -> Result<i32, Error> {
    let mut build = build_command(options);
    build.stdout(Stdio::piped());
    let mut child = build.spawn().map_err(spawn_error(&options.cargo))?;
    let artifacts = match child.stdout.take() {
        Some(stdout) => parse_messages(BufReader::new(stdout)).map_err(Error::Messages),
        None => Ok(Vec::new()),
    };
    let status = child.wait().map_err(spawn_error(&options.cargo))?;
    if !status.success() {
        return Err(Error::Build {
            code: code_of(status),
        });
    }
    let artifacts = artifacts?;
    let artifact = choose(&artifacts, options.target.as_ref())?;
    let rprof = find_rprof()?;

    tell(Note::Recording(artifact.executable.clone()));
    let before = identity(&options.data);
    let mut record = Command::new(&rprof);
    record
        .arg("record")
        .arg("-o")
        .arg(&options.data)
        .args(&options.record_args)
        .arg("--")
        .arg(&artifact.executable);
    if options
        .target
        .as_ref()
        .is_some_and(|t| t.kind == TargetKind::Bench)
    {
        record.arg("--bench");
    }
    record.args(&options.args);
    let recorded = code_of(record.status().map_err(spawn_error(rprof.as_os_str()))?);
    let after = identity(&options.data);
    if after.is_none() || after == before {
        // rprof said why on stderr; nothing new to draw.
        return Ok(if recorded == 0 { 1 } else { recorded });
    }

    let flame = Command::new(&rprof)
        .arg("flame")
        .arg("-i")
        .arg(&options.data)
        .arg("-o")
        .arg(&options.flame)
        .status()
        .map_err(spawn_error(rprof.as_os_str()))?;
    if !flame.success() {
        return Ok(code_of(flame));
    }
    let report = Command::new(&rprof)
        .arg("report")
        .arg("-i")
        .arg(&options.data)
        .arg("--top")
        .arg(options.top.to_string())
        .status()
        .map_err(spawn_error(rprof.as_os_str()))?;
    if !report.success() {
        return Ok(code_of(report));
    }
    if options.open {
        match rprof_launch::find_program(OsStr::new("xdg-open")) {
            Ok(opener) => {
                // The browser's fate is not ours: a failure to open is xdg-open's to report.
                let _ = Command::new(opener).arg(&options.flame).status();
            }
            Err(_) => tell(Note::NoOpener(options.flame.clone())),
        }
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGES: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///p#hot@0.1.0","target":{"kind":["lib"],"name":"hot"},"profile":{"test":false},"executable":null}
not json at all
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"hot"},"profile":{"test":false},"executable":"/t/release/hot"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"other"},"profile":{"test":false},"executable":"/t/release/other"}
{"reason":"compiler-artifact","target":{"kind":["example"],"name":"demo"},"profile":{"test":false},"executable":"/t/release/examples/demo"}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"speed"},"profile":{"test":true},"executable":"/t/release/deps/speed-1234"}
{"reason":"build-finished","success":true}
"#;

    /// Issue 16: executables are taken from cargo's compiler-artifact messages; other lines are
    /// skipped.
    #[test]
    fn executables_come_from_the_messages() {
        let artifacts = parse_messages(MESSAGES.as_bytes()).unwrap();
        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["hot", "other", "demo", "speed"]);
        assert!(artifacts[3].test);
        let want = |kind, name: &str| Target {
            kind,
            name: name.into(),
        };
        let pick = |t: Option<Target>| {
            choose(&artifacts, t.as_ref()).map(|a| a.executable.display().to_string())
        };
        assert_eq!(
            pick(Some(want(TargetKind::Bin, "other"))).unwrap(),
            "/t/release/other"
        );
        assert_eq!(
            pick(Some(want(TargetKind::Example, "demo"))).unwrap(),
            "/t/release/examples/demo"
        );
        assert_eq!(
            pick(Some(want(TargetKind::Bench, "speed"))).unwrap(),
            "/t/release/deps/speed-1234"
        );
        // A name of the wrong kind is not taken.
        assert!(matches!(
            pick(Some(want(TargetKind::Bin, "demo"))),
            Err(Error::NoExecutable { .. })
        ));
        match pick(None) {
            Err(e @ Error::Ambiguous { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "the build made several binaries (hot, other): choose one with --bin NAME"
                );
                assert_eq!(e.exit_code(), 2);
            }
            other => panic!("{other:?}"),
        }
        let one = parse_messages(
            MESSAGES
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(choose(&one, None).unwrap().name, "hot");
    }

    /// An overlong line is skipped, not held whole.
    #[test]
    fn overlong_lines_are_skipped() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.push(b'\n');
        input.extend_from_slice(MESSAGES.lines().nth(2).unwrap().as_bytes());
        let artifacts = parse_messages(&input[..]).unwrap();
        assert_eq!(artifacts.len(), 1);
    }

    /// Issue 16: debug info is turned on through the environment of the profile built.
    #[test]
    fn the_build_turns_debug_info_on_by_environment() {
        assert_eq!(
            profile_env("release", "debug"),
            "CARGO_PROFILE_RELEASE_DEBUG"
        );
        assert_eq!(
            profile_env("my-prof", "strip"),
            "CARGO_PROFILE_MY_PROF_STRIP"
        );
        let options = Options {
            cargo: "cargo".into(),
            profile: "bench".into(),
            target: Some(Target {
                kind: TargetKind::Example,
                name: "demo".into(),
            }),
            features: vec!["a".into(), "b".into()],
            ..Options::default()
        };
        let cmd = build_command(&options);
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(
            args,
            [
                "build",
                "--message-format=json-render-diagnostics",
                "--profile",
                "bench",
                "--example",
                "demo",
                "--features",
                "a,b"
            ]
        );
        let envs: Vec<(&OsStr, Option<&OsStr>)> = cmd.get_envs().collect();
        if std::env::var_os("CARGO_PROFILE_BENCH_DEBUG").is_none() {
            assert!(envs.contains(&(
                OsStr::new("CARGO_PROFILE_BENCH_DEBUG"),
                Some(OsStr::new("true"))
            )));
        }
    }
}
