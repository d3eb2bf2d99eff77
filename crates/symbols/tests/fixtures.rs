//! Symbolization of fixture programs built by the tests themselves (gcc, binutils, rustc) into a
//! temporary directory. Expected names come from the fixture sources; expected lines from their
//! `MARK:` comments.

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol};
use rprof_symbols::{
    demangle, DebugInfo, Location, ModuleProblem, ModuleSource, Options, Symbolizer,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// The 1-based line of the fixture holding `MARK:<mark>`.
fn marker_line(source: &str, mark: &str) -> u32 {
    let text = std::fs::read_to_string(fixture(source)).unwrap();
    let tag = format!("MARK:{mark}");
    let idx = text.lines().position(|l| l.contains(&tag)).unwrap();
    u32::try_from(idx + 1).unwrap()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gcc(dir: &Path, source: &str, out: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(out);
    run(Command::new("gcc")
        .args(["-g", "-O2", "-fomit-frame-pointer"])
        .args(extra)
        .arg(fixture(source))
        .arg("-o")
        .arg(&path));
    path
}

fn objcopy(args: &[&str], dir: &Path) {
    run(Command::new("objcopy").args(args).current_dir(dir));
}

/// Start and size of the named function in the file's symbol table (SVMA).
fn function_range(path: &Path, name: &str) -> (u64, u64) {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name().is_ok_and(|n| demangle(n) == name) && s.size() > 0)
        .unwrap_or_else(|| panic!("{name} not in {}", path.display()));
    (sym.address(), sym.size())
}

fn build_id(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.build_id().unwrap().unwrap().to_vec()
}

fn elf(path: &Path) -> ModuleSource<'_> {
    ModuleSource::Elf {
        path: path.to_str().unwrap(),
        build_id: None,
    }
}

/// Every address of a function, one by one.
fn addresses(range: (u64, u64)) -> Vec<u64> {
    (range.0..range.0 + range.1).collect()
}

fn function(loc: &Location, i: usize) -> Option<&str> {
    loc.frames.get(i).and_then(|f| f.function.as_deref())
}

fn no_debug_options() -> Options {
    Options {
        debug_roots: vec![],
        ..Options::default()
    }
}

/// Checks the C fixture's `hot_loop`: every address is in `hot_loop` (from `symbols_inline.c`),
/// and some address shows `mix` inlined at its body line, called from the loop line.
fn assert_inline_frames(sym: &mut Symbolizer, module: &ModuleSource<'_>, range: (u64, u64)) {
    let mix_body = marker_line("symbols_inline.c", "mix-body");
    let mix_call = marker_line("symbols_inline.c", "mix-call");
    let locs = sym.symbolize(module, &addresses(range));
    let mut inline_seen = 0;
    for (addr, loc) in addresses(range).iter().zip(&locs) {
        let last = loc
            .frames
            .last()
            .unwrap_or_else(|| panic!("{addr:#x}: no frames"));
        assert_eq!(
            last.function.as_deref(),
            Some("hot_loop"),
            "{addr:#x}: {loc:?}"
        );
        assert!(!last.inlined);
        assert!(loc.frames[..loc.frames.len() - 1].iter().all(|f| f.inlined));
        assert!(
            last.file.as_deref().unwrap().ends_with("symbols_inline.c"),
            "{loc:?}"
        );
        if loc.frames.len() == 2 {
            let inner = &loc.frames[0];
            assert_eq!(inner.function.as_deref(), Some("mix"), "{addr:#x}: {loc:?}");
            if inner.line == Some(mix_body) {
                assert_eq!(last.line, Some(mix_call), "{addr:#x}: {loc:?}");
                inline_seen += 1;
            }
        }
    }
    assert!(inline_seen > 0, "no inlined mix frame in {locs:?}");
}

