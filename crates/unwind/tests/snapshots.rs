//! Unwinding real register/stack snapshots taken by `fixtures/unwind_snapshot.c` (built here
//! with gcc -O2 -fomit-frame-pointer, PIE and non-PIE, with a shared library), checked against
//! the call paths the fixture is known to have, named through the ELF symbol tables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use object::{Object, ObjectSymbol};
use rprof_unwind::{parse_proc_maps, Frame, Mode, ModuleKind, Outcome, Regs, Unwinder};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Builds the fixture (exe + its shared library) in a directory of its own for `variant`.
fn build(variant: &str, exe_flags: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unwind-fixture-{variant}"));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("gcc runs");
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("gcc")
        .args(["-O2", "-fomit-frame-pointer", "-fPIC", "-shared", "-o"])
        .arg(dir.join("libunwind_lib.so"))
        .arg(fixtures().join("unwind_lib.c")));
    run(Command::new("gcc")
        .args(["-O2", "-fomit-frame-pointer"])
        .args(exe_flags)
        .arg("-o")
        .arg(dir.join("snap"))
        .arg(fixtures().join("unwind_snapshot.c"))
        .arg("-L")
        .arg(&dir)
        .args(["-lunwind_lib", "-Wl,-rpath,$ORIGIN"]));
    dir
}

fn pie() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("pie", &["-pie", "-fPIE"]))
}

fn non_pie() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("nopie", &["-no-pie", "-fno-PIE"]))
}

/// One snapshot: registers, stack bytes and the phase the fixture was in.
struct Snap {
    regs: Regs,
    stack: Vec<u8>,
    phase: u32,
}

/// Runs the fixture in `mode` and reads its snapshots and maps.
fn take(dir: &Path, mode: &str, max_bytes: usize, count: usize) -> (Vec<Snap>, String) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(dir.join("snap"))
        .arg(mode)
        .arg(out.path())
        .arg(max_bytes.to_string())
        .arg(count.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "fixture {mode} failed");
    let maps = std::fs::read_to_string(out.path().join("maps")).unwrap();
    let mut snaps = Vec::new();
    for i in 0.. {
        let Ok(raw) = std::fs::read(out.path().join(format!("{i}.snap"))) else {
            break;
        };
        let nl = raw.iter().position(|&b| b == b'\n').unwrap();
        let header = std::str::from_utf8(&raw[..nl]).unwrap();
        let field: HashMap<&str, &str> = header
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let hex = |k: &str| u64::from_str_radix(field[k], 16).unwrap();
        let stack = raw[nl + 1..].to_vec();
        assert_eq!(stack.len(), field["len"].parse::<usize>().unwrap());
        snaps.push(Snap {
            regs: Regs {
                ip: hex("ip"),
                sp: hex("sp"),
                bp: hex("bp"),
            },
            stack,
            phase: field["phase"].parse().unwrap(),
        });
    }
    (snaps, maps)
}

const PID: u32 = 4242;

fn unwinder_for(maps: &str) -> Unwinder {
    let mut u = Unwinder::new();
    for m in parse_proc_maps(maps) {
        u.add_mapping(PID, m);
    }
    u
}

/// Function names of ELF files by SVMA, read with object (symbolization is not this crate's
/// job, the test only needs to know which function an address is in).
#[derive(Default)]
struct Names {
    files: HashMap<String, Vec<(u64, u64, String)>>,
}

impl Names {
    fn lookup(&mut self, path: &str, svma: u64) -> Option<String> {
        let syms = self.files.entry(path.to_string()).or_insert_with(|| {
            let Ok(data) = std::fs::read(path) else {
                return Vec::new();
            };
            let file = object::File::parse(&*data).unwrap();
            let mut v: Vec<_> = file
                .symbols()
                .chain(file.dynamic_symbols())
                .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
                .map(|s| {
                    let name = s.name().unwrap();
                    let base = name.split('.').next().unwrap().to_string();
                    (s.address(), s.address() + s.size(), base)
                })
                .collect();
            v.sort();
            v
        });
        syms.iter()
            .find(|(lo, hi, _)| *lo <= svma && svma < *hi)
            .map(|(_, _, n)| n.clone())
    }

    /// The function of every frame (return addresses looked up at address − 1).
    fn names(&mut self, u: &Unwinder, frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let Some(m) = f.module else {
                    return format!("?{:#x}", f.avma);
                };
                let info = &u.modules()[m.0 as usize];
                let svma = if i == 0 { f.address } else { f.address - 1 };
                match info.kind {
                    ModuleKind::Vdso => "[vdso]".to_string(),
                    _ => self
                        .lookup(&info.path, svma)
                        .unwrap_or_else(|| format!("{}+{:#x}", info.path, svma)),
                }
            })
            .collect()
    }
}

/// The frames from `capture_leaf` up to `main`, and what follows main.
fn path_to_main(names: &[String]) -> (&[String], &[String]) {
    let main = names
        .iter()
        .position(|n| n == "main")
        .unwrap_or_else(|| panic!("main not reached: {names:?}"));
    names.split_at(main + 1)
}

