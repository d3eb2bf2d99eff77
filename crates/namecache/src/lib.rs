//! rprof-namecache: what rprof remembers between runs, so that naming a binary it has named
//! before does not load that binary's debug information again.
//!
//! Naming the addresses of a recording is most of what `rprof record` does after its target
//! exits (issue 13): on ripgrep with full debug info, indexing its 960 units, decompressing
//! libc's debug sections and reading `/proc/kallsyms` cost more than the rest of the recorder.
//! The same binaries are usually recorded again and again, so the answers are kept:
//!
//! - **Names of a module's code**, per GNU build id ([`NameCache::module_names`],
//!   [`NameCache::add_module_names`]): [`ModuleNames`], address ranges ("pieces") that each
//!   get one answer (the frames, innermost first): usually whole functions, named at once the
//!   first time one of their addresses was sampled, so that later samples anywhere in them are
//!   named from here. Stored flat (`file.rs`: pieces, frames and strings, CRC-checked, every
//!   count and index checked when read), as it is read on every recording of its binary; a
//!   recording that named new functions appends them as a block of their own (up to
//!   [`MAX_ADDITIONS`], then the file is written anew, merged), so that adding a few functions
//!   to rg's 1.8 MB of names writes kilobytes. With it go the identities (device, inode, size,
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
//! The files take at most [`MAX_BYTES`] in all: after each store, the least recently written go
//! first ([`NameCache::trim`]).
//!
//! Left to others: naming (rprof-symbols), deciding which modules are worth caching and what a
//! run adds (the caller, `src/naming/`).

#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use rprof_fs::read::{identity, open_regular, read_opened, Options};
use rprof_fs::{Access, NewFile};
use rprof_profile::StoredFrame;

mod file;

/// The largest names file read (a module's names for a million addresses stay far below).
pub const NAMES_LIMIT: u64 = 64 << 20;

/// The most the cache's files take in all before the oldest are removed
/// ([`NameCache::trim`], after each store).
pub const MAX_BYTES: u64 = 512 << 20;

/// Most pieces kept per module (see [`ModuleNames::merge_newer`]).
pub const MAX_PIECES: usize = 1 << 20;

