//! Differential tests of the lazy namer (`dwarf.rs`) against addr2line, the oracle: for every
//! Nth address of a module's executable sections, both must give the same frames (raw name,
//! file, line, in the same order), or both the same error.
//!
//! Issue 13: naming reads only the units that hold the wanted addresses; these tests are what
//! says it still names them as addr2line did.

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, SectionFlags};

use crate::dwarf::{LazyDwarf, Lookup};
use crate::elf::{
    addr2line_frames, dwarf_sections, full_context, open, parse, Addr2lineFrame, MAX_INLINE_DEPTH,
};
use crate::split::SplitDwarf;

/// What one comparison saw.
#[derive(Debug, Default)]
struct Tally {
    addresses: usize,
    /// Addresses with at least one frame.
    named: usize,
    /// Addresses with inlined frames.
    inlined: usize,
    mismatches: Vec<String>,
}

/// Compares the two namers on every `step`th address of the executable sections of `path`.
fn compare(path: &Path, step: u64) -> Tally {
    let shown = path.display().to_string();
    let base = open(path).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
    let file = parse(&base, &shown).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
    let mut lazy =
        LazyDwarf::new(dwarf_sections(&file, &base).unwrap(), vec![base.clone()]).unwrap();
    let oracle = full_context(dwarf_sections(&file, &base).unwrap()).unwrap();
    let split = SplitDwarf::new(None);
    let mut tally = Tally::default();
    for section in file.sections() {
        let exec = match section.flags() {
            SectionFlags::Elf { sh_flags, .. } => sh_flags.contains(object::elf::SHF_EXECINSTR),
            _ => false,
        };
        if !exec {
            continue;
        }
        let end = section.address().saturating_add(section.size());
        let mut addr = section.address();
        while addr < end {
            let want = addr2line_frames(&oracle, &split, addr);
            let got = match lazy.find_frames(addr) {
                Ok(Lookup::Frames(frames)) => Ok(frames
                    .into_iter()
                    .take(MAX_INLINE_DEPTH)
                    .map(|f| Addr2lineFrame {
                        name: f.name.and_then(|n| {
                            gimli::Reader::to_string_lossy(&n)
                                .ok()
                                .map(|s| s.into_owned())
                        }),
                        file: f.file,
                        line: f.line,
                    })
                    .collect()),
                Ok(Lookup::Split) => panic!("{shown}: split DWARF at {addr:#x}"),
                Err(e) => Err(e),
            };
            tally.addresses += 1;
            if let Ok(frames) = &want {
                tally.named += usize::from(!frames.is_empty());
                tally.inlined += usize::from(frames.len() > 1);
            }
            if got != want {
                tally
                    .mismatches
                    .push(format!("{addr:#x}: lazy {got:?}\n    addr2line {want:?}"));
            }
            addr = addr.saturating_add(step);
        }
    }
    eprintln!(
        "{shown}: {} addresses, {} named, {} with inline frames, {} mismatches",
        tally.addresses,
        tally.named,
        tally.inlined,
        tally.mismatches.len()
    );
    tally
}

