//! The whole pipeline on designed workloads (issue 3's proof): `rprof record` with default
//! options, then `rprof flame --folded` and `rprof report`, named by rprof itself. Workloads are
//! built without frame pointers: a C program with an inlined helper, a 300-level recursion, a
//! shared library with and without debug information and some kernel work
//! (`fixtures/pipeline_c.c`, `fixtures/pipeline_lib.c`), and an optimized Rust program with
//! debug info and an inlined generic (`fixtures/pipeline_rust.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use rprof_profile::{FrameKind, Profile};

use crate::util::{fixture_out_dir, repo_root, run_rprof, stderr, stdout, tempdir};

/// Allowed distance between a measured share and the designed one (absolute, 0..1).
const TOLERANCE: f64 = 0.08;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct CBuild {
    exe: PathBuf,
    /// Holds `libpipeline_lib.so` with DWARF.
    debug_lib_dir: PathBuf,
    /// Holds `libpipeline_lib.so` stripped to `.dynsym` (+ `.eh_frame`).
    stripped_lib_dir: PathBuf,
}

/// Builds the C workload and both copies of its library, once per test run.
fn c_build() -> &'static CBuild {
    static BUILT: OnceLock<CBuild> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    BUILT.get_or_init(|| {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fixture_out_dir().join("pipeline");
        let debug_lib_dir = dir.join("debug");
        let stripped_lib_dir = dir.join("stripped");
        std::fs::create_dir_all(&debug_lib_dir).unwrap();
        std::fs::create_dir_all(&stripped_lib_dir).unwrap();
        let fixtures = repo_root().join("fixtures");
        let flags = ["-O2", "-g", "-fomit-frame-pointer"];
        let lib = debug_lib_dir.join("libpipeline_lib.so");
        run(Command::new("gcc")
            .args(flags)
            .args(["-fPIC", "-shared", "-o"])
            .arg(&lib)
            .arg(fixtures.join("pipeline_lib.c")));
        let stripped = stripped_lib_dir.join("libpipeline_lib.so");
        run(Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped)
            .arg(&lib));
        let exe = dir.join("pipeline_c");
        // Issue 10: `-z now` binds every symbol at start-up. With lazy binding, the first call of
        // each imported function runs `_dl_runtime_resolve_xsavec`, whose CFA is rbx + 24;
        // framehop (and the registers rprof samples) know only rip, rsp and rbp, so a sample
        // there (in a few per cent of runs) is a `[truncated]` stack that has nothing to do
        // with what these tests check.
        run(Command::new("gcc")
            .args(flags)
            .arg("-Wl,-z,now")
            .arg("-o")
            .arg(&exe)
            .arg(fixtures.join("pipeline_c.c"))
            .arg("-L")
            .arg(&debug_lib_dir)
            .arg("-lpipeline_lib"));
        CBuild {
            exe,
            debug_lib_dir,
            stripped_lib_dir,
        }
    })
}

/// Builds the Rust workload (optimized, full debug info, no frame pointers), once per run.
fn rust_build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = fixture_out_dir().join("pipeline");
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("pipeline_rust");
        run(Command::new("rustc")
            .args([
                "-C",
                "opt-level=3",
                "-C",
                "debuginfo=2",
                "--edition",
                "2021",
            ])
            .args(["-C", "force-frame-pointers=no", "-o"])
            .arg(&exe)
            .arg(repo_root().join("fixtures").join("pipeline_rust.rs")));
        exe
    })
}

/// Folded stacks as (frames root first without the thread name, count).
fn folded(dir: &Path, profile: &str) -> Vec<(Vec<String>, u64)> {
    let out = run_rprof(dir, &["flame", "--folded", "-i", profile, "-o", "-"]);
    assert!(out.status.success(), "flame --folded: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').expect("`STACK COUNT`");
            let frames = stack.split(';').skip(1).map(str::to_owned).collect();
            (frames, count.parse().expect("a count"))
        })
        .collect()
}