/// Most additions appended to a names file before it is written anew, merged
/// ([`NameCache::add_module_names`]): each costs a merge when the file is read.
pub const MAX_ADDITIONS: usize = 16;

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
        Some(self.dir.join(format!("names-{}", hex(build_id))))
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
        let (opened, meta) = open_regular(&path, &options).ok()?;
        let bytes = read_opened(opened, &meta, &path, &options).ok()?;
        let (header, mut names, additions, used) = file::decode(&bytes)?;
        let same = header.build_id == hex(build_id)
            && header.namer == namer
            && sources_unchanged(&header.sources, module);
        names.stored = Some(Stored {
            file: (meta.dev(), meta.ino(), used as u64),
            additions,
            sources: header.sources,
        });
        same.then_some(names)
    }

    /// Adds `fresh`, pieces named in this run from `sources` (the module file and its separate
    /// debug file, if one was used), to what is stored for the module with `build_id`, `old`
    /// being what [`module_names`](Self::module_names) gave: appended to the file `old` was
    /// read from while that is still the file there, its sources are unchanged and it has
    /// fewer than [`MAX_ADDITIONS`] additions; otherwise `old` and `fresh` merged are stored
    /// anew ([`store_module_names`](Self::store_module_names)).
    pub fn add_module_names(
        &self,
        build_id: &[u8],
        sources: &[&Path],
        old: Option<ModuleNames>,
        fresh: &ModuleNames,
    ) -> Result<(), String> {
        if let Some(old) = &old {
            if fresh.is_empty() {
                return Ok(());
            }
            if old.len() + fresh.len() <= MAX_PIECES && self.append(build_id, old, fresh) {
                self.trim(MAX_BYTES);
                return Ok(());
            }
        }
        let names = match old {
            Some(mut old) => {
                old.merge_newer(fresh);
                old
            }
            None => fresh.clone(),
        };
        self.store_module_names(build_id, sources, &names)
    }

    /// Appends `fresh` to the names file `old` was read from (see
    /// [`add_module_names`](Self::add_module_names)) when the file is as it was read, to its
    /// last byte: an addition after a block that did not read would never be read, and one
    /// appended by another recording meanwhile is not looked for. Whether it was.
    fn append(&self, build_id: &[u8], old: &ModuleNames, fresh: &ModuleNames) -> bool {
        let (Some(stored), Some(namer), Some(path)) = (
            &old.stored,
            self.namer.as_deref(),
            self.names_path(build_id),
        ) else {
            return false;
        };
        let Some((module, _)) = stored.sources.first() else {
            return false;
        };
        if stored.additions >= MAX_ADDITIONS
            || !sources_unchanged(&stored.sources, Path::new(module))
        {
            return false;
        }
        let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
            .open(&path)
        else {
            return false;
        };
        let same = file.metadata().is_ok_and(|meta| {
            meta.is_file()
                && meta.uid() == rprof_fs::read::effective_uid()
                && (meta.dev(), meta.ino(), meta.len()) == stored.file
        });
        // One write: appends of two recorders at once do not interleave, and a block cut
        // short is ignored by readers (file.rs).
        same && file.write_all(&file::encode_addition(namer, fresh)).is_ok()
    }

    /// Stores `names` for the module with `build_id`, named from `sources` (the module file and
    /// its separate debug file, if one was used). Replaces what was stored before.
    pub fn store_module_names(
        &self,
        build_id: &[u8],
        sources: &[&Path],
        names: &ModuleNames,
    ) -> Result<(), String> {
        let namer = self
            .namer
            .as_deref()
            .ok_or("rprof's own executable cannot be found")?;
        let path = self
            .names_path(build_id)
            .ok_or("the build id is not 4 to 64 bytes")?;
        let mut identities = Vec::new();
        for source in sources {
            let meta = open_regular(source, &Options::new("a named module", u64::MAX))
                .map_err(|e| e.to_string())?
                .1;
            identities.push((source.to_string_lossy().into_owned(), identity(&meta)));
        }
        let header = file::Header {
            build_id: hex(build_id),
            namer: namer.to_string(),
            sources: identities,
        };
        let bytes = file::encode(&header, names);
        let mut file = NewFile::create(&path, Access::Own).map_err(|e| e.to_string())?;
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        file.commit().map_err(|e| e.to_string())?;
        self.trim(MAX_BYTES);
        Ok(())
    }

    /// Keeps the cache's files under `limit` bytes in all: past it, the least recently written
    /// files go first, down to three quarters of it. Each binary and each build of it has files
    /// of its own (ripgrep's names: 2.5 MB), so a cache that is never trimmed only grows.
    /// Only regular files of the effective user whose names rprof gives are considered.
    pub fn trim(&self, limit: u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let uid = rprof_fs::read::effective_uid();
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .take(100_000)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("names-")
                    || name.starts_with("units-")
                    || name.starts_with("sections-")
                    || name == "kernel-symbols"
            })
            .filter_map(|e| {
                let meta = e.path().symlink_metadata().ok()?;
                let ours = meta.is_file() && meta.uid() == uid;
                let written = meta.modified().ok()?;
                ours.then(|| (written, meta.size(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= limit {
            return;
        }
        files.sort();
        for (_, size, path) in files {
            if total <= limit / 4 * 3 {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

/// Answers for ranges of one module's code: pieces, each a range of lookup addresses with the
/// frames every address in it gets (innermost first; string indices into
/// [`strings`](Self::strings)). Pieces never overlap and are sorted by start.
///
/// Held flat (one vector of pieces, one of all their frames): a cache of a large binary holds
/// tens of thousands of pieces, read on every recording of it.
#[derive(Debug, Clone, Default)]
pub struct ModuleNames {
    /// The strings frames point into (`u32::MAX`: unknown).
    pub strings: Vec<String>,
    /// (start, end, first frame, frame count), sorted by start, not overlapping, none empty.
    pieces: Vec<(u64, u64, u32, u32)>,
    frames: Vec<StoredFrame>,
    /// Index of each string, built when a string is first added (a loaded cache is only read,
    /// unless new pieces are merged into it).
    index: HashMap<String, u32>,
    /// The file these names were read from, if they were.
    stored: Option<Stored>,
}

/// Where a module's names were read from: the names file (device, inode, the bytes of it
/// read), how many additions it had, and the sources its first block names.
#[derive(Debug, Clone)]
struct Stored {
    file: (u64, u64, u64),
    additions: usize,
    sources: Vec<(String, String)>,
}

impl PartialEq for ModuleNames {
    fn eq(&self, other: &ModuleNames) -> bool {
        self.strings == other.strings
            && self.len() == other.len()
            && self.each().zip(other.each()).all(|(a, b)| a == b)
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
            self.push_unchecked(start, end, frames);
        }
    }

    fn push_unchecked(
        &mut self,
        start: u64,
        end: u64,
        frames: impl IntoIterator<Item = StoredFrame>,
    ) {
        let first = self.frames.len();
        self.frames.extend(frames);
        let count = self.frames.len() - first;
        if let (Ok(first), Ok(count)) = (u32::try_from(first), u32::try_from(count)) {
            self.pieces.push((start, end, first, count));
        } else {
            self.frames.truncate(first);
        }
    }

    fn frames_of(&self, first: u32, count: u32) -> &[StoredFrame] {
        let from = first as usize;
        self.frames
            .get(from..from.saturating_add(count as usize))
            .unwrap_or(&[])
    }

    /// Every piece: (start, end, frames), by start.
    fn each(&self) -> impl Iterator<Item = (u64, u64, &[StoredFrame])> {
        self.pieces
            .iter()
            .map(|&(start, end, first, count)| (start, end, self.frames_of(first, count)))
    }

    /// The piece holding `address`: (start, end, frames).
    pub fn find(&self, address: u64) -> Option<(u64, u64, &[StoredFrame])> {
        let at = self
            .pieces
            .partition_point(|p| p.0 <= address)
            .checked_sub(1)?;
        let &(start, end, first, count) = self.pieces.get(at)?;
        (address < end).then(|| (start, end, self.frames_of(first, count)))
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
    /// is the same) in place of those they overlap. Only `newer`'s strings are looked up and,
    /// unless one of ours gives way, only its pieces and frames are added, so adding a run's
    /// few new pieces to a large cache costs little. When the result would hold more than
    /// [`MAX_PIECES`], only `newer`'s pieces are kept.
    pub fn merge_newer(&mut self, newer: &ModuleNames) {
        if self.len() + newer.len() > MAX_PIECES {
            *self = newer.clone();
            return;
        }
        // Where each of `newer`'s strings is in ours, through our index: built once (a loaded
        // cache has none), then kept up to date, so that merging the additions of a names file
        // one after the other hashes each string once.
        let place: Vec<u32> = newer
            .strings
            .iter()
            .map(|text| self.intern(Some(text)))
            .collect();
        let placed = |i: u32| place.get(i as usize).copied().unwrap_or(u32::MAX);
        let overlapped = |start: u64, end: u64| {
            let at = newer.pieces.partition_point(|p| p.1 <= start);
            newer.pieces.get(at).is_some_and(|p| p.0 < end)
        };
        // Where `newer`'s frames would start after ours (if frame indices stay u32).
        let base = u32::try_from(self.frames.len() + newer.frames.len())
            .ok()
            .map(|_| self.frames.len() as u32);
        // Whether any of ours gives way: both lists are sorted and do not overlap, so their
        // ends are sorted too, and one walk over both tells.
        let gives_way = {
            let mut ours = self.pieces.iter().peekable();
            newer.pieces.iter().any(|&(start, end, _, _)| {
                while ours.next_if(|p| p.1 <= start).is_some() {}
                ours.peek().is_some_and(|p| p.0 < end)
            })
        };
        if let (Some(base), false) = (base, gives_way) {
            // Nothing gives way (the usual case: this run's new functions): `newer`'s frames
            // go after ours and the pieces are merged in order; ours are not copied.
            self.frames.extend(newer.frames.iter().map(|f| StoredFrame {
                function: placed(f.function),
                file: placed(f.file),
                ..*f
            }));
            let ours = std::mem::take(&mut self.pieces);
            let mut added = newer
                .pieces
                .iter()
                .map(|&(start, end, first, count)| (start, end, first + base, count))
                .peekable();
            self.pieces.reserve_exact(ours.len() + newer.pieces.len());
            for piece in ours {
                while let Some(new) = added.next_if(|a| a.0 < piece.0) {
                    self.pieces.push(new);
                }
                self.pieces.push(piece);
            }
            self.pieces.extend(added);
            return;
        }
        let mut added: Vec<(u64, u64, Vec<StoredFrame>)> = Vec::with_capacity(newer.len());
        for (start, end, frames) in newer.each() {
            let frames = frames
                .iter()
                .map(|f| StoredFrame {
                    function: placed(f.function),
                    file: placed(f.file),
                    ..*f
                })
                .collect();
            added.push((start, end, frames));
        }
        let ModuleNames {
            strings,
            pieces,
            frames,
            index,
            stored,
        } = std::mem::take(self);
        let mut merged = ModuleNames {
            strings,
            index,
            pieces: Vec::with_capacity(pieces.len() + newer.pieces.len()),
            frames: Vec::with_capacity(frames.len()),
            stored,
        };
        let mut added = added.into_iter().peekable();
        for (start, end, first, count) in pieces {
            if overlapped(start, end) {
                continue;
            }
            while let Some((s, e, f)) = added.next_if(|a| a.0 < start) {
                merged.push_unchecked(s, e, f);
            }
            let from = first as usize;
            let kept = frames.get(from..from.saturating_add(count as usize));
            merged.push_unchecked(start, end, kept.unwrap_or(&[]).iter().cloned());
        }
        for (s, e, f) in added {
            merged.push_unchecked(s, e, f);
        }
        *self = merged;
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

/// Whether the files names were read from (path and identity, the module's first) are still
/// those on disk, `module` being the first of them.
fn sources_unchanged(sources: &[(String, String)], module: &Path) -> bool {
    let same = |path: &Path, expected: &str| {
        open_regular(path, &Options::new("a named module", u64::MAX))
            .is_ok_and(|(_, meta)| identity(&meta) == expected)
    };
    let Some((_, module_identity)) = sources.first() else {
        return false;
    };
    same(module, module_identity)
        && sources
            .iter()
            .all(|(path, expected)| same(Path::new(path), expected))
}

#[cfg(test)]
mod tests;