fn assert_same(path: &Path, step: u64) -> Tally {
    let tally = compare(path, step);
    let shown: Vec<&String> = tally.mismatches.iter().take(20).collect();
    assert!(
        tally.mismatches.is_empty(),
        "{}: {} of {} addresses differ, first ones:\n{}",
        path.display(),
        tally.mismatches.len(),
        tally.addresses,
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    tally
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
        .display()
        .to_string()
}

fn build(dir: &Path, out: &str, program: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(out);
    let status = Command::new(program)
        .args(args)
        .arg("-o")
        .arg(&path)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
    path
}

/// The fixtures built into `d` the ways the tests compare: C with DWARF 5 and 4, gcc LTO, C++,
/// and Rust (optimized, with the standard library's units).
fn fixture_builds(d: &Path) -> [PathBuf; 5] {
    let inline_c = fixture("symbols_inline.c");
    let lib_c = fixture("symbols_lib.c");
    let rust = fixture("symbols_rust.rs");
    let rust_flags = [
        "-C",
        "opt-level=2",
        "-C",
        "debuginfo=2",
        "--edition",
        "2021",
        &rust,
    ];
    [
        build(d, "c5", "gcc", &["-O2", "-g", &inline_c]),
        build(d, "c4", "gcc", &["-O2", "-gdwarf-4", &inline_c]),
        build(d, "lto", "gcc", &["-O2", "-g", "-flto", &inline_c, &lib_c]),
        build(d, "cpp", "g++", &["-O2", "-g", &fixture("symbols_cpp.cpp")]),
        build(d, "rust", "rustc", &rust_flags),
    ]
}

/// Issue 13: on C (DWARF 5 and 4), C++, gcc LTO (abstract origins in other units, through
/// `DW_FORM_ref_addr`) and Rust (generics inlined, the standard library's units) builds of the
/// fixtures, and on the C library's separate debug file (compressed sections, thousands of
/// units) when the machine has it, the lazy namer gives addr2line's frames at every address.
#[test]
fn lazy_namer_matches_addr2line() {
    let dir = tempfile::tempdir().unwrap();
    let builds = fixture_builds(dir.path());
    for path in &builds {
        let rust = path.ends_with("rust");
        // Every address of the C programs; the Rust one holds the standard library.
        let tally = assert_same(path, if rust { 5 } else { 1 });
        assert!(tally.named > 100, "{}: {tally:?}", path.display());
        // The C++ fixture inlines nothing; the others do.
        if !path.ends_with("cpp") {
            assert!(tally.inlined > 0, "{}: no inline frames", path.display());
        }
    }
    match libc_debug_file() {
        Some(debug) => {
            let tally = assert_same(&debug, 97);
            assert!(tally.named > 1000, "{tally:?}");
            assert!(tally.inlined > 100, "{tally:?}");
        }
        None => eprintln!("no debug file for this libc (libc6-dbg): compared the fixtures only"),
    }
}

/// The separate debug file of the libc mapped into this process, if installed.
fn libc_debug_file() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))?;
    let data = std::fs::read(libc).ok()?;
    let id = object::File::parse(&*data).ok()?.build_id().ok()??.to_vec();
    let (first, rest) = id.split_first()?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let path = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        hex(&[*first]),
        hex(rest)
    ));
    path.exists().then_some(path)
}

/// By hand, on any file: `RPROF_DWARF_DIFF=path[:step] cargo test -p rprof-symbols --release
/// -- --ignored by_hand --nocapture`. Fails when the variable is not set.
#[test]
#[ignore = "by hand, on a file named by RPROF_DWARF_DIFF"]
fn lazy_namer_matches_addr2line_by_hand() {
    let spec = std::env::var("RPROF_DWARF_DIFF").expect("set RPROF_DWARF_DIFF=path[:step]");
    let (path, step) = match spec.rsplit_once(':') {
        Some((path, step)) => (path, step.parse().expect("step: a number")),
        None => (spec.as_str(), 1),
    };
    let tally = assert_same(Path::new(path), step);
    assert!(tally.named > 0, "{tally:?}");
}

/// Issue 13: a function's pieces (`ElfModule::pieces`, what the name cache keeps) give, at
/// every address they cover, what naming that address alone gives. Checked at every address of
/// every function that pieces are given for, starting from every `step`th address, up to
/// `budget` addresses. Returns (addresses checked, functions given in pieces).
fn check_pieces(path: &Path, step: u64, budget: usize) -> (usize, usize) {
    let shown = path.display().to_string();
    let base = open(path).unwrap();
    let file = parse(&base, &shown).unwrap();
    let mut starts = Vec::new();
    for section in file.sections() {
        let exec = match section.flags() {
            SectionFlags::Elf { sh_flags, .. } => sh_flags.contains(object::elf::SHF_EXECINSTR),
            _ => false,
        };
        if exec {
            let end = section.address().saturating_add(section.size());
            starts.extend((section.address()..end).step_by(step as usize));
        }
    }
    check_pieces_from(path, &starts, budget)
}

/// [`check_pieces`] from the addresses `starts` (ascending).
fn check_pieces_from(path: &Path, starts: &[u64], budget: usize) -> (usize, usize) {
    use crate::elf::ElfModule;
    let shown = path.display().to_string();
    let roots = [PathBuf::from("/usr/lib/debug")];
    let mut module = ElfModule::load(&shown, None, &roots, None);
    let mut exact = ElfModule::load(&shown, None, &roots, None);
    let (mut checked, mut functions) = (0usize, 0usize);
    let mut covered_until = 0u64;
    for &addr in starts {
        if checked >= budget {
            break;
        }
        if addr >= covered_until {
            let pieces = module.pieces(addr);
            if let (Some(first), Some(last)) = (pieces.first(), pieces.last()) {
                functions += 1;
                assert!(
                    first.0 <= addr && addr < last.1,
                    "{shown}: {addr:#x} not covered"
                );
                for pair in pieces.windows(2) {
                    assert_eq!(pair[0].1, pair[1].0, "{shown}: pieces not contiguous");
                    assert_ne!(pair[0].2, pair[1].2, "{shown}: equal neighbours not merged");
                }
                for (start, end, location) in &pieces {
                    for a in *start..*end {
                        assert_eq!(
                            &exact.locate(a),
                            location,
                            "{shown}: {a:#x} in the piece {start:#x}..{end:#x}"
                        );
                    }
                    checked += (end - start) as usize;
                }
                covered_until = last.1;
            }
        }
    }
    eprintln!("{shown}: {checked} addresses checked in {functions} functions given in pieces");
    (checked, functions)
}