#[test]
fn dwarf_names_lines_and_inline_frames() {
    let dir = tempfile::tempdir().unwrap();
    let prog = gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let mut sym = Symbolizer::with_options(no_debug_options());
    assert_inline_frames(&mut sym, &elf(&prog), function_range(&prog, "hot_loop"));

    let (start, size) = function_range(&prog, "cold_leaf");
    let locs = sym.symbolize(&elf(&prog), &addresses((start, size)));
    let cold = marker_line("symbols_inline.c", "cold-leaf");
    assert!(locs.iter().all(|l| function(l, 0) == Some("cold_leaf")));
    assert!(
        locs.iter().any(|l| l.frames[0].line == Some(cold)),
        "{locs:?}"
    );

    let status = sym.module_status(&elf(&prog));
    assert_eq!(status.debug_info, DebugInfo::Embedded);
    assert_eq!(status.problem, None);
    assert!(status.symbol_count >= 3);

    // The recorded build id matches: same result.
    let id = build_id(&prog);
    let with_id = ModuleSource::Elf {
        path: prog.to_str().unwrap(),
        build_id: Some(&id),
    };
    assert_inline_frames(&mut sym, &with_id, function_range(&prog, "hot_loop"));
}

#[test]
fn compressed_debug_sections() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gcc(dir.path(), "symbols_inline.c", "prog-gz", &["-gz=zlib"]);
    objcopy(
        &[
            "--compress-debug-sections=zlib-gnu",
            "prog-gz",
            "prog-zdebug",
        ],
        dir.path(),
    );
    let zdebug = dir.path().join("prog-zdebug");
    let data = std::fs::read(&zdebug).unwrap();
    assert!(object::File::parse(&*data)
        .unwrap()
        .sections()
        .any(|s| s.name() == Ok(".zdebug_info")));
    let mut sym = Symbolizer::with_options(no_debug_options());
    for path in [&gz, &zdebug] {
        assert_inline_frames(&mut sym, &elf(path), function_range(path, "hot_loop"));
        assert_eq!(
            sym.module_status(&elf(path)).debug_info,
            DebugInfo::Embedded
        );
    }
}

#[test]
fn symbol_table_fallback_without_dwarf() {
    let dir = tempfile::tempdir().unwrap();
    gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    objcopy(&["--strip-debug", "prog", "prog-nodebug"], dir.path());
    let stripped = dir.path().join("prog-nodebug");
    let range = function_range(&stripped, "hot_loop");
    let mut sym = Symbolizer::with_options(no_debug_options());
    for loc in sym.symbolize(&elf(&stripped), &addresses(range)) {
        assert_eq!(loc.frames.len(), 1, "{loc:?}");
        let f = &loc.frames[0];
        assert_eq!(f.function.as_deref(), Some("hot_loop"));
        assert_eq!((f.file.as_deref(), f.line, f.inlined), (None, None, false));
    }
    let status = sym.module_status(&elf(&stripped));
    assert_eq!(status.debug_info, DebugInfo::None);
    assert_eq!(status.problem, None);
    // Past the end of the function's symbol there is no name from hot_loop.
    let after = sym.symbolize(&elf(&stripped), &[range.0 + range.1]);
    assert_ne!(function(&after[0], 0), Some("hot_loop"));
}

#[test]
fn shared_library_with_and_without_debug_info() {
    let dir = tempfile::tempdir().unwrap();
    let lib = gcc(
        dir.path(),
        "symbols_lib.c",
        "libfix.so",
        &["-shared", "-fPIC"],
    );
    let step = marker_line("symbols_lib.c", "lib-step");
    let call = marker_line("symbols_lib.c", "lib-call");
    let hidden_line = marker_line("symbols_lib.c", "lib-hidden");
    let mut sym = Symbolizer::with_options(no_debug_options());

    let work = function_range(&lib, "lib_work");
    let locs = sym.symbolize(&elf(&lib), &addresses(work));
    assert!(locs
        .iter()
        .all(|l| l.frames.last().unwrap().function.as_deref() == Some("lib_work")));
    assert!(
        locs.iter().any(|l| l.frames.len() == 2
            && function(l, 0) == Some("lib_step")
            && l.frames[0].inlined
            && l.frames[0].line == Some(step)
            && l.frames[1].line == Some(call)),
        "{locs:?}"
    );
    let hidden = function_range(&lib, "lib_hidden");
    let locs = sym.symbolize(&elf(&lib), &addresses(hidden));
    assert!(locs.iter().all(|l| function(l, 0) == Some("lib_hidden")));
    assert!(locs.iter().any(|l| l.frames[0].line == Some(hidden_line)));

    // Fully stripped: only .dynsym is left. The exported function keeps its name, the hidden one
    // is not in .dynsym and must not be given its neighbour's name (size check).
    run(Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(dir.path().join("libfix-stripped.so"))
        .arg(&lib));
    let stripped = dir.path().join("libfix-stripped.so");
    let data = std::fs::read(&stripped).unwrap();
    assert!(object::File::parse(&*data)
        .unwrap()
        .symbols()
        .next()
        .is_none());
    for loc in sym.symbolize(&elf(&stripped), &addresses(work)) {
        assert_eq!(loc.frames.len(), 1);
        assert_eq!(function(&loc, 0), Some("lib_work"));
        assert_eq!(loc.frames[0].line, None);
    }
    for loc in sym.symbolize(&elf(&stripped), &addresses(hidden)) {
        assert_ne!(function(&loc, 0), Some("lib_work"), "{loc:?}");
    }
}