fn unwind_one(dir: &Path, mode: &str, max: usize) -> (Vec<String>, Outcome, Vec<Frame>) {
    let (snaps, maps) = take(dir, mode, max, 1);
    assert_eq!(snaps.len(), 1);
    let mut u = unwinder_for(&maps);
    let mut frames = Vec::new();
    let s = &snaps[0];
    let outcome = u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
    let names = Names::default().names(&u, &frames);
    (names, outcome, frames)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn chain_pie_unwinds_exactly_to_start() {
    let (names, outcome, _) = unwind_one(pie(), "chain", 65536);
    let (to_main, after) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "chain_c", "chain_b", "chain_a", "main"]
    );
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
    assert_eq!(
        after.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
}

#[test]
fn chain_non_pie_unwinds_exactly_to_start() {
    let (names, outcome, frames) = unwind_one(non_pie(), "chain", 65536);
    let (to_main, after) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "chain_c", "chain_b", "chain_a", "main"]
    );
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
    assert_eq!(after.last().map(String::as_str), Some("_start"));
    // Non-PIE: the address in the file is the process address.
    assert_eq!(frames[0].address, frames[0].avma);
}

#[test]
fn through_a_shared_library() {
    let (names, outcome, frames) = unwind_one(pie(), "lib", 65536);
    let (to_main, _) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "lib_inner", "lib_outer", "via_lib", "main"]
    );
    assert_eq!(outcome, Outcome::Complete);
    // The library frames are attributed to the library with addresses as in the file.
    assert!(frames[1].address < 0x10_0000 && frames[1].avma > 0x7000_0000_0000);
}

#[test]
fn deep_recursion_reaches_main_with_64k() {
    let (names, outcome, _) = unwind_one(pie(), "deep", 65536);
    let (to_main, _) = path_to_main(&names);
    assert_eq!(to_main.len(), 1 + 301 + 1, "{names:?}");
    assert_eq!(to_main[0], "capture_leaf");
    assert!(to_main[1..302].iter().all(|n| n == "deep"));
    assert_eq!(outcome, Outcome::Complete);
}

#[test]
fn short_copy_is_truncated_with_the_frames_found() {
    let (snaps, maps) = take(pie(), "deep", 65536, 1);
    let s = &snaps[0];
    let mut u = unwinder_for(&maps);
    let mut names = Names::default();
    for cut in [0usize, 8, 100, 1000, 4096, 8192, 20000] {
        let mut frames = Vec::new();
        let outcome = u.unwind(PID, s.regs, &s.stack[..cut], Mode::Dwarf, &mut frames);
        assert_eq!(outcome, Outcome::Truncated, "cut at {cut}");
        let n = names.names(&u, &frames);
        assert_eq!(n[0], "capture_leaf");
        assert!(n[1..].iter().all(|f| f == "deep"), "cut {cut}: {n:?}");
        // Each deep frame is 128 bytes: the copy holds about cut/128 of them.
        assert!(
            frames.len() + 2 >= cut / 128,
            "cut {cut}: {} frames",
            frames.len()
        );
    }
}

#[test]
fn frame_pointer_mode_does_not_invent_frames() {
    // Built without frame pointers, rbp is a general register: frame-pointer unwinding must
    // stop (failed or truncated), not run away, and start with the instruction pointer.
    let (snaps, maps) = take(pie(), "chain", 65536, 1);
    let mut u = unwinder_for(&maps);
    let mut frames = Vec::new();
    let s = &snaps[0];
    let _ = u.unwind(PID, s.regs, &s.stack, Mode::FramePointer, &mut frames);
    assert_eq!(frames[0].avma, s.regs.ip);
    assert!(frames.len() < 64);
}

#[test]
fn sampled_stacks_unwind_to_main_from_anywhere() {
    for dir in [pie(), non_pie()] {
        let (snaps, maps) = take(dir, "sample", 65536, 150);
        assert!(snaps.len() >= 100, "only {} samples", snaps.len());
        let mut u = unwinder_for(&maps);
        let mut names = Names::default();
        let mut vdso_leaves = 0;
        let mut lib_leaves = 0;
        let mut complete = 0;
        for s in &snaps {
            let mut frames = Vec::new();
            let outcome = u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
            let n = names.names(&u, &frames);
            if outcome == Outcome::Complete {
                complete += 1;
            }
            let expected: &[&str] = match s.phase {
                1 => &["work_leaf", "work_mid", "work_outer", "main"],
                2 => &["work_vdso", "main"],
                3 => &["lib_spin", "work_lib", "main"],
                _ => &["main"],
            };
            let (to_main, _) = path_to_main(&n);
            // Frames of fixture functions on the way to main, which must end the expected
            // path (the leaf may be below the hottest function, e.g. in clock_gettime).
            let ours: Vec<&str> = to_main
                .iter()
                .map(String::as_str)
                .filter(|f| {
                    ["work_", "lib_spin", "main"]
                        .iter()
                        .any(|p| f.starts_with(p))
                })
                .collect();
            assert!(
                expected.ends_with(&ours),
                "phase {}: {n:?} (expected a suffix of {expected:?})",
                s.phase
            );
            if s.phase == 2
                && u.modules()[frames[0].module.unwrap().0 as usize].kind == ModuleKind::Vdso
            {
                vdso_leaves += 1;
                assert_eq!(ours, ["work_vdso", "main"], "{n:?}");
            }
            if n[0] == "lib_spin" {
                lib_leaves += 1;
            }
        }
        assert_eq!(complete, snaps.len(), "every sample reaches _start");
        assert!(vdso_leaves > 0, "some samples were taken in the vDSO");
        assert!(lib_leaves > 0, "some samples were taken in the library");
    }
}