fn total(stacks: &[(Vec<String>, u64)]) -> u64 {
    stacks.iter().map(|(_, n)| n).sum()
}

/// Share of samples whose stack contains the frame `name`.
fn share_reaching(stacks: &[(Vec<String>, u64)], name: &str) -> f64 {
    let reached: u64 = stacks
        .iter()
        .filter(|(frames, _)| frames.iter().any(|f| f == name))
        .map(|(_, n)| n)
        .sum();
    reached as f64 / total(stacks) as f64
}

/// Samples per designed path: the frames after `main`, with runs of a recursive frame counted.
fn paths_after(stacks: &[(Vec<String>, u64)], root: &str) -> BTreeMap<String, u64> {
    let mut paths = BTreeMap::new();
    for (frames, n) in stacks {
        let Some(at) = frames.iter().position(|f| f == root) else {
            continue;
        };
        let mut path: Vec<String> = Vec::new();
        for f in &frames[at + 1..] {
            match path.last_mut() {
                Some(last) if last == f || last.starts_with(&format!("{f}×")) => {
                    let count = last
                        .rsplit_once('×')
                        .map_or(1, |(_, c)| c.parse::<u32>().unwrap());
                    *last = format!("{f}×{}", count + 1);
                }
                _ => path.push(f.clone()),
            }
        }
        *paths.entry(path.join(";")).or_default() += n;
    }
    paths
}

/// Samples whose path is `prefix` or continues it (e.g. with kernel frames of an interrupt).
fn starting_with(paths: &BTreeMap<String, u64>, prefix: &str) -> u64 {
    paths
        .iter()
        .filter(|(p, _)| *p == prefix || p.starts_with(&format!("{prefix};")))
        .map(|(_, n)| n)
        .sum()
}

fn record(dir: &Path, output: &str, lib_dir: Option<&Path>, argv: &[&str]) {
    let mut cmd = crate::util::rprof(dir, &["record", "-o", output, "--"]);
    cmd.args(argv);
    if let Some(lib_dir) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", lib_dir);
    }
    let out = cmd.output().expect("rprof runs");
    assert!(out.status.success(), "record failed: {}", stderr(&out));
}

/// Records `argv` into `output`, returns its folded stacks, and insists that at least 95 % of
/// them reach `root` (the bar for complete stacks).
fn record_reaching(
    dir: &Path,
    output: &str,
    lib_dir: Option<&Path>,
    argv: &[&str],
    root: &str,
) -> Vec<(Vec<String>, u64)> {
    record(dir, output, lib_dir, argv);
    let stacks = folded(dir, output);
    let reach = share_reaching(&stacks, root);
    assert!(reach >= 0.95, "only {reach:.3} of the samples reach {root}");
    stacks
}

fn assert_share(what: &str, got: u64, of: u64, designed: f64) {
    let share = got as f64 / of as f64;
    assert!(
        (share - designed).abs() <= TOLERANCE,
        "{what}: {got} of {of} samples = {share:.3}, designed {designed}"
    );
}