#[test]
fn function_pieces_name_every_address_as_naming_it_alone_does() {
    let dir = tempfile::tempdir().unwrap();
    let builds = fixture_builds(dir.path());
    for path in &builds {
        let (checked, functions) = check_pieces(path, 1, 300_000);
        // The C fixtures have a handful of functions (with inlined calls); the Rust one many.
        let least = if path.ends_with("rust") { 50 } else { 2 };
        assert!(
            functions >= least && checked > 100,
            "{}: {functions}",
            path.display()
        );
    }
    // The C library, named through its separate debug file (compressed sections).
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    if let Some(libc) = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
    {
        if let Some(debug) = libc_debug_file() {
            let (checked, functions) = check_pieces(Path::new(libc), 1499, 500_000);
            assert!(functions > 50, "{libc}: {functions} functions in pieces");
            assert!(checked > 10_000, "{libc}: {checked}");
            // Assembly without DWARF functions (string functions, system call stubs): the
            // symbol bounds the pieces.
            let data = std::fs::read(&debug).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let mut starts: Vec<u64> = object::Object::symbols(&file)
                .filter(|s| {
                    let name = object::ObjectSymbol::name(s).unwrap_or("");
                    name.starts_with("__memcpy_avx") || name == "__munmap" || name == "__mprotect"
                })
                .map(|s| object::ObjectSymbol::address(&s) + 1)
                .collect();
            starts.sort_unstable();
            let (checked, functions) = check_pieces_from(Path::new(libc), &starts, 200_000);
            assert!(
                functions >= 3,
                "{libc}: {functions} assembly functions in pieces"
            );
            assert!(checked > 100, "{libc}: {checked}");
        }
    }
}

/// An empty cache directory in `d`, as one rprof build writes it.
fn test_cache(d: &Path) -> crate::CacheDir {
    let cache = crate::CacheDir {
        dir: d.join("cache"),
        tag: "this rprof".into(),
    };
    std::fs::create_dir(&cache.dir).unwrap();
    cache
}

/// Issue 13: a module's unit index is kept in the cache directory and used again while the
/// DWARF file is the same (shown by an index planted in the file: no unit covers anything, so
/// nothing is named from DWARF); a changed file or a damaged index is not used.
#[test]
fn the_unit_index_is_kept_for_the_same_file_only() {
    use crate::elf::ElfModule;
    use crate::CacheDir;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let exe = build(d, "c5", "gcc", &["-O2", "-g", &fixture("symbols_inline.c")]);
    let shown = exe.display().to_string();
    let cache = test_cache(d);
    let roots: [PathBuf; 0] = [];
    let base = open(&exe).unwrap();
    let file = parse(&base, &shown).unwrap();
    let id = object::Object::build_id(&file).unwrap().unwrap().to_vec();
    let (main, _) = {
        let sym = object::Object::symbols(&file)
            .find(|s| object::ObjectSymbol::name(s) == Ok("main"))
            .unwrap();
        (object::ObjectSymbol::address(&sym), ())
    };
    let named = |cache: Option<&CacheDir>| {
        let mut module = ElfModule::load(&shown, Some(&id), &roots, cache);
        let location = module.locate(main + 1);
        location.frames.last().and_then(|f| f.file.clone())
    };
    let fresh = named(None);
    assert!(fresh.is_some(), "main has a source file");
    assert_eq!(named(Some(&cache)), fresh, "built, then kept");
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let kept = cache.dir.join(format!("units-{hex}"));
    let good = std::fs::read(&kept).expect("index kept");
    assert_eq!(named(Some(&cache)), fresh, "read back");

    // Planted: the same header, an index with no ranges. Used, so DWARF names nothing.
    let header_len = good.len() - {
        let base = open(&exe).unwrap();
        let file = parse(&base, &shown).unwrap();
        let lazy =
            LazyDwarf::new(dwarf_sections(&file, &base).unwrap(), vec![base.clone()]).unwrap();
        lazy.index_bytes().len()
    };
    let mut planted = good[..header_len].to_vec();
    planted.extend_from_slice(&0u32.to_le_bytes());
    planted.extend_from_slice(&0u32.to_le_bytes());
    std::fs::write(&kept, &planted).unwrap();
    assert_eq!(named(Some(&cache)), None, "the planted index was used");

    // Damaged (a byte past the index): not used, names come from DWARF again.
    let mut damaged = good.clone();
    damaged.push(7);
    std::fs::write(&kept, &damaged).unwrap();
    assert_eq!(named(Some(&cache)), fresh);

    // The planted index again, but the file changed since: not used.
    std::fs::write(&kept, &planted).unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, bytes).unwrap();
    assert_eq!(
        named(Some(&cache)),
        fresh,
        "another file: index built again"
    );
    assert_ne!(std::fs::read(&kept).unwrap(), planted, "and kept anew");
}

