//! Names for a profile's addresses: asks `rprof-symbols` for every (module, address) a profile
//! needs and packs the answers into `Symbols` records.
//!
//! `record` names through [`Live`] (`live.rs`): while the target runs, on a thread of its own,
//! then what is left once the target has exited, so that the finished profile is
//! self-contained; `record --alloc` calls [`symbolize`] at the end. `report` and `flame` call
//! [`fill_missing`] for a profile whose recording was interrupted before that step: its
//! addresses are then named from the binaries on this machine. Naming that takes more than a
//! second shows a progress line on a terminal ([`Progress`]).

use std::collections::{BTreeMap, HashMap};

use std::path::Path;

use rprof_namecache::{ModuleNames, NameCache};
use rprof_profile::{
    LookupSet, Module, ModuleId, ModuleKind, Profile, Record, StoredFrame, Symbols,
};
use rprof_symbols::{
    CacheDir, DebugInfo, Location, ModuleSource, ModuleStatus, Options, Symbolizer,
};

use crate::progress::Progress;

pub use live::Live;

mod live;

/// One `Symbols` record per module of `wanted`, naming each of its lookup addresses. Addresses
/// that cannot be named are stored with no frames, so that nobody asks for them again.
///
/// Names come from rprof's cache where it holds them ([`NameCache::from_env`]): a module whose
/// addresses are all there is not loaded at all, and kernel addresses in the kernel's own text
/// come from the table kept for this boot. What had to be named from the files is added to the
/// cache afterwards.
pub fn symbolize(modules: &[Module], wanted: &LookupSet) -> Vec<Record> {
    name_with(modules, wanted, NameCache::from_env().as_ref(), None)
}

/// A symbolizer keeping its files in `cache`, if any.
fn symbolizer_for(cache: Option<&NameCache>) -> Symbolizer {
    let mut options = Options::default();
    if let Some((cache, tag)) = cache.and_then(|c| Some((c, c.namer()?))) {
        options.cache = Some(CacheDir {
            dir: cache.dir().to_path_buf(),
            tag: tag.to_string(),
        });
    }
    Symbolizer::with_options(options)
}

/// What was named while the target ran ([`live::Live`]): the symbolizer, with the modules it
/// loaded, and the names of each module named through the cache.
pub(crate) struct Early {
    symbolizer: Symbolizer,
    modules: HashMap<ModuleId, CachedNames>,
}

