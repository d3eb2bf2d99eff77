//! Names for a profile's addresses: asks `rprof-symbols` for every (module, address) a profile
//! needs and packs the answers into `Symbols` records.
//!
//! `record` calls [`symbolize`] once the target has exited, so that the finished profile is
//! self-contained. `report` and `flame` call [`fill_missing`] for a profile whose recording was
//! interrupted before that step: its addresses are then named from the binaries on this machine.
//! Naming that takes more than a second shows a progress line on a terminal ([`Progress`]).

use std::collections::HashMap;

use std::path::Path;

use rprof_namecache::{ModuleNames, NameCache};
use rprof_profile::{
    LookupSet, Module, ModuleId, ModuleKind, Profile, Record, StoredFrame, Symbols,
};
use rprof_symbols::{
    CacheDir, DebugInfo, Location, ModuleSource, ModuleStatus, Options, Symbolizer,
};

use crate::progress::Progress;

/// One `Symbols` record per module of `wanted`, naming each of its lookup addresses. Addresses
/// that cannot be named are stored with no frames, so that nobody asks for them again.
///
/// Names come from rprof's cache where it holds them ([`NameCache::from_env`]): a module whose
/// addresses are all there is not loaded at all, and kernel addresses in the kernel's own text
/// come from the table kept for this boot. What had to be named from the files is added to the
/// cache afterwards.
pub fn symbolize(modules: &[Module], wanted: &LookupSet) -> Vec<Record> {
    name_with(modules, wanted, NameCache::from_env().as_ref())
}

fn name_with(modules: &[Module], wanted: &LookupSet, cache: Option<&NameCache>) -> Vec<Record> {
    let by_id: HashMap<ModuleId, &Module> = modules.iter().map(|m| (m.id, m)).collect();
    let mut options = Options::default();
    if let Some((cache, tag)) = cache.and_then(|c| Some((c, c.namer()?))) {
        options.cache = Some(CacheDir {
            dir: cache.dir().to_path_buf(),
            tag: tag.to_string(),
        });
    }
    let mut symbolizer = Symbolizer::with_options(options);
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
        let addresses: Vec<u64> = lookups.iter().copied().collect();
        progress.set_message(module.name());
        let names = match (cache, &source) {
            (
                Some(cache),
                ModuleSource::Elf {
                    build_id: Some(build_id),
                    ..
                },
            ) => name_through_cache(
                &mut symbolizer,
                &source,
                id,
                &addresses,
                Cached {
                    cache,
                    build_id,
                    path: &module.path,
                },
                &progress,
            ),
            _ => {
                // Named a batch at a time: the symbolizer's answers hold every frame's
                // strings, the packed record holds each distinct string once; only one batch
                // is held both ways.
                let mut packer = Packer::new(id, addresses.len());
                for batch in addresses.chunks(BATCH) {
                    let found = symbolizer.symbolize(&source, batch);
                    for (&address, location) in batch.iter().zip(&found) {
                        packer.add(address, location);
                    }
                    progress.inc(batch.len() as u64);
                }
                let status = symbolizer.module_status(&source);
                progress.suspend(|| warn_about(&status));
                packer.finish()
            }
        };
        // Each module's DWARF is dropped once its addresses are named: the recorder's peak
        // memory is then that of its largest module, not of all of them (issue 13).
        symbolizer.forget(&source);
        records.push(Record::Symbols(names));
    }
    records
}

/// A module whose names may be cached, and where.
struct Cached<'a> {
    cache: &'a NameCache,
    build_id: &'a [u8],
    path: &'a str,
}

/// Most pieces named afresh per module and run for the cache: past this, addresses are named
/// one at a time and not cached (a recording touching that much code is named once anyway).
const FRESH_PIECES: usize = 1 << 18;