/// Issue 13: a compressed DWARF file's sections are kept inflated in the cache directory and
/// read from there while the file is the same (shown by a source name changed in the kept
/// bytes); a changed file or a kept file cut short is not used.
#[test]
fn compressed_sections_are_kept_inflated_for_the_same_file_only() {
    use crate::elf::ElfModule;
    use crate::CacheDir;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let exe = build(
        d,
        "gz",
        "gcc",
        &["-O2", "-g", "-gz=zlib", &fixture("symbols_inline.c")],
    );
    let shown = exe.display().to_string();
    let cache = test_cache(d);
    let roots: [PathBuf; 0] = [];
    let (id, main) = {
        let base = open(&exe).unwrap();
        let file = parse(&base, &shown).unwrap();
        let info = object::Object::section_by_name(&file, ".debug_info").unwrap();
        let range = object::ObjectSection::compressed_file_range(&info).unwrap();
        assert_ne!(
            range.format,
            object::CompressionFormat::None,
            "built compressed"
        );
        let sym = object::Object::symbols(&file)
            .find(|s| object::ObjectSymbol::name(s) == Ok("main"))
            .unwrap();
        let id = object::Object::build_id(&file).unwrap().unwrap().to_vec();
        (id, object::ObjectSymbol::address(&sym))
    };
    let named = |cache: Option<&CacheDir>| {
        let mut module = ElfModule::load(&shown, Some(&id), &roots, cache);
        let location = module.locate(main + 1);
        location.frames.last().and_then(|f| f.file.clone())
    };
    let fresh = named(None).expect("main has a source file");
    assert!(fresh.ends_with("symbols_inline.c"), "{fresh}");
    assert_eq!(
        named(Some(&cache)).as_ref(),
        Some(&fresh),
        "inflated, then kept"
    );
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let kept = cache.dir.join(format!("sections-{hex}"));
    let good = std::fs::read(&kept).expect("sections kept");
    assert_eq!(named(Some(&cache)).as_ref(), Some(&fresh), "read back");

    // Naming reads the kept file's pages; between bursts of naming they are given back too.
    let mut module = ElfModule::load(&shown, Some(&id), &roots, Some(&cache));
    let _ = module.locate(main + 1);
    assert!(mapped_rss_kb(&kept) > 0, "read from the kept sections");
    module.release_pages();
    assert_eq!(mapped_rss_kb(&kept), 0, "pages given back");
    drop(module);

    // Planted: the source's name changed in the kept bytes. Used, so main's file is that name.
    let (from, to) = (&b"symbols_inline.c"[..], &b"symbols_PLANTE.c"[..]);
    let mut planted = good.clone();
    let mut at = 0;
    while let Some(i) = planted[at..].windows(from.len()).position(|w| w == from) {
        planted[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
    }
    assert!(at > 0, "the source's name is in the kept sections");
    std::fs::write(&kept, &planted).unwrap();
    let read = named(Some(&cache)).expect("a source file");
    assert!(
        read.ends_with("symbols_PLANTE.c"),
        "the kept sections were used: {read}"
    );

    // Cut short: not used, the sections are inflated from the file again.
    std::fs::write(&kept, &planted[..planted.len() / 2]).unwrap();
    assert_eq!(named(Some(&cache)).as_ref(), Some(&fresh));

    // Planted again, but the file changed since: not used, and kept anew.
    std::fs::write(&kept, &planted).unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, bytes).unwrap();
    assert_eq!(named(Some(&cache)).as_ref(), Some(&fresh), "another file");
    let anew = std::fs::read(&kept).unwrap();
    assert!(
        anew.windows(to.len()).all(|w| w != to) && anew.len() == good.len(),
        "kept anew"
    );
}

/// Resident kB of this process's mappings of `path` (/proc/self/smaps).
pub(crate) fn mapped_rss_kb(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let want = path.to_str().unwrap();
    let mut ours = false;
    let mut total = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 5 && fields[0].contains('-') && fields[1].len() == 4 {
            ours = fields.get(5) == Some(&want);
        } else if let Some(kb) = line.strip_prefix("Rss:").filter(|_| ours) {
            total += kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}