#[test]
fn c_stacks_follow_the_designed_call_tree_from_main() {
    let build = c_build();
    let dir = tempdir();
    let exe = build.exe.to_str().unwrap();
    let stacks = record_reaching(
        dir.path(),
        "c.data",
        Some(&build.debug_lib_dir),
        &[exe, "60"],
        "main",
    );

    let paths = paths_after(&stacks, "main");
    let hot_a = starting_with(&paths, "hot_a;mix");
    let hot_b = starting_with(&paths, "hot_b");
    // deep(300) .. deep(1) call deep(level - 1); deep(0) tail-calls deep_leaf (its frame is
    // replaced): 300 deep frames.
    let deep = starting_with(&paths, "deep×300;deep_leaf");
    let lib = starting_with(&paths, "lib_work;lib_inner");
    let designed = hot_a + hot_b + deep + lib;
    let sys = starting_with(&paths, "sys_part");
    assert!(
        (designed + sys) as f64 >= 0.9 * total(&stacks) as f64,
        "designed paths hold only {designed} of {} samples: {paths:#?}",
        total(&stacks)
    );
    assert_share("main;hot_a;mix (mix inlined)", hot_a, designed, 0.4);
    assert_share("main;hot_b", hot_b, designed, 0.2);
    assert_share("main;deep×300;deep_leaf", deep, designed, 0.2);
    assert_share("main;lib_work;lib_inner", lib, designed, 0.2);
    // One known limit stays out of this check: a sample inside the dynamic loader's lazy
    // binding (`_dl_runtime_resolve_*`, the first call of a PLT entry), whose CFI finds the CFA
    // from rbx, a register rprof does not sample (docs/benchmarks.md, issue 13). A loaded
    // machine once put one of this workload's samples there.
    let truncated: Vec<String> = stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x == "[truncated]"))
        .filter(|(f, _)| {
            !(f.len() > 1 && f[0] == "[truncated]" && f[1].starts_with("_dl_runtime_resolve"))
        })
        .map(|(f, n)| format!("{n} × {}", f.join(";")))
        .collect();
    assert!(
        truncated.is_empty(),
        "stacks of this workload were truncated with default options: {truncated:#?}"
    );
}

#[test]
fn inline_and_kernel_frames_are_marked_and_named() {
    let build = c_build();
    let dir = tempdir();
    let exe = build.exe.to_str().unwrap();
    record(
        dir.path(),
        "c.data",
        Some(&build.debug_lib_dir),
        &[exe, "60"],
    );
    let profile = Profile::open(dir.path().join("c.data")).unwrap();
    let mix = profile
        .frames()
        .iter()
        .find(|f| f.function == "mix")
        .expect("a frame for the inlined `mix`");
    assert!(mix.inlined, "mix is not marked inlined: {mix:?}");
    assert!(
        mix.file
            .as_deref()
            .is_some_and(|f| f.ends_with("pipeline_c.c"))
            && mix.line.is_some(),
        "mix has no source location: {mix:?}"
    );
    // The kernel part of `sys_part`'s reads: kernel frames named from kallsyms, under sys_part.
    let under_sys_part = (0..profile.samples.len())
        .map(|i| profile.stack(profile.sample_stack(i)))
        .filter(|stack| {
            stack
                .iter()
                .any(|&f| profile.frame(f).function == "sys_part")
        })
        .filter(|stack| {
            stack.iter().any(|&f| {
                let frame = profile.frame(f);
                frame.kind == FrameKind::Kernel
                    && frame.symbolized
                    && frame.function.contains("read")
            })
        })
        .count();
    assert!(
        under_sys_part > 0,
        "no sample under sys_part has a named kernel frame of read(2)"
    );
}

#[test]
fn a_stripped_library_is_unwound_and_named_from_dynsym_and_eh_frame() {
    let build = c_build();
    let dir = tempdir();
    let exe = build.exe.to_str().unwrap();
    let stacks = record_reaching(
        dir.path(),
        "s.data",
        Some(&build.stripped_lib_dir),
        &[exe, "30"],
        "main",
    );
    let paths = paths_after(&stacks, "main");
    // lib_work is exported (named from .dynsym). The hidden lib_inner has no symbol left, so it
    // is named after the start of its .eh_frame range, `fun_<start>`: never [unknown], never
    // its neighbour's name.
    let start = nm_address(&build.debug_lib_dir.join("libpipeline_lib.so"), "lib_inner");
    let expected = format!("lib_work;fun_{start:x}");
    let lib = starting_with(&paths, &expected);
    assert!(lib > 0, "no main;{expected} path: {paths:#?}");
    assert!(
        !paths.keys().any(|p| p.contains("lib_inner")),
        "lib_inner named without its symbol: {paths:#?}"
    );
}

