//! rprof-namecache: what rprof remembers between runs, so that naming a binary it has named
//! before does not load that binary's debug information again.
//!
//! Naming the addresses of a recording is most of what `rprof record` does after its target
//! exits (issue 13): on ripgrep with full debug info, indexing its 960 units, decompressing
//! libc's debug sections and reading `/proc/kallsyms` cost more than the rest of the recorder.
//! The same binaries are usually recorded again and again, so the answers are kept:
//!
//! - **Names of a module's code**, per GNU build id ([`NameCache::module_names`],
//!   [`NameCache::store_module_names`]): [`ModuleNames`], address ranges ("pieces") that each
//!   get one answer (the frames, innermost first): usually whole functions, named at once the
//!   first time one of their addresses was sampled, so that later samples anywhere in them are
//!   named from here. Stored as a small profile file (rprof-profile's format: checksummed,
//!   compressed, and read with every bound a profile from a stranger gets) holding one
//!   `Symbols` record whose entries are the pieces' starts and, where a gap follows, an entry
//!   without frames at the piece's end. With it go the identities (device, inode, size,
//!   modification time) of the files the names came from (the module, its separate debug
//!   file) and of the rprof executable that named them: the names are used only while all of
//!   those are unchanged, so a cached answer is the answer the files would give now.
//! - **The directory and a tag for rprof-symbols' own files** ([`NameCache::dir`],
//!   [`NameCache::namer`]): the kernel's text symbols for the running boot and each DWARF
//!   file's unit index; their formats and checks belong to rprof-symbols.
//!
//! The directory is `$RPROF_CACHE_DIR`, else `$XDG_CACHE_HOME/rprof`, else `$HOME/.cache/rprof`;
//! `RPROF_CACHE_DIR=off` (or empty) turns the cache off. It is created with mode 0700 when
//! missing, and used only if it is a real directory (not a link) owned by the effective user and
//! writable by nobody else; otherwise rprof names everything afresh, as without a cache. Files
//! in it are created beside their destination and renamed into place (rprof-fs, mode 0600, kept
//! by the effective user even under sudo), and read only when they are regular files (not
//! links) owned by the effective user, up to a size cap. A file that does not read is ignored
//! and replaced at the next store: the cache can make naming faster, never wrong or impossible.
//!
//! Left to others: naming (rprof-symbols), deciding which modules are worth caching and merging
//! a run's answers with the cached ones (the caller, `src/naming.rs`).

#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rprof_fs::read::{identity, open_regular, read_bounded, Options};
use rprof_fs::{Access, NewFile};
use rprof_profile::format::BlockReader;
use std::collections::HashMap;

use rprof_profile::{
    Header, Module, ModuleId, ModuleKind, Record, StoredFrame, Summary, Symbols, Writer,
};

/// The largest names file read (a module's names for a million addresses stay far below).
pub const NAMES_LIMIT: u64 = 64 << 20;

/// Most pieces kept per module (see [`ModuleNames::merge_newer`]).
pub const MAX_PIECES: usize = 1 << 20;

/// What the header's `event` field says in a names file: the kind and version of the file.
const NAMES_KIND: &str = "rprof name cache 1";

/// The cache directory, checked.
#[derive(Debug, Clone)]
pub struct NameCache {
    dir: PathBuf,
    /// Identity of the rprof executable naming now: names from another build are not used.
    namer: Option<String>,
}

impl NameCache {
    /// The cache the environment names (see the crate documentation), or `None` when it is off
    /// or the directory cannot be used safely.
    pub fn from_env() -> Option<NameCache> {
        let dir = match std::env::var_os("RPROF_CACHE_DIR") {
            Some(dir) if dir.is_empty() || dir == "off" => return None,
            Some(dir) => PathBuf::from(dir),
            None => default_dir()?,
        };
        NameCache::at(&dir)
    }