fn name_with(
    modules: &[Module],
    wanted: &LookupSet,
    cache: Option<&NameCache>,
    early: Option<Early>,
) -> Vec<Record> {
    let by_id: HashMap<ModuleId, &Module> = modules.iter().map(|m| (m.id, m)).collect();
    let (mut symbolizer, mut early) = match early {
        Some(early) => (early.symbolizer, early.modules),
        None => (symbolizer_for(cache), HashMap::new()),
    };
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
                early.remove(&id),
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

/// One module's names through the cache: those the cache held when the module was first met in
/// this run, and the pieces named afresh since (in any order: while the target runs, addresses
/// come as samples first use them).
#[derive(Default)]
pub(crate) struct CachedNames {
    old: Option<ModuleNames>,
    /// Pieces named afresh: start -> (end, frames), not overlapping; the frames' strings are in
    /// `strings`.
    fresh: BTreeMap<u64, (u64, Vec<StoredFrame>)>,
    strings: ModuleNames,
    named_afresh: bool,
}

impl CachedNames {
    fn read(cached: &Cached<'_>) -> CachedNames {
        CachedNames {
            old: cached
                .cache
                .module_names(cached.build_id, Path::new(cached.path)),
            ..CachedNames::default()
        }
    }

    /// The stored frames for `address` and the strings they point into, if known.
    fn find(&self, address: u64) -> Option<(&[StoredFrame], &[String])> {
        if let Some((_, _, frames)) = self.old.as_ref().and_then(|old| old.find(address)) {
            let strings = self.old.as_ref().map_or(&[][..], |old| &old.strings[..]);
            return Some((frames, strings));
        }
        let (_, (end, frames)) = self.fresh.range(..=address).next_back()?;
        (address < *end).then_some((&frames[..], &self.strings.strings[..]))
    }

    /// Keeps the piece `start..end` named `location`, unless it overlaps one kept already.
    fn keep(&mut self, start: u64, end: u64, location: &Location) {
        let clear = self
            .fresh
            .range(..end)
            .next_back()
            .is_none_or(|(_, (before_end, _))| *before_end <= start);
        if clear && start < end {
            let frames = stored(&mut self.strings, location);
            self.fresh.insert(start, (end, frames));
        }
    }

    /// Makes sure `address` is known ([`find`](Self::find)): when it is not, the whole
    /// function holding it is named at once ([`Symbolizer::function_pieces`]) and kept, so that
    /// a later recording naming any address of that function does not load the module. The
    /// module is loaded only then. Returns the answer for `address` when it is not kept (past
    /// [`FRESH_PIECES`], or its piece overlaps one kept before).
    fn name(
        &mut self,
        symbolizer: &mut Symbolizer,
        source: &ModuleSource<'_>,
        address: u64,
    ) -> Option<Location> {
        if self.find(address).is_some() {
            return None;
        }
        self.named_afresh = true;
        let room = self.fresh.len() < FRESH_PIECES;
        let pieces = if room {
            symbolizer.function_pieces(source, address)
        } else {
            Vec::new()
        };
        if pieces.is_empty() {
            let location = symbolizer
                .symbolize(source, &[address])
                .pop()
                .unwrap_or_default();
            if !room {
                return Some(location);
            }
            self.keep(address, address.saturating_add(1), &location);
        }
        for (start, end, location) in &pieces {
            self.keep(*start, *end, location);
        }
        if self.find(address).is_none() {
            // Its piece overlapped one kept before (functions whose ranges overlap): named on
            // its own, as without the cache.
            return symbolizer.symbolize(source, &[address]).pop();
        }
        None
    }

    /// The pieces named afresh, in order.
    fn into_fresh(self) -> (ModuleNames, Option<ModuleNames>) {
        let mut names = self.strings;
        for (start, (end, frames)) in self.fresh {
            names.push(start, end, frames);
        }
        (names, self.old)
    }
}

/// Names `addresses` of an ELF module with a build id through the cache (see
/// [`CachedNames::name`]), starting from what was named for it while the target ran, if
/// anything, and adds what had to be named afresh to the cache.
fn name_through_cache(
    symbolizer: &mut Symbolizer,
    source: &ModuleSource<'_>,
    id: ModuleId,
    addresses: &[u64],
    cached: Cached<'_>,
    early: Option<CachedNames>,
    progress: &Progress,
) -> Symbols {
    let mut names = early.unwrap_or_else(|| CachedNames::read(&cached));
    let mut packer = Packer::new(id, addresses.len());
    for &address in addresses {
        match names.name(symbolizer, source, address) {
            Some(location) => packer.add(address, &location),
            None => match names.find(address) {
                Some((frames, strings)) => packer.add_stored(address, frames, strings),
                None => packer.add(address, &Location::default()),
            },
        }
        progress.inc(1);
    }
    if names.named_afresh {
        let status = symbolizer.module_status(source);
        progress.suspend(|| warn_about(&status));
        let (fresh, old) = names.into_fresh();
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
    // Best effort: without it the next run names these addresses from the files again.
    let _ = cached
        .cache
        .add_module_names(cached.build_id, &sources, old, &fresh);
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
    let blocks = name_with(&modules, &wanted, None, None)
        .into_iter()
        .filter_map(|record| match record {
            Record::Symbols(symbols) => Some(symbols),
            _ => None,
        })
        .collect();
    profile.add_symbols(blocks);
    Ok(())
}

#[cfg(test)]
mod tests {
    use rprof_symbols::SymFrame;

    use super::*;

    fn at(function: &str, line: u32) -> Location {
        Location {
            frames: vec![SymFrame {
                function: Some(function.to_string()),
                file: Some("a.c".to_string()),
                line: Some(line),
                inlined: false,
            }],
        }
    }

    fn name(names: &CachedNames, address: u64) -> Option<String> {
        let (frames, strings) = names.find(address)?;
        strings.get(frames.first()?.function as usize).cloned()
    }

    /// Issue 13: while the target runs, functions are named in the order samples first use
    /// them; each is kept wherever it lies, and stored in address order.
    #[test]
    fn pieces_named_out_of_order_are_all_kept() {
        let mut names = CachedNames::default();
        names.keep(0x2000, 0x2010, &at("later", 1));
        names.keep(0x1000, 0x1008, &at("earlier", 2));
        names.keep(0x1008, 0x1010, &at("earlier", 3));
        names.keep(0x3000, 0x3001, &at("lone", 4));
        names.keep(0x100c, 0x1020, &at("overlapping", 5));
        names.keep(0x1ff0, 0x2008, &at("overlapping", 6));
        assert_eq!(name(&names, 0x2004).as_deref(), Some("later"));
        assert_eq!(name(&names, 0x1000).as_deref(), Some("earlier"));
        assert_eq!(name(&names, 0x100f).as_deref(), Some("earlier"));
        assert_eq!(
            name(&names, 0x1010),
            None,
            "overlapping pieces are not kept"
        );
        assert_eq!(name(&names, 0x1ff0), None);
        assert_eq!(name(&names, 0x3000).as_deref(), Some("lone"));
        assert_eq!(name(&names, 0x3001), None);
        let (fresh, old) = names.into_fresh();
        assert!(old.is_none());
        assert_eq!(fresh.len(), 4, "every piece kept, in order");
        let starts: Vec<u64> = [0x1000, 0x1008, 0x2000, 0x3000]
            .into_iter()
            .filter_map(|a| fresh.find(a).map(|p| p.0))
            .collect();
        assert_eq!(starts, [0x1000, 0x1008, 0x2000, 0x3000]);
    }
}
