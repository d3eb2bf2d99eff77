//! Integration tests of DWARF unwinding through the real `rprof record` (issue 3): a fixture
//! without frame pointers (`fixtures/unwind_workload.c` + `fixtures/unwind_lib.c`) with known
//! call paths, through the main binary, a shared library and the vDSO, and a 300-level
//! recursion that must unwind to `main` with default options.
//!
//! Frames are named here from `nm` of the fixture's files (not from rprof's own symbolizer), so
//! these tests check the unwinding alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use rprof_profile::{ModuleKind, Profile};

use crate::util::{fixture_out_dir, repo_root, run_rprof, stderr, tempdir};

/// Builds the workload and its shared library (once per test run).
fn workload() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    BUILT.get_or_init(|| {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fixture_out_dir().join("unwind");
        std::fs::create_dir_all(&dir).unwrap();
        let fixtures = repo_root().join("fixtures");
        let gcc = |args: &[&std::ffi::OsStr]| {
            let out = Command::new("gcc").args(args).output().expect("gcc runs");
            assert!(
                out.status.success(),
                "gcc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let lib = dir.join("libunwind_lib.so");
        gcc(&[
            "-O2".as_ref(),
            "-fomit-frame-pointer".as_ref(),
            "-fPIC".as_ref(),
            "-shared".as_ref(),
            "-o".as_ref(),
            lib.as_os_str(),
            fixtures.join("unwind_lib.c").as_os_str(),
        ]);
        let exe = dir.join("unwind_workload");
        gcc(&[
            "-O2".as_ref(),
            "-fomit-frame-pointer".as_ref(),
            "-o".as_ref(),
            exe.as_os_str(),
            fixtures.join("unwind_workload.c").as_os_str(),
            "-L".as_ref(),
            dir.as_os_str(),
            "-lunwind_lib".as_ref(),
            "-Wl,-rpath,$ORIGIN".as_ref(),
        ]);
        exe
    })
}

/// Function symbols of an ELF file from `nm`: (start, end, name), sorted.
fn nm(path: &str) -> Vec<(u64, u64, String)> {
    let Ok(out) = Command::new("nm")
        .args(["--defined-only", "-S", path])
        .output()
    else {
        return Vec::new();
    };
    let mut syms: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 4 || !matches!(f[2], "T" | "t") {
                return None;
            }
            let start = u64::from_str_radix(f[0], 16).ok()?;
            let size = u64::from_str_radix(f[1], 16).ok()?;
            let name = f[3].split('.').next()?.to_string();
            Some((start, start + size, name))
        })
        .collect();
    syms.sort();
    syms
}

/// Every sample's user stack as function names (leaf first), "[vdso]" for the vDSO, and
/// whether it was marked truncated.
fn stacks(profile: &Profile) -> Vec<(Vec<String>, bool)> {
    let mut symbols: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    profile
        .samples
        .iter()
        .map(|s| {
            let names = s
                .user
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let Some(module) = a.module.and_then(|id| profile.modules.get(&id)) else {
                        return format!("?{:#x}", a.address);
                    };
                    if module.kind == ModuleKind::Vdso {
                        return "[vdso]".to_string();
                    }
                    let lookup = if i == 0 { a.address } else { a.address - 1 };
                    let syms = symbols
                        .entry(module.path.clone())
                        .or_insert_with(|| nm(&module.path));
                    syms.iter()
                        .find(|(lo, hi, _)| *lo <= lookup && lookup < *hi)
                        .map(|(_, _, n)| n.clone())
                        .unwrap_or_else(|| format!("{}+{lookup:#x}", module.name()))
                })
                .collect();
            (names, s.truncated)
        })
        .collect()
}

fn record(args: &[&str]) -> Profile {
    let dir = tempdir();
    let exe = workload();
    let data = dir.path().join("unwind.data");
    let mut argv = vec!["record", "-o", data.to_str().unwrap()];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--", exe.to_str().unwrap(), "2"]);
    let out = run_rprof(dir.path(), &argv);
    assert!(
        out.status.success(),
        "rprof record failed: {}",
        stderr(&out)
    );
    Profile::open(&data).expect("profile opens")
}

