//! Naming a lock by the data symbol its address falls in: a global or static mutex is a
//! symbol of type `STT_OBJECT` in `.symtab` (or `.dynsym`) of the module whose data holds it.
//!
//! The profile knows where each module's file is loaded in a process (`LockRecord::Base`:
//! process address of SVMA 0, from its executable mapping; the data segments share it, PIE or
//! not), but not the data mappings themselves. So a lock address is tried against every
//! module of its process: `address − base` must fall inside one of the file's `PT_LOAD`
//! segments, and then the symbol that covers it names it (`order_book`, a Rust static's
//! demangled path, `+offset` inside a struct). The files are read from disk when the report
//! is made, size-capped through `rprof-fs`, and only used when their build id matches the
//! recording's.

use std::collections::HashMap;
use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use rprof_profile::{Module, ModuleId, Profile};

/// What a lock address was found to be in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A data symbol covers it: its demangled name, and the offset into it.
    Symbol {
        /// The symbol's name (demangled).
        name: String,
        /// Bytes from the symbol's start.
        offset: u64,
        /// The module.
        module: ModuleId,
    },
    /// Inside the module's loaded segments, but no symbol covers it (a stripped file).
    InModule {
        /// The module.
        module: ModuleId,
        /// The address in the file (SVMA).
        svma: u64,
    },
}

/// The data symbols of one ELF file, sorted by address, and its loaded segments.
#[derive(Debug, Default)]
struct DataSymbols {
    /// (address, size, name), sorted.
    symbols: Vec<(u64, u64, String)>,
    /// (vaddr, memsz) of the file's loaded segments.
    segments: Vec<(u64, u64)>,
}

impl DataSymbols {
    fn read(path: &Path, build_id: Option<&[u8]>) -> Option<DataSymbols> {
        let (file, _) = rprof_fs::read::open_regular(
            path,
            &rprof_fs::read::Options::new("an ELF file", rprof_fs::read::ELF_LIMIT),
        )
        .ok()?;
        // SAFETY: a read-only private mapping of a regular file, read as untrusted bytes
        // (object bounds-checks every access). A file truncated meanwhile could fault, as for
        // every ELF reader that maps.
        let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let elf = object::File::parse(&*data).ok()?;
        if let Some(wanted) = build_id {
            // Another build of the file: its symbols would name the wrong variables.
            if elf.build_id().ok().flatten().is_some_and(|id| id != wanted) {
                return None;
            }
        }
        let segments = elf
            .segments()
            .map(|s| (s.address(), s.size()))
            .filter(|&(_, size)| size > 0)
            .collect();
        let mut symbols: Vec<(u64, u64, String)> = Vec::new();
        for symbol in elf.symbols().chain(elf.dynamic_symbols()) {
            if symbol.kind() != SymbolKind::Data || !symbol.is_definition() {
                continue;
            }
            let Ok(name) = symbol.name() else { continue };
            if name.is_empty() {
                continue;
            }
            symbols.push((
                symbol.address(),
                symbol.size(),
                rprof_symbols::demangle(name),
            ));
        }
        symbols.sort();
        symbols.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        Some(DataSymbols { symbols, segments })
    }

    fn contains(&self, svma: u64) -> bool {
        self.segments
            .iter()
            .any(|&(start, size)| svma >= start && svma - start < size)
    }

    /// The symbol covering `svma` (the last one starting at or before it, if its size reaches
    /// it; a symbol of size 0 only names its own address).
    fn symbol(&self, svma: u64) -> Option<(&str, u64)> {
        let i = self.symbols.partition_point(|s| s.0 <= svma);
        self.symbols[..i]
            .iter()
            .rev()
            .take(8)
            .find(|&&(start, size, _)| svma - start < size.max(1))
            .map(|(start, _, name)| (name.as_str(), svma - start))
    }
}

/// Names lock addresses from the modules' files, each file read once.
#[derive(Default)]
pub(crate) struct Namer {
    files: HashMap<ModuleId, Option<DataSymbols>>,
}

impl Namer {
    /// What `address` of process `pid` is, from the module bases the profile holds.
    pub(crate) fn find(&mut self, profile: &Profile, pid: u32, address: u64) -> Option<Found> {
        let mut in_module = None;
        for &(base_pid, module, base) in &profile.bases {
            if base_pid != pid || address < base {
                continue;
            }
            let Some(info) = profile.modules.get(&module) else {
                continue;
            };
            let svma = address - base;
            let Some(symbols) = self
                .files
                .entry(module)
                .or_insert_with(|| read_module(info))
                .as_ref()
            else {
                continue;
            };
            if !symbols.contains(svma) {
                continue;
            }
            if let Some((name, offset)) = symbols.symbol(svma) {
                return Some(Found::Symbol {
                    name: name.to_string(),
                    offset,
                    module,
                });
            }
            in_module = Some(Found::InModule { module, svma });
        }
        in_module
    }
}

fn read_module(module: &Module) -> Option<DataSymbols> {
    if module.kind != rprof_profile::ModuleKind::Elf {
        return None;
    }
    let path = module.path.trim_end_matches(" (deleted)");
    DataSymbols::read(Path::new(path), module.build_id.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DataSymbols {
        DataSymbols {
            symbols: vec![
                (0x4000, 40, "order_book".into()),
                (0x4040, 40, "stats_lock".into()),
                (0x4100, 0, "marker".into()),
            ],
            segments: vec![(0x3000, 0x2000)],
        }
    }

    /// Issue 17: a lock inside a struct is named `symbol+offset`; outside every symbol, none.
    #[test]
    fn symbol_and_offset() {
        let t = table();
        assert_eq!(t.symbol(0x4000), Some(("order_book", 0)));
        assert_eq!(t.symbol(0x4048), Some(("stats_lock", 8)));
        assert_eq!(t.symbol(0x4068), None);
        assert_eq!(t.symbol(0x4100), Some(("marker", 0)));
        assert_eq!(t.symbol(0x10), None);
        assert!(t.contains(0x4068));
        assert!(!t.contains(0x5000));
    }

    /// Issue 17: the fixture binaries name their own globals (this test binary's static).
    #[test]
    fn reads_this_binary() {
        static NAMED_FOR_THE_TEST: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
        let exe = std::env::current_exe().unwrap();
        let symbols = DataSymbols::read(&exe, None).unwrap();
        let ours = symbols
            .symbols
            .iter()
            .find(|s| s.2.ends_with("NAMED_FOR_THE_TEST"))
            .expect("the static is a data symbol");
        assert!(symbols.contains(ours.0));
        let _ = NAMED_FOR_THE_TEST.lock().map(|g| *g);
    }
}