#[test]
fn debuglink_in_dot_debug_dir_with_crc_check() {
    let dir = tempfile::tempdir().unwrap();
    // Without a build id, only the debuglink CRC can tie the debug file to the binary.
    gcc(
        dir.path(),
        "symbols_inline.c",
        "prog",
        &["-Wl,--build-id=none"],
    );
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::create_dir(dir.path().join("bin/.debug")).unwrap();
    objcopy(
        &["--only-keep-debug", "prog", "bin/.debug/prog.debug"],
        dir.path(),
    );
    objcopy(&["--strip-debug", "prog", "bin/prog"], dir.path());
    objcopy(
        &["--add-gnu-debuglink=bin/.debug/prog.debug", "bin/prog"],
        dir.path(),
    );
    let prog = dir.path().join("bin/prog");
    let debug = dir.path().join("bin/.debug/prog.debug");
    let range = function_range(&prog, "hot_loop");

    let mut sym = Symbolizer::with_options(no_debug_options());
    assert_inline_frames(&mut sym, &elf(&prog), range);
    let status = sym.module_status(&elf(&prog));
    assert_eq!(status.debug_info, DebugInfo::Separate(debug.clone()));

    // A changed debug file fails the CRC and is not used; the symbol table still names.
    let mut bytes = std::fs::read(&debug).unwrap();
    bytes.push(0);
    std::fs::write(&debug, bytes).unwrap();
    let mut sym = Symbolizer::with_options(no_debug_options());
    assert_eq!(sym.module_status(&elf(&prog)).debug_info, DebugInfo::None);
    for loc in sym.symbolize(&elf(&prog), &addresses(range)) {
        assert_eq!(loc.frames.len(), 1);
        assert_eq!(function(&loc, 0), Some("hot_loop"));
        assert_eq!(loc.frames[0].line, None);
    }
}