/// The fixture functions on the way from the leaf to `main` (inclusive).
fn ours(names: &[String]) -> Vec<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|n| {
            ["deep", "work_", "lib_spin", "seconds_of", "main"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect()
}

#[test]
fn default_dwarf_unwinding_reaches_main_through_exe_lib_and_vdso() {
    let profile = record(&[]);
    let stacks = stacks(&profile);
    assert!(stacks.len() >= 200, "only {} samples", stacks.len());
    let with_main = stacks
        .iter()
        .filter(|(n, _)| n.iter().any(|f| f == "main"))
        .count();
    let share = with_main as f64 / stacks.len() as f64;
    assert!(
        share >= 0.95,
        "only {:.1}% of samples reach main",
        share * 100.0
    );
    let truncated = stacks.iter().filter(|(_, t)| *t).count();
    assert!(
        truncated * 100 <= stacks.len(),
        "{truncated} of {} stacks truncated with default options",
        stacks.len()
    );

    let mut seen = HashMap::<&str, usize>::new();
    for (names, truncated) in &stacks {
        let path = ours(names);
        let leaf = names.first().map(String::as_str).unwrap_or("");
        let expected: Option<(&str, Vec<&str>)> = match leaf {
            "deep_leaf" => {
                let mut p = vec!["deep_leaf"];
                p.extend(std::iter::repeat_n("deep", 301));
                p.push("main");
                Some(("deep", p))
            }
            "work_leaf" => Some(("exe", vec!["work_leaf", "work_mid", "work_outer", "main"])),
            "lib_spin" => Some(("lib", vec!["lib_spin", "work_lib", "main"])),
            // The loop's own clock reads also run in the vDSO.
            "[vdso]" if path.first() == Some(&"seconds_of") => {
                Some(("clock", vec!["seconds_of", "main"]))
            }
            "[vdso]" => Some(("vdso", vec!["work_vdso", "main"])),
            _ => None,
        };
        if let Some((what, expected)) = expected {
            assert!(!truncated, "{what} stack marked truncated: {names:?}");
            assert_eq!(path, expected, "{what} stack: {names:?}");
            *seen.entry(what).or_default() += 1;
        }
    }
    // Every phase got samples whose full path was checked (about 30/25/25/20% of the samples).
    for what in ["deep", "exe", "lib", "vdso"] {
        assert!(
            seen.get(what).copied().unwrap_or(0) >= 10,
            "too few {what} samples checked: {seen:?}"
        );
    }
}

#[test]
fn short_stack_copy_marks_deep_stacks_truncated() {
    // 4 KiB holds about 40 levels of the recursion: those stacks must say they are cut.
    let profile = record(&["--call-graph", "dwarf,4096"]);
    let stacks = stacks(&profile);
    let deep: Vec<_> = stacks
        .iter()
        .filter(|(n, _)| n.first().map(String::as_str) == Some("deep_leaf"))
        .collect();
    assert!(deep.len() >= 10, "only {} deep samples", deep.len());
    for (names, truncated) in &deep {
        assert!(
            *truncated,
            "a cut deep stack is presented as complete: {names:?}"
        );
        assert!(!names.iter().any(|f| f == "main"));
        assert!(names.len() >= 20, "too few frames kept: {}", names.len());
        assert!(names[1..].iter().all(|f| f == "deep"), "{names:?}");
    }
    // Shallow stacks still fit and reach main.
    let shallow = stacks
        .iter()
        .filter(|(n, _)| n.first().map(String::as_str) == Some("work_leaf"))
        .filter(|(n, t)| !t && n.iter().any(|f| f == "main"))
        .count();
    assert!(shallow >= 10, "only {shallow} shallow stacks reach main");
}

#[test]
fn frame_pointer_mode_on_code_without_frame_pointers_stays_sane() {
    // Without frame pointers the callers are lost, but the leaf is right and nothing breaks.
    let profile = record(&["--call-graph", "fp"]);
    let stacks = stacks(&profile);
    assert!(stacks.len() >= 200, "only {} samples", stacks.len());
    let leaves = stacks
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.first().map(String::as_str),
                Some("deep_leaf" | "work_leaf" | "lib_spin" | "[vdso]")
            )
        })
        .count();
    assert!(
        leaves * 10 >= stacks.len() * 8,
        "{leaves} of {}",
        stacks.len()
    );
}