    /// The cache in `dir`, created (mode 0700, parents as needed) when missing; `None` unless it
    /// is a directory, not a link, owned by the effective user and writable by nobody else.
    pub fn at(dir: &Path) -> Option<NameCache> {
        if !dir.is_absolute() {
            return None;
        }
        if std::fs::symlink_metadata(dir).is_err() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let meta = std::fs::symlink_metadata(dir).ok()?;
        let private = meta.is_dir()
            && meta.uid() == rprof_fs::read::effective_uid()
            && meta.mode() & 0o022 == 0;
        private.then(|| NameCache {
            dir: dir.to_path_buf(),
            namer: std::env::current_exe()
                .ok()
                .and_then(|exe| std::fs::metadata(exe).ok())
                .map(|m| identity(&m)),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A tag that changes whenever the naming rprof changes (its executable's identity), for
    /// files in [`dir`](Self::dir) whose format another crate owns (rprof-symbols' kernel
    /// symbols and unit indexes).
    pub fn namer(&self) -> Option<&str> {
        self.namer.as_deref()
    }

    fn names_path(&self, build_id: &[u8]) -> Option<PathBuf> {
        // A build id is 4 to 64 bytes (usually 20); anything else is not used as a file name.
        if !(4..=64).contains(&build_id.len()) {
            return None;
        }
        let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
        Some(self.dir.join(format!("names-{hex}.rprof")))
    }

    /// The names stored for the module with `build_id` at `module` (its path as mapped), if
    /// there are any, `module` is the very file they were named from (a stripped copy keeps the
    /// build id but not the DWARF), and every file they came from (and the rprof that named
    /// them) is unchanged. Any problem reading the file gives `None`.
    pub fn module_names(&self, build_id: &[u8], module: &Path) -> Option<ModuleNames> {
        let namer = self.namer.as_deref()?;
        let path = self.names_path(build_id)?;
        let uid = [rprof_fs::read::effective_uid()];
        let options = Options::new("a name cache file", NAMES_LIMIT)
            .no_follow()
            .owned_by(&uid);
        let bytes = read_bounded(&path, &options).ok()?;
        let label = path.to_string_lossy();
        let (header, mut reader) = BlockReader::new(&bytes[..], &label).ok()?;
        if header.event != NAMES_KIND
            || header.call_graph != hex(build_id)
            || !sources_unchanged(&header.command, namer, module)
        {
            return None;
        }
        let mut found = None;
        while let Ok(Some(records)) = reader.next_records() {
            for record in records {
                match record {
                    Record::Symbols(symbols) if found.is_none() => found = Some(symbols),
                    // Only a finished file is used: the summary is written last.
                    Record::Summary(_) => return ModuleNames::from_breaks(found?),
                    _ => {}
                }
            }
        }
        None
    }

    /// Stores `names` for the module with `build_id`, named from `sources` (the module file and
    /// its separate debug file, if one was used). Replaces what was stored before.
    pub fn store_module_names(
        &self,
        build_id: &[u8],
        sources: &[&Path],
        names: ModuleNames,
    ) -> Result<(), String> {
        let namer = self
            .namer
            .as_deref()
            .ok_or("rprof's own executable cannot be found")?;
        let path = self
            .names_path(build_id)
            .ok_or("the build id is not 4 to 64 bytes")?;
        let mut command = vec!["rprof".to_string(), namer.to_string()];
        for source in sources {
            let meta = open_regular(source, &Options::new("a named module", u64::MAX))
                .map_err(|e| e.to_string())?
                .1;
            command.push(source.to_string_lossy().into_owned());
            command.push(identity(&meta));
        }
        let header = Header {
            rprof_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            event: NAMES_KIND.to_string(),
            call_graph: hex(build_id),
            ..Header::default()
        };
        let mut writer = Writer::new(Vec::new(), &header).map_err(|e| e.to_string())?;
        // Written after every recording that named something new: fast beats small here.
        writer.set_names_level(1);
        let module = Module {
            id: ModuleId(0),
            path: sources
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            build_id: Some(build_id.to_vec()),
            kind: ModuleKind::Elf,
            jit_pid: None,
        };
        let names = names.into_breaks();
        let write = |writer: &mut Writer<Vec<u8>>| -> std::io::Result<()> {
            writer.push(Record::Module(module))?;
            writer.push(Record::Symbols(names))
        };
        write(&mut writer).map_err(|e| e.to_string())?;
        let bytes = writer
            .finish(Summary::default())
            .map_err(|e| e.to_string())?;
        let mut file = NewFile::create(&path, Access::Own).map_err(|e| e.to_string())?;
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        file.commit().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Answers for ranges of one module's code: pieces, each a range of lookup addresses with the
/// frames every address in it gets (innermost first; string indices into
/// [`strings`](Self::strings)). Pieces never overlap; [`find`](Self::find) needs them sorted.
#[derive(Debug, Clone, Default)]
pub struct ModuleNames {
    /// The strings frames point into (`u32::MAX`: unknown).
    pub strings: Vec<String>,
    /// (start, end, frames), sorted by start, not overlapping, none empty.
    pieces: Vec<(u64, u64, Vec<StoredFrame>)>,
    /// Index of each string, built when a string is first added (a loaded cache is only read,
    /// unless new pieces are merged into it).
    index: HashMap<String, u32>,
}

impl PartialEq for ModuleNames {
    fn eq(&self, other: &ModuleNames) -> bool {
        self.strings == other.strings && self.pieces == other.pieces
    }
}

impl Eq for ModuleNames {}

impl ModuleNames {
    /// The index of `text` in [`strings`](Self::strings), added if new; `u32::MAX` for `None`.
    pub fn intern(&mut self, text: Option<&str>) -> u32 {
        let Some(text) = text else {
            return u32::MAX;
        };
        if self.index.len() < self.strings.len() {
            self.index = (0u32..)
                .zip(&self.strings)
                .map(|(i, s)| (s.clone(), i))
                .collect();
        }
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push(text.to_string());
        self.index.insert(text.to_string(), i);
        i
    }

    /// Adds the piece `start..end` after every piece added so far; ignored unless it starts at
    /// or after their end, is not empty and has frames.
    pub fn push(&mut self, start: u64, end: u64, frames: Vec<StoredFrame>) {
        let after = self.pieces.last().is_none_or(|last| last.1 <= start);
        if after && start < end && !frames.is_empty() {
            self.pieces.push((start, end, frames));
        }
    }

    /// The piece holding `address`: (start, end, frames).
    pub fn find(&self, address: u64) -> Option<(u64, u64, &[StoredFrame])> {
        let at = self
            .pieces
            .partition_point(|p| p.0 <= address)
            .checked_sub(1)?;
        let (start, end, frames) = self.pieces.get(at)?;
        (address < *end).then_some((*start, *end, frames.as_slice()))
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether there are no pieces.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Adds the pieces of `newer` (named from the same files, so where both have an answer it
    /// is the same) in place of those they overlap. Only `newer`'s strings are looked up, so
    /// adding a run's few new pieces to a large cache costs little. When the result would hold
    /// more than [`MAX_PIECES`], only `newer`'s pieces are kept.
    pub fn merge_newer(&mut self, newer: &ModuleNames) {
        if self.pieces.len() + newer.pieces.len() > MAX_PIECES {
            *self = newer.clone();
            return;
        }
        let mut added = Vec::with_capacity(newer.pieces.len());
        for (start, end, frames) in &newer.pieces {
            let text = |i: u32| newer.strings.get(i as usize).map(String::as_str);
            let frames: Vec<StoredFrame> = frames
                .iter()
                .map(|f| StoredFrame {
                    function: self.intern(text(f.function)),
                    file: self.intern(text(f.file)),
                    ..*f
                })
                .collect();
            added.push((*start, *end, frames));
        }
        let old = std::mem::take(&mut self.pieces);
        let overlapped = |start: u64, end: u64| {
            let at = added.partition_point(|p| p.1 <= start);
            added.get(at).is_some_and(|p| p.0 < end)
        };
        self.pieces = old
            .into_iter()
            .filter(|(start, end, _)| !overlapped(*start, *end))
            .collect();
        self.pieces.extend(added);
        self.pieces.sort_unstable_by_key(|p| p.0);
    }

    /// The pieces as a `Symbols` record: an entry at each piece's start with its frames, and
    /// one without frames at its end unless the next piece starts there.
    fn into_breaks(self) -> Symbols {
        let mut entries = Vec::with_capacity(self.pieces.len() + 1);
        let mut pieces = self.pieces.into_iter().peekable();
        while let Some((start, end, frames)) = pieces.next() {
            entries.push((start, frames));
            if pieces.peek().is_none_or(|next| next.0 != end) {
                entries.push((end, Vec::new()));
            }
        }
        Symbols {
            module: Some(ModuleId(0)),
            strings: self.strings,
            entries,
        }
    }

    /// The pieces of a record written by [`into_breaks`](Self::into_breaks); `None` when its
    /// entries are not in strictly ascending order or a string index is out of range.
    fn from_breaks(symbols: Symbols) -> Option<ModuleNames> {
        let count = symbols.strings.len();
        let known = |i: u32| i == u32::MAX || (i as usize) < count;
        let mut pieces = Vec::with_capacity(symbols.entries.len());
        let mut entries = symbols.entries.into_iter().peekable();
        while let Some((start, frames)) = entries.next() {
            let next = entries.peek().map(|e| e.0);
            if next.is_some_and(|n| n <= start)
                || frames.iter().any(|f| !known(f.function) || !known(f.file))
            {
                return None;
            }
            match next {
                Some(end) if !frames.is_empty() => pieces.push((start, end, frames)),
                // The last entry ends the last piece.
                None if !frames.is_empty() => return None,
                _ => {}
            }
        }
        Some(ModuleNames {
            strings: symbols.strings,
            pieces,
            index: HashMap::new(),
        })
    }
}

/// `$XDG_CACHE_HOME/rprof` (when absolute), else `$HOME/.cache/rprof`.
fn default_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        if xdg.is_absolute() {
            return Some(xdg.join("rprof"));
        }
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    home.is_absolute()
        .then(|| home.join(".cache").join("rprof"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a names file's `command` (`rprof`, the namer's identity, then path and identity
/// pairs, the module's first) still describes the files on disk, `module` being the first of
/// them, and the rprof naming now.
fn sources_unchanged(command: &[String], namer: &str, module: &Path) -> bool {
    let [tool, written_by, pairs @ ..] = command else {
        return false;
    };
    if tool != "rprof" || written_by != namer || pairs.is_empty() || pairs.len() % 2 != 0 {
        return false;
    }
    let same = |path: &Path, expected: &str| {
        open_regular(path, &Options::new("a named module", u64::MAX))
            .is_ok_and(|(_, meta)| identity(&meta) == expected)
    };
    same(module, &pairs[1])
        && pairs
            .chunks_exact(2)
            .all(|pair| same(Path::new(&pair[0]), &pair[1]))
}

#[cfg(test)]
mod tests;