#[test]
fn debuglink_under_debug_root_mirror_dir() {
    let dir = tempfile::tempdir().unwrap();
    gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    objcopy(&["--only-keep-debug", "prog", "prog.debug"], dir.path());
    objcopy(
        &[
            "--strip-debug",
            "--add-gnu-debuglink=prog.debug",
            "prog",
            "prog-stripped",
        ],
        dir.path(),
    );
    let root = dir.path().join("debugroot");
    let real_dir = std::fs::canonicalize(dir.path()).unwrap();
    let mirror = root.join(real_dir.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::rename(dir.path().join("prog.debug"), mirror.join("prog.debug")).unwrap();
    let prog = dir.path().join("prog-stripped");
    let mut sym = Symbolizer::with_options(Options {
        debug_roots: vec![root],
        ..Options::default()
    });
    assert_inline_frames(&mut sym, &elf(&prog), function_range(&prog, "hot_loop"));
    assert_eq!(
        sym.module_status(&elf(&prog)).debug_info,
        DebugInfo::Separate(mirror.join("prog.debug"))
    );
}

/// Puts `prog`'s debug file at `<root>/.build-id/xx/rest.debug`.
fn install_by_build_id(dir: &Path, prog: &str, root: &Path) -> PathBuf {
    let id = build_id(&dir.join(prog));
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let target = root
        .join(".build-id")
        .join(&hex[..2])
        .join(format!("{}.debug", &hex[2..]));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    objcopy(&["--only-keep-debug", prog, target.to_str().unwrap()], dir);
    target
}

#[test]
fn separate_debug_file_by_build_id() {
    let dir = tempfile::tempdir().unwrap();
    gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let root = dir.path().join("debugroot");
    let debug = install_by_build_id(dir.path(), "prog", &root);
    objcopy(&["--strip-debug", "prog", "prog-stripped"], dir.path());
    let prog = dir.path().join("prog-stripped");
    let range = function_range(&prog, "hot_loop");
    let options = Options {
        debug_roots: vec![root],
        ..Options::default()
    };
    let mut sym = Symbolizer::with_options(options.clone());
    assert_inline_frames(&mut sym, &elf(&prog), range);
    assert_eq!(
        sym.module_status(&elf(&prog)).debug_info,
        DebugInfo::Separate(debug.clone())
    );

    // The binary is gone, but the recorded build id still finds the debug file, which has the
    // full symbol table and DWARF.
    let id = build_id(&prog);
    std::fs::remove_file(&prog).unwrap();
    let mut sym = Symbolizer::with_options(options.clone());
    let gone = ModuleSource::Elf {
        path: prog.to_str().unwrap(),
        build_id: Some(&id),
    };
    assert_inline_frames(&mut sym, &gone, range);
    let status = sym.module_status(&gone);
    assert!(matches!(
        status.problem,
        Some(ModuleProblem::NotFound { .. })
    ));
    assert_eq!(status.debug_info, DebugInfo::Separate(debug));
}

#[test]
fn deleted_mapping_path_is_read_when_build_id_matches() {
    let dir = tempfile::tempdir().unwrap();
    let prog = gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let range = function_range(&prog, "hot_loop");
    let id = build_id(&prog);
    let deleted = format!("{} (deleted)", prog.display());
    let mut sym = Symbolizer::with_options(no_debug_options());
    let recorded = ModuleSource::Elf {
        path: &deleted,
        build_id: Some(&id),
    };
    assert_inline_frames(&mut sym, &recorded, range);
    // Without a build id to check it against, the file now at the path is not assumed to be the
    // one that was mapped.
    let unchecked = ModuleSource::Elf {
        path: &deleted,
        build_id: None,
    };
    assert!(sym.symbolize(&unchecked, &[range.0])[0].frames.is_empty());
}

#[test]
fn symbolizer_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Symbolizer>();
}

#[test]
fn build_id_mismatch_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let prog = gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let range = function_range(&prog, "hot_loop");
    let mut wrong = build_id(&prog);
    wrong[0] ^= 0xff;
    let module = ModuleSource::Elf {
        path: prog.to_str().unwrap(),
        build_id: Some(&wrong),
    };
    let mut sym = Symbolizer::with_options(no_debug_options());
    assert!(sym
        .symbolize(&module, &addresses(range))
        .iter()
        .all(|l| l.frames.is_empty()));
    match sym.module_status(&module).problem {
        Some(ModuleProblem::BuildIdMismatch {
            expected, found, ..
        }) => {
            assert_ne!(expected, found);
            assert_eq!(expected.len(), 40);
        }
        other => panic!("{other:?}"),
    }
    // The same path without a recorded build id is still trusted (a separate cache entry).
    assert!(!sym.symbolize(&elf(&prog), &[range.0])[0].frames.is_empty());
}