/// Names `addresses` of an ELF module with a build id: from the cache where its pieces cover
/// them; otherwise the whole function holding the address is named at once
/// ([`Symbolizer::function_pieces`]) and added to the cache, so that a later recording naming
/// any address of that function does not load the module. The module is loaded only when an
/// address is not in the cache.
fn name_through_cache(
    symbolizer: &mut Symbolizer,
    source: &ModuleSource<'_>,
    id: ModuleId,
    addresses: &[u64],
    cached: Cached<'_>,
    progress: &Progress,
) -> Symbols {
    let old = cached
        .cache
        .module_names(cached.build_id, Path::new(cached.path));
    let mut packer = Packer::new(id, addresses.len());
    let mut fresh = ModuleNames::default();
    let mut named_afresh = false;
    for &address in addresses {
        if let Some((_, _, frames)) = old.as_ref().and_then(|old| old.find(address)) {
            let strings = old.as_ref().map_or(&[][..], |old| &old.strings[..]);
            packer.add_stored(address, frames, strings);
        } else if let Some((_, _, frames)) = fresh.find(address) {
            packer.add_stored(address, frames, &fresh.strings);
        } else {
            named_afresh = true;
            let pieces = if fresh.len() < FRESH_PIECES {
                symbolizer.function_pieces(source, address)
            } else {
                Vec::new()
            };
            if pieces.is_empty() {
                let location = symbolizer
                    .symbolize(source, &[address])
                    .pop()
                    .unwrap_or_default();
                packer.add(address, &location);
                if fresh.len() < FRESH_PIECES {
                    let frames = stored(&mut fresh, &location);
                    fresh.push(address, address.saturating_add(1), frames);
                }
            } else {
                for (start, end, location) in &pieces {
                    if (*start..*end).contains(&address) {
                        packer.add(address, location);
                    }
                    let frames = stored(&mut fresh, location);
                    fresh.push(*start, *end, frames);
                }
            }
        }
        progress.inc(1);
    }
    if named_afresh {
        let status = symbolizer.module_status(source);
        progress.suspend(|| warn_about(&status));
        remember(&cached, &status, fresh, old);
    }
    packer.finish()
}

/// `location`'s frames with their strings in `names`.
fn stored(names: &mut ModuleNames, location: &Location) -> Vec<StoredFrame> {
    location
        .frames
        .iter()
        .map(|f| StoredFrame {
            function: names.intern(f.function.as_deref()),
            file: names.intern(f.file.as_deref()),
            line: f.line.unwrap_or(0),
            inlined: f.inlined,
        })
        .collect()
}

/// Stores a module's names in the cache: those of earlier runs with this run's pieces in
/// place of those they overlap. Only names read from DWARF without a problem are kept: a module named from
/// its symbol table alone is cheap to name again, and a problem (a missing or mismatched file)
/// is to be said again on every run.
fn remember(
    cached: &Cached<'_>,
    status: &ModuleStatus,
    fresh: ModuleNames,
    old: Option<ModuleNames>,
) {
    if status.problem.is_some() {
        return;
    }
    let mut sources = vec![Path::new(cached.path)];
    match &status.debug_info {
        DebugInfo::Embedded => {}
        DebugInfo::Separate(debug) => sources.push(debug),
        _ => return,
    }
    let names = match old {
        Some(mut old) => {
            old.merge_newer(&fresh);
            old
        }
        None => fresh,
    };
    // Best effort: without it the next run names these addresses from the files again.
    let _ = cached
        .cache
        .store_module_names(cached.build_id, &sources, &names);
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

    /// Adds the symbolizer's answer `location` for `address`.
    fn add(&mut self, address: u64, location: &Location) {
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

    /// Adds stored `frames` for `address`, whose strings are indices into `strings` (an index
    /// past them reads as unknown).
    fn add_stored(&mut self, address: u64, frames: &[StoredFrame], strings: &[String]) {
        let text = |i: u32| strings.get(i as usize).cloned();
        let frames = frames
            .iter()
            .map(|f| {
                let (function, file) = (text(f.function), text(f.file));
                StoredFrame {
                    function: self.intern(&function),
                    file: self.intern(&file),
                    line: f.line,
                    inlined: f.inlined,
                }
            })
            .collect();
        self.symbols.entries.push((address, frames));
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
    // Not from the cache: a report names from the files as they are, and writes nothing.
    let blocks = name_with(&modules, &wanted, None)
        .into_iter()
        .filter_map(|record| match record {
            Record::Symbols(symbols) => Some(symbols),
            _ => None,
        })
        .collect();
    profile.add_symbols(blocks);
    Ok(())
}