/// The address of `symbol` in `file`, from `nm`.
fn nm_address(file: &Path, symbol: &str) -> u64 {
    let out = Command::new("nm").arg(file).output().expect("nm runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.next()?;
            (fields.nth(1)? == symbol).then(|| u64::from_str_radix(address, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{symbol} not in nm {}", file.display()))
}

#[test]
fn a_finished_profile_reports_after_the_binaries_are_gone() {
    let build = c_build();
    let dir = tempdir();
    let copy = dir.path().join("bin");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(&build.exe, copy.join("pipeline_c")).unwrap();
    std::fs::copy(
        build.debug_lib_dir.join("libpipeline_lib.so"),
        copy.join("libpipeline_lib.so"),
    )
    .unwrap();
    let exe = copy.join("pipeline_c");
    record(
        dir.path(),
        "gone.data",
        Some(&copy),
        &[exe.to_str().unwrap(), "10"],
    );
    let before = folded(dir.path(), "gone.data");
    std::fs::remove_dir_all(&copy).unwrap();
    let after = folded(dir.path(), "gone.data");
    assert_eq!(before, after);
    let out = run_rprof(dir.path(), &["report", "-i", "gone.data", "--top", "40"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for name in ["hot_a", "mix", "hot_b", "deep_leaf", "lib_inner"] {
        assert!(
            text.contains(name),
            "{name} missing from the report:\n{text}"
        );
    }
    assert!(
        !stderr(&out).contains("naming"),
        "report had to symbolize again: {}",
        stderr(&out)
    );
}

#[test]
fn rust_release_build_with_inlined_generics() {
    let exe = rust_build();
    let dir = tempdir();
    let stacks = record_reaching(
        dir.path(),
        "r.data",
        None,
        &[exe.to_str().unwrap(), "150"],
        "main",
    );
    let paths = paths_after(&stacks, "pipeline_rust::main");
    let u32_path = starting_with(&paths, "pipeline_rust::work_u32;pipeline_rust::sum_squares");
    let f32_path = starting_with(&paths, "pipeline_rust::work_f32;pipeline_rust::sum_squares");
    let designed = u32_path + f32_path;
    assert!(
        designed as f64 >= 0.85 * total(&stacks) as f64,
        "designed paths hold only {designed} of {} samples: {paths:#?}",
        total(&stacks)
    );
    assert_share("work_u32;sum_squares", u32_path, designed, 2.0 / 3.0);
    assert_share("work_f32;sum_squares", f32_path, designed, 1.0 / 3.0);
    let profile = Profile::open(dir.path().join("r.data")).unwrap();
    let generic = profile
        .frames()
        .iter()
        .find(|f| f.function == "pipeline_rust::sum_squares")
        .expect("a frame for the inlined generic");
    assert!(generic.inlined, "{generic:?}");
    assert!(
        !profile
            .frames()
            .iter()
            .any(|f| f.function.contains("::h") && f.function.ends_with('E')),
        "a mangled or hashed Rust name reached the profile"
    );
}

/// Regression (found by scripts/bench.sh): samples taken inside `execve` have the user registers
/// of the image being replaced and no user stack; they were stored as `[truncated]` stacks
/// (5 % of a short program's samples). They are kernel-only stacks, and the dynamic loader's
/// entry code (`_start`/`_dl_start_user`, no CFI) ends a stack instead of breaking it.
#[test]
fn exec_and_loader_start_up_stacks_are_not_truncated() {
    let dir = tempdir();
    let out = crate::util::rprof(
        dir.path(),
        &["record", "-F", "20000", "-o", "exec.data", "--", "sh", "-c"],
    )
    .arg("i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done")
    .output()
    .expect("rprof runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = Profile::open(dir.path().join("exec.data")).unwrap();
    let total = profile.samples.len();
    let truncated = profile.samples.iter().filter(|s| s.truncated).count();
    let in_exec = (0..total)
        .filter(|&i| {
            profile
                .stack(profile.sample_stack(i))
                .iter()
                .any(|&f| profile.frame(f).function == "load_elf_binary")
        })
        .count();
    assert!(in_exec > 0, "no sample inside execve among {total}");
    assert!(
        truncated * 50 < total,
        "{truncated} of {total} stacks truncated ({in_exec} samples inside execve)"
    );
}