#[test]
fn rebuilt_binary_uses_debug_file_of_the_recorded_build() {
    let dir = tempfile::tempdir().unwrap();
    gcc(dir.path(), "symbols_inline.c", "old", &[]);
    let root = dir.path().join("debugroot");
    install_by_build_id(dir.path(), "old", &root);
    let old = dir.path().join("old");
    let old_range = function_range(&old, "hot_loop");
    let old_id = build_id(&old);
    // "Rebuild" at the same path with different code generation.
    gcc(
        dir.path(),
        "symbols_inline.c",
        "old",
        &["-O1", "-fno-inline-small-functions"],
    );
    assert_ne!(build_id(&old), old_id);
    let mut sym = Symbolizer::with_options(Options {
        debug_roots: vec![root],
        ..Options::default()
    });
    let module = ModuleSource::Elf {
        path: old.to_str().unwrap(),
        build_id: Some(&old_id),
    };
    assert_inline_frames(&mut sym, &module, old_range);
    assert!(matches!(
        sym.module_status(&module).problem,
        Some(ModuleProblem::BuildIdMismatch { .. })
    ));
}

#[test]
fn missing_and_non_elf_files_give_empty_locations() {
    let dir = tempfile::tempdir().unwrap();
    let mut sym = Symbolizer::with_options(no_debug_options());
    let missing = dir.path().join("nope");
    let locs = sym.symbolize(&elf(&missing), &[0x1000, 0x2000]);
    assert_eq!(locs, vec![Location::default(); 2]);
    assert!(matches!(
        sym.module_status(&elf(&missing)).problem,
        Some(ModuleProblem::NotFound { .. })
    ));
    let text = dir.path().join("text");
    std::fs::write(&text, "not an ELF file\n").unwrap();
    assert!(sym.symbolize(&elf(&text), &[0x10])[0].frames.is_empty());
    assert!(matches!(
        sym.module_status(&elf(&text)).problem,
        Some(ModuleProblem::Malformed { .. })
    ));
    assert!(sym.symbolize(&elf(dir.path()), &[0x10])[0]
        .frames
        .is_empty());
    assert!(matches!(
        sym.module_status(&elf(dir.path())).problem,
        Some(ModuleProblem::Unreadable { .. })
    ));
}

/// A small deterministic generator for corruption positions.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn truncated_and_corrupted_files_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let plain = gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let gz = gcc(dir.path(), "symbols_inline.c", "prog-gz", &["-gz=zlib"]);
    let range = function_range(&plain, "hot_loop");
    let mut probe = addresses(range);
    probe.extend([
        0,
        1,
        range.0 - 1,
        u64::MAX,
        function_range(&plain, "main").0,
    ]);
    let mut sym = Symbolizer::with_options(no_debug_options());
    // RPROF_FUZZ_ROUNDS=N runs more corrupted copies per file (and RPROF_FUZZ_SEED another seed).
    let rounds: usize = std::env::var("RPROF_FUZZ_ROUNDS").map_or(150, |v| v.parse().unwrap());
    let mut rng = Lcg(std::env::var("RPROF_FUZZ_SEED").map_or(42, |v| v.parse().unwrap()));
    let mut n = 0;
    for original in [&plain, &gz] {
        let bytes = std::fs::read(original).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        // Where the interesting structures are: headers, DWARF, symbol tables.
        let mut regions = vec![(0u64, 64u64.min(bytes.len() as u64))];
        for s in file.sections() {
            if let Some((off, size)) = s.file_range() {
                if size > 0 {
                    regions.push((off, size));
                }
            }
        }
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for cut in [
            0,
            1,
            4,
            16,
            52,
            63,
            64,
            200,
            bytes.len() / 4,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            variants.push(bytes[..cut].to_vec());
        }
        for round in 0..rounds {
            let mut copy = bytes.clone();
            let (off, size) = regions[round % regions.len()];
            for _ in 0..1 + round % 8 {
                let pos = (off + rng.next() % size) as usize;
                copy[pos] = match rng.next() % 3 {
                    0 => copy[pos] ^ (1 << (rng.next() % 8)),
                    1 => 0xff,
                    _ => 0,
                };
            }
            variants.push(copy);
        }
        for bytes in variants {
            let path = dir.path().join(format!("bad-{n}"));
            n += 1;
            std::fs::write(&path, &bytes).unwrap();
            let locs = sym.symbolize(&elf(&path), &probe);
            assert_eq!(locs.len(), probe.len());
            let _ = sym.module_status(&elf(&path));
        }
    }
    // The untouched originals still work after all that.
    assert_inline_frames(&mut sym, &elf(&plain), range);
}

