//! Names for a profile's addresses: asks `rprof-symbols` for every (module, address) a profile
//! needs and packs the answers into `Symbols` records.
//!
//! `record` calls [`symbolize`] once the target has exited, so that the finished profile is
//! self-contained. `report` and `flame` call [`fill_missing`] for a profile whose recording was
//! interrupted before that step: its addresses are then named from the binaries on this machine.
//! Naming that takes more than a second shows a progress line on a terminal ([`Progress`]).

use std::collections::HashMap;

use rprof_profile::{
    LookupSet, Module, ModuleId, ModuleKind, Profile, Record, StoredFrame, Symbols,
};
use rprof_symbols::{Location, ModuleSource, ModuleStatus, Symbolizer};

use crate::progress::Progress;

/// One `Symbols` record per module of `wanted`, naming each of its lookup addresses. Addresses
/// that cannot be named are stored with no frames, so that nobody asks for them again.
pub fn symbolize(modules: &[Module], wanted: &LookupSet) -> Vec<Record> {
    let by_id: HashMap<ModuleId, &Module> = modules.iter().map(|m| (m.id, m)).collect();
    let mut symbolizer = Symbolizer::new();
    let mut records = Vec::new();
    let progress = Progress::new("naming addresses", Some(wanted.len() as u64));
    for (id, lookups) in wanted.iter() {
        let Some(module) = by_id.get(&id) else {
            continue;
        };
        let source = match module.kind {
            ModuleKind::Elf => ModuleSource::Elf {
                path: &module.path,
                build_id: module.build_id.as_deref(),
            },
            ModuleKind::Vdso => ModuleSource::Vdso,
            ModuleKind::Kernel => ModuleSource::Kernel,
            ModuleKind::Jit => match module.jit_pid {
                Some(pid) => ModuleSource::JitMap { pid },
                None => continue,
            },
            ModuleKind::Anonymous => continue,
        };
        // Named a batch at a time: the symbolizer's answers hold every frame's strings, the
        // packed record holds each distinct string once; only one batch is held both ways.
        let addresses: Vec<u64> = lookups.iter().copied().collect();
        let mut packer = Packer::new(id, addresses.len());
        progress.set_message(module.name());
        for batch in addresses.chunks(BATCH) {
            packer.add(batch, &symbolizer.symbolize(&source, batch));
            progress.inc(batch.len() as u64);
        }
        progress.suspend(|| warn_about(&symbolizer.module_status(&source)));
        // Each module's DWARF is dropped once its addresses are named: the recorder's peak
        // memory is then that of its largest module, not of all of them (issue 13).
        symbolizer.forget(&source);
        records.push(Record::Symbols(packer.finish()));
    }
    records
}

/// Addresses named per call to the symbolizer.
const BATCH: usize = 4096;

/// Says on stderr, once per module, why its names are missing or not trusted. A module without
/// DWARF is normal (names then come from its symbol table) and is not mentioned.
fn warn_about(status: &ModuleStatus) {
    if let Some(problem) = &status.problem {
        // The problem quotes a module path, which the target's mappings named.
        eprintln!(
            "rprof: warning: {}",
            rprof_report::visible(&problem.to_string())
        );
    }
}

/// Packs symbolizer answers for one module into a `Symbols` record, interning the strings.
struct Packer {
    symbols: Symbols,
    index: HashMap<String, u32>,
}

impl Packer {
    fn new(module: ModuleId, addresses: usize) -> Packer {
        Packer {
            symbols: Symbols {
                module: Some(module),
                strings: Vec::new(),
                entries: Vec::with_capacity(addresses),
            },
            index: HashMap::new(),
        }
    }

    fn intern(&mut self, s: &Option<String>) -> u32 {
        let Some(s) = s else { return u32::MAX };
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.strings.len() as u32;
        self.symbols.strings.push(s.clone());
        self.index.insert(s.clone(), i);
        i
    }

    /// Adds the answers `locations` for `addresses`.
    fn add(&mut self, addresses: &[u64], locations: &[Location]) {
        for (&address, location) in addresses.iter().zip(locations) {
            let frames = location
                .frames
                .iter()
                .map(|f| StoredFrame {
                    function: self.intern(&f.function),
                    file: self.intern(&f.file),
                    line: f.line.unwrap_or(0),
                    inlined: f.inlined,
                })
                .collect();
            self.symbols.entries.push((address, frames));
        }
    }

    fn finish(self) -> Symbols {
        self.symbols
    }
}

/// Names the addresses of `profile` that have none yet (an interrupted recording), from the
/// binaries on this machine, and says so on stderr.
pub fn fill_missing(profile: &mut Profile) -> anyhow::Result<()> {
    let wanted = profile.take_missing_lookups();
    if wanted.is_empty() {
        return Ok(());
    }
    let modules: Vec<Module> = profile.modules.values().cloned().collect();
    eprintln!(
        "rprof: note: naming {} addresses from the binaries on this machine (the profile has no \
         symbols for them)",
        wanted.len()
    );
    let blocks = symbolize(&modules, &wanted)
        .into_iter()
        .filter_map(|record| match record {
            Record::Symbols(symbols) => Some(symbols),
            _ => None,
        })
        .collect();
    profile.add_symbols(blocks);
    Ok(())
}
