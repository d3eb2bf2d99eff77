//! Shared by the snapshot tests: building the fixture, running it, naming addresses.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use object::{Object, ObjectSymbol};
use rprof_unwind::{parse_proc_maps, Frame, ModuleKind, Regs, Unwinder};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Builds the fixture (exe + its shared library) in a directory of its own for `variant`.
pub fn build(variant: &str, exe_flags: &[&str]) -> PathBuf {
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

pub fn pie() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("pie", &["-pie", "-fPIE"]))
}

/// CFI in .debug_frame only (next to a small .eh_frame for the C runtime files).
pub fn debug_frame_only() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("debugframe", &["-fno-asynchronous-unwind-tables", "-g"]))
}

pub fn non_pie() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("nopie", &["-no-pie", "-fno-PIE"]))
}

/// One snapshot: registers, stack bytes and the phase the fixture was in.
pub struct Snap {
    pub regs: Regs,
    pub stack: Vec<u8>,
    pub phase: u32,
}

/// Runs the fixture in `mode` and reads its snapshots and maps.
pub fn take(dir: &Path, mode: &str, max_bytes: usize, count: usize) -> (Vec<Snap>, String) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(dir.join("snap"))
        .arg(mode)
        .arg(out.path())
        .arg(max_bytes.to_string())
        .arg(count.to_string())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "fixture {mode} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
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

pub const PID: u32 = 4242;

pub fn unwinder_for(maps: &str) -> Unwinder {
    let mut u = Unwinder::new();
    for m in parse_proc_maps(maps) {
        u.add_mapping(PID, m);
    }
    u
}

/// Function names of ELF files by SVMA, read with object (symbolization is not this crate's
/// job, the test only needs to know which function an address is in).
#[derive(Default)]
pub struct Names {
    files: HashMap<String, Vec<(u64, u64, String)>>,
}

impl Names {
    pub fn lookup(&mut self, path: &str, svma: u64) -> Option<String> {
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
    pub fn names(&mut self, u: &Unwinder, frames: &[Frame]) -> Vec<String> {
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