/// Whether a name still carries a legacy Rust hash (`::h` and 16 hex digits at the end).
fn has_hash_suffix(name: &str) -> bool {
    name.rsplit_once("::h")
        .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn rust_inlined_generic() {
    let body = marker_line("symbols_rust.rs", "scale-body");
    let call = marker_line("symbols_rust.rs", "scale-call");
    // Legacy names (rustc's default) carry no generic arguments; v0 names do.
    for (mangling, scale) in [
        (None, "symbols_rust::scale"),
        (Some("v0"), "symbols_rust::scale::<u32>"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("symbols_rust");
        run(Command::new("rustc")
            .args([
                "-C",
                "debuginfo=2",
                "-C",
                "opt-level=2",
                "--edition",
                "2021",
            ])
            .args(mangling.map(|m| format!("-Csymbol-mangling-version={m}")))
            .arg("-o")
            .arg(&prog)
            .arg(fixture("symbols_rust.rs")));
        let range = function_range(&prog, "symbols_rust::rust_hot");
        let mut sym = Symbolizer::with_options(no_debug_options());
        let locs = sym.symbolize(&elf(&prog), &addresses(range));
        assert!(locs.iter().all(|l| {
            l.frames.last().and_then(|f| f.function.as_deref()) == Some("symbols_rust::rust_hot")
        }));
        let found = locs.iter().any(|l| {
            l.frames.windows(2).any(|w| {
                w[0].function.as_deref() == Some(scale)
                    && w[0].inlined
                    && w[0].line == Some(body)
                    && w[1].line == Some(call)
                    && w[0]
                        .file
                        .as_deref()
                        .is_some_and(|f| f.ends_with("symbols_rust.rs"))
            })
        });
        assert!(found, "{mangling:?}: no inlined {scale} frame: {locs:?}");
        // No hash suffix or mangled name anywhere.
        assert!(locs
            .iter()
            .flat_map(|l| &l.frames)
            .filter_map(|f| f.function.as_deref())
            .all(|f| !has_hash_suffix(f) && !f.starts_with("_ZN") && !f.starts_with("_R")));
    }
}

#[test]
fn cpp_names_are_demangled_from_dwarf_and_symbol_table() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("cpp");
    run(Command::new("g++")
        .args(["-g", "-O2", "-o"])
        .arg(&prog)
        .arg(fixture("symbols_cpp.cpp")));
    objcopy(&["--strip-debug", "cpp", "cpp-nodebug"], dir.path());
    let name = "fix::Acc<long>::add(long)";
    let range = function_range(&prog, name);
    let line = marker_line("symbols_cpp.cpp", "acc-add");
    let mut sym = Symbolizer::with_options(no_debug_options());
    let locs = sym.symbolize(&elf(&prog), &addresses(range));
    assert!(
        locs.iter()
            .all(|l| function(l, l.frames.len() - 1) == Some(name)),
        "{locs:?}"
    );
    assert!(locs.iter().any(|l| l.frames[0].line == Some(line)));
    let stripped = dir.path().join("cpp-nodebug");
    for loc in sym.symbolize(&elf(&stripped), &addresses(range)) {
        assert_eq!(function(&loc, 0), Some(name));
        assert_eq!(loc.frames[0].line, None);
    }
}

#[test]
fn vdso_symbols_from_own_mapping() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.ends_with("[vdso]")).unwrap();
    let (start, end) = line
        .split_whitespace()
        .next()
        .unwrap()
        .split_once('-')
        .unwrap();
    let start = u64::from_str_radix(start, 16).unwrap();
    let end = u64::from_str_radix(end, 16).unwrap();
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    assert_eq!(base, start);
    let image = unsafe { std::slice::from_raw_parts(start as *const u8, (end - start) as usize) };
    let file = object::File::parse(image).unwrap();
    let target = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok("__vdso_clock_gettime") && s.size() > 1)
        .unwrap();
    let mut sym = Symbolizer::with_options(no_debug_options());
    let locs = sym.symbolize(&ModuleSource::Vdso, &[target.address() + 1, 0]);
    let name = function(&locs[0], 0).unwrap();
    assert!(name.ends_with("clock_gettime"), "{name}");
    assert!(locs[1].frames.is_empty());
    assert!(sym.module_status(&ModuleSource::Vdso).symbol_count > 2);
}

#[test]
fn kernel_symbols_from_kallsyms() {
    let mut sym = Symbolizer::new();
    let status = sym.module_status(&ModuleSource::Kernel);
    if status.problem == Some(ModuleProblem::KernelAddressesHidden) {
        // Without the right to see addresses, every kernel location is empty.
        assert!(
            sym.symbolize(&ModuleSource::Kernel, &[0xffffffff81000000])[0]
                .frames
                .is_empty()
        );
        return;
    }
    assert_eq!(status.problem, None);
    assert!(status.symbol_count > 1000);
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let (addr, name) = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 3 && f[1] == "T" && f[2] == "schedule")
        .map(|f| (u64::from_str_radix(f[0], 16).unwrap(), f[2].to_owned()))
        .unwrap();
    let locs = sym.symbolize(&ModuleSource::Kernel, &[addr + 1]);
    assert_eq!(function(&locs[0], 0), Some(name.as_str()));
}

#[test]
fn jit_perf_map() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("perf-4242.map"),
        "7f1000001000 100 JIT:hot_path\n7f1000002000 20 _ZN3jit4stub17h05af221e174051e9E\n",
    )
    .unwrap();
    let mut sym = Symbolizer::with_options(Options {
        perf_map_dir: dir.path().to_path_buf(),
        ..Options::default()
    });
    let jit = ModuleSource::JitMap { pid: 4242 };
    let locs = sym.symbolize(
        &jit,
        &[
            0x7f10000010ff,
            0x7f1000001100,
            0x7f1000002010,
            0x7f10000010ff,
        ],
    );
    assert_eq!(function(&locs[0], 0), Some("JIT:hot_path"));
    assert!(locs[1].frames.is_empty());
    assert_eq!(function(&locs[2], 0), Some("jit::stub"));
    assert_eq!(locs[3], locs[0]);
    let other = ModuleSource::JitMap { pid: 4243 };
    assert!(sym.symbolize(&other, &[0x7f10000010ff])[0]
        .frames
        .is_empty());
    assert!(matches!(
        sym.module_status(&other).problem,
        Some(ModuleProblem::NotFound { .. })
    ));
}

#[test]
fn batches_keep_order_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let prog = gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let hot = function_range(&prog, "hot_loop").0;
    let cold = function_range(&prog, "cold_leaf").0;
    let mut sym = Symbolizer::with_options(no_debug_options());
    let locs = sym.symbolize(&elf(&prog), &[cold, hot, 0, cold, hot]);
    assert_eq!(locs.len(), 5);
    assert_eq!(function(&locs[0], 0), Some("cold_leaf"));
    assert_eq!(
        locs[1].frames.last().unwrap().function.as_deref(),
        Some("hot_loop")
    );
    assert!(locs[2].frames.is_empty());
    assert_eq!(locs[3], locs[0]);
    assert_eq!(locs[4], locs[1]);
    assert!(sym.symbolize(&elf(&prog), &[]).is_empty());
}

#[test]
fn plt_stubs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let prog = gcc(dir.path(), "symbols_inline.c", "prog", &[]);
    let data = std::fs::read(&prog).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut names = Vec::new();
    let mut sym = Symbolizer::with_options(no_debug_options());
    for section in [".plt", ".plt.sec", ".plt.got"] {
        let Some(s) = file.section_by_name(section) else {
            continue;
        };
        let addrs: Vec<u64> = (s.address()..s.address() + s.size()).collect();
        for loc in sym.symbolize(&elf(&prog), &addrs) {
            if let Some(name) = function(&loc, 0) {
                assert!(name.ends_with("@plt"), "{name}");
                assert_eq!(loc.frames.len(), 1);
                names.push(name.to_owned());
            }
        }
    }
    // The fixture's main calls strtoul and printf through the PLT.
    for want in ["strtoul@plt", "printf@plt"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

fn gcc_in(dir: &Path, args: &[&str]) {
    run(Command::new("gcc").args(args).current_dir(dir));
}

#[test]
fn split_dwarf_dwo_and_dwp() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("symbols_inline.c");
    let src = src.to_str().unwrap();
    // DWARF 5 split units in a .dwo next to the binary, found through the skeleton's comp_dir.
    gcc_in(
        dir.path(),
        &["-g", "-gsplit-dwarf", "-O2", src, "-o", "prog5"],
    );
    let prog5 = dir.path().join("prog5");
    assert!(dir.path().join("prog5-symbols_inline.dwo").exists());
    let mut sym = Symbolizer::with_options(no_debug_options());
    assert_inline_frames(&mut sym, &elf(&prog5), function_range(&prog5, "hot_loop"));

    // DWARF 4 (GNU) split units, packaged by binutils' dwp; then both moved to another
    // directory, where the .dwo is found by file name next to the binary and the .dwp by name.
    gcc_in(
        dir.path(),
        &["-gdwarf-4", "-gsplit-dwarf", "-O2", src, "-o", "prog4"],
    );
    run(Command::new("dwp")
        .args(["-e", "prog4", "-o", "prog4.dwp"])
        .current_dir(dir.path()));
    let with_dwo = dir.path().join("a");
    let with_dwp = dir.path().join("b");
    let without = dir.path().join("c");
    for d in [&with_dwo, &with_dwp, &without] {
        std::fs::create_dir(d).unwrap();
        std::fs::copy(dir.path().join("prog4"), d.join("prog4")).unwrap();
    }
    std::fs::rename(
        dir.path().join("prog4-symbols_inline.dwo"),
        with_dwo.join("prog4-symbols_inline.dwo"),
    )
    .unwrap();
    std::fs::rename(dir.path().join("prog4.dwp"), with_dwp.join("prog4.dwp")).unwrap();
    let range = function_range(&dir.path().join("prog4"), "hot_loop");
    for d in [&with_dwo, &with_dwp] {
        let mut sym = Symbolizer::with_options(no_debug_options());
        assert_inline_frames(&mut sym, &elf(&d.join("prog4")), range);
    }
    // Neither: the skeleton's line table and the symbol table still name every address, but
    // without the split units there is no inline frame.
    let mut sym = Symbolizer::with_options(no_debug_options());
    for loc in sym.symbolize(&elf(&without.join("prog4")), &addresses(range)) {
        assert_eq!(loc.frames.len(), 1, "{loc:?}");
        assert_eq!(function(&loc, 0), Some("hot_loop"));
    }
}

#[test]
fn dwz_supplementary_file() {
    let dir = tempfile::tempdir().unwrap();
    gcc(dir.path(), "symbols_inline.c", "p1", &[]);
    gcc(dir.path(), "symbols_inline.c", "p2", &["-DVARIANT=2"]);
    let common = dir.path().join("common.debug");
    run(Command::new("dwz")
        .args(["-m", "common.debug", "-M"])
        .arg(&common)
        .args(["p1", "p2"])
        .current_dir(dir.path()));
    let p1 = dir.path().join("p1");
    let data = std::fs::read(&p1).unwrap();
    assert!(object::File::parse(&*data)
        .unwrap()
        .gnu_debugaltlink()
        .unwrap()
        .is_some());
    let range = function_range(&p1, "hot_loop");
    let mut sym = Symbolizer::with_options(no_debug_options());
    assert_inline_frames(&mut sym, &elf(&p1), range);

    // Moved from the recorded path into a debug root's build-id tree: still found.
    let root = dir.path().join("root");
    let id = build_id(&common);
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let target = root
        .join(".build-id")
        .join(&hex[..2])
        .join(format!("{}.debug", &hex[2..]));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::rename(&common, &target).unwrap();
    let mut sym = Symbolizer::with_options(Options {
        debug_roots: vec![root],
        ..Options::default()
    });
    assert_inline_frames(&mut sym, &elf(&p1), range);
}
