//! Files of a [`CacheDir`](crate::CacheDir): read and written only as the effective user's, and
//! taken apart with every length checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rprof_fs::read::{open_regular, read_bounded, Options};
use rprof_fs::{Access, NewFile};

use crate::elf::Base;

/// The bytes of the cache file at `path` when it is a regular file (not a link) of the
/// effective user of at most `limit` bytes.
pub(crate) fn read(path: &Path, what: &str, limit: u64) -> Option<Vec<u8>> {
    let uid = [rprof_fs::read::effective_uid()];
    read_bounded(path, &own(what, limit, &uid)).ok()
}

/// How a cache file is opened: no link followed, `uid`'s only, at most `limit` bytes.
fn own<'a>(what: &'a str, limit: u64, uid: &'a [u32]) -> Options<'a> {
    Options::new(what, limit).no_follow().owned_by(uid)
}

/// The cache file at `path` mapped read-only, when it is a regular file (not a link) of the
/// effective user of at most `limit` bytes. Mapped rather than read: a lookup touches a few of
/// its pages, and reading a file of megabytes into memory cost more than the lookups.
pub(crate) fn map(path: &Path, what: &str, limit: u64) -> Option<Base> {
    let uid = [rprof_fs::read::effective_uid()];
    let (file, _) = open_regular(path, &own(what, limit, &uid)).ok()?;
    // SAFETY: a private read-only mapping of a file in the user's own private cache directory,
    // which rprof only ever replaces by rename (`write`), never rewrites in place; the risk
    // left (the same user truncating it while mapped) is the one `elf::open` accepts.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    Some(Base::Map(Arc::new(map)))
}

/// Writes `bytes` to a new file renamed over `path` (mode 0600, the effective user's).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Option<()> {
    let mut file = NewFile::create(path, Access::Own).ok()?;
    file.write_all(bytes).ok()?;
    file.commit().ok()?;
    Some(())
}

pub(crate) use rprof_fs::bytes::{put_text, put_u32, Cursor as Input};

/// `<kind>-<build id in hex>` in `cache`, for a build id of 4 to 64 bytes.
fn per_build_id(cache: &crate::CacheDir, kind: &str, build_id: &[u8]) -> Option<PathBuf> {
    (4..=64).contains(&build_id.len()).then(|| {
        cache
            .dir
            .join(format!("{kind}-{}", crate::status::hex(build_id)))
    })
}

/// The identity (device, inode, size, modification time) of the DWARF file at `dwarf`.
fn identity_of(dwarf: &Path) -> Option<String> {
    let (_, meta) = open_regular(dwarf, &Options::new("a DWARF file", u64::MAX)).ok()?;
    Some(rprof_fs::read::identity(&meta))
}

/// A DWARF file's unit index kept between runs: `units-<build id>` of a
/// [`CacheDir`](crate::CacheDir), holding the writer's tag, the DWARF file's path and identity,
/// then the index (see `LazyDwarf::index_bytes`).
pub(crate) mod units {
    use std::path::{Path, PathBuf};

    use super::{identity_of, put_text, Input};
    use crate::CacheDir;

    const MAGIC: &[u8] = b"rprof unit index 1\n";

    /// The largest index file read (a unit index of 2,000,000 ranges).
    const LIMIT: u64 = 48 << 20;

    fn file(cache: &CacheDir, build_id: &[u8]) -> Option<PathBuf> {
        super::per_build_id(cache, "units", build_id)
    }

    /// The index kept for the module with `build_id` whose DWARF is read from `dwarf`, if it
    /// was written by this rprof for that very file, unchanged since.
    pub(crate) fn read(cache: &CacheDir, build_id: &[u8], dwarf: &Path) -> Option<Vec<u8>> {
        let bytes = super::read(&file(cache, build_id)?, "a unit index cache", LIMIT)?;
        let mut input = Input(bytes.strip_prefix(MAGIC)?);
        let same = input.text()? == cache.tag
            && input.text()? == dwarf.to_string_lossy()
            && input.text()? == identity_of(dwarf)?;
        same.then(|| input.0.to_vec())
    }

    /// Keeps `index` for the module with `build_id` whose DWARF is read from `dwarf`.
    pub(crate) fn write(
        cache: &CacheDir,
        build_id: &[u8],
        dwarf: &Path,
        index: &[u8],
    ) -> Option<()> {
        let mut out = MAGIC.to_vec();
        put_text(&mut out, &cache.tag);
        put_text(&mut out, &dwarf.to_string_lossy());
        put_text(&mut out, &identity_of(dwarf)?);
        out.extend_from_slice(index);
        super::write(&file(cache, build_id)?, &out)
    }
}

/// A DWARF file's compressed sections kept decompressed between runs: `sections-<build id>` of
/// a [`CacheDir`](crate::CacheDir), holding the writer's tag, the DWARF file's path and
/// identity, a u32 count of sections and that many (name, u64 offset, u64 length), then their
/// bytes. Mapped when read: naming touches a few of the pages, where inflating libc's debug
/// sections took 15-20 ms on every recording that met a new libc function (issue 13).
pub(crate) mod sections {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::{identity_of, put_text, put_u32, Input};
    use crate::elf::{Base, Bytes};
    use crate::CacheDir;

    const MAGIC: &[u8] = b"rprof sections 1\n";

    /// The largest file mapped: more than the DWARF sections of any library seen.
    const LIMIT: u64 = 1 << 30;

    /// The most sections a file lists (DWARF has about twenty).
    const MAX_SECTIONS: usize = 64;

    fn file(cache: &CacheDir, build_id: &[u8]) -> Option<PathBuf> {
        super::per_build_id(cache, "sections", build_id)
    }

    /// The sections kept for the module with `build_id` whose DWARF is read from `dwarf`, by
    /// name, if this rprof wrote them for that very file, unchanged since.
    pub(crate) fn read(
        cache: &CacheDir,
        build_id: &[u8],
        dwarf: &Path,
    ) -> Option<HashMap<String, Bytes>> {
        let base = super::map(&file(cache, build_id)?, "a DWARF section cache", LIMIT)?;
        parse(
            base,
            &cache.tag,
            &dwarf.to_string_lossy(),
            &identity_of(dwarf)?,
        )
    }

    fn parse(base: Base, tag: &str, dwarf: &str, identity: &str) -> Option<HashMap<String, Bytes>> {
        let mut input = Input(base.bytes().strip_prefix(MAGIC)?);
        if input.text()? != tag || input.text()? != dwarf || input.text()? != identity {
            return None;
        }
        let count = input.count(20)?;
        if count > MAX_SECTIONS {
            return None;
        }
        let mut sections = HashMap::with_capacity(count);
        for _ in 0..count {
            let name = input.text()?;
            let (offset, len) = (input.u64()?, input.u64()?);
            let bytes = Bytes::range(&base, offset, len)?;
            if sections.insert(name.to_owned(), bytes).is_some() {
                return None;
            }
        }
        Some(sections)
    }

    /// Keeps `sections` (name, decompressed bytes) for the module with `build_id` whose DWARF
    /// is read from `dwarf`.
    pub(crate) fn write(
        cache: &CacheDir,
        build_id: &[u8],
        dwarf: &Path,
        sections: &[(&str, &[u8])],
    ) -> Option<()> {
        let bytes = encode(
            &cache.tag,
            &dwarf.to_string_lossy(),
            &identity_of(dwarf)?,
            sections,
        );
        super::write(&file(cache, build_id)?, &bytes)
    }

    fn encode(tag: &str, dwarf: &str, identity: &str, sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut head = MAGIC.to_vec();
        for text in [tag, dwarf, identity] {
            put_text(&mut head, text);
        }
        put_u32(&mut head, sections.len());
        let table: usize = sections.iter().map(|(name, _)| 4 + name.len() + 16).sum();
        // Each section starts 8-aligned, as a file mapping or the heap would have it.
        let mut offset = (head.len() + table).next_multiple_of(8);
        let mut data = Vec::new();
        for (name, bytes) in sections {
            put_text(&mut head, name);
            head.extend_from_slice(&(offset as u64).to_le_bytes());
            head.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            let padded = bytes.len().next_multiple_of(8);
            offset += padded;
            data.push((*bytes, padded - bytes.len()));
        }
        head.resize(head.len().next_multiple_of(8), 0);
        for (bytes, pad) in data {
            head.extend_from_slice(bytes);
            head.extend(std::iter::repeat_n(0, pad));
        }
        head
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn sample() -> Vec<u8> {
            encode(
                "tag",
                "/usr/lib/debug/x.debug",
                "1:2:3:4",
                &[(".debug_info", b"info bytes"), (".debug_line", b"line")],
            )
        }

        #[test]
        fn sections_read_back_where_they_were() {
            let kept =
                parse(sample().into(), "tag", "/usr/lib/debug/x.debug", "1:2:3:4").expect("reads");
            assert_eq!(kept.len(), 2);
            assert_eq!(&*kept[".debug_info"], b"info bytes");
            assert_eq!(&*kept[".debug_line"], b"line");
        }

        #[test]
        fn another_writer_file_or_identity_is_not_used() {
            let path = "/usr/lib/debug/x.debug";
            assert!(parse(sample().into(), "other", path, "1:2:3:4").is_none());
            assert!(parse(sample().into(), "tag", "/y.debug", "1:2:3:4").is_none());
            assert!(parse(sample().into(), "tag", path, "1:2:3:5").is_none());
        }

        #[test]
        fn damaged_files_are_not_used_or_read_past_their_end() {
            let bytes = sample();
            let path = "/usr/lib/debug/x.debug";
            // Cut before the last section's end: refused (its range leaves the file).
            let end = bytes.len() - 4;
            for cut in 0..end {
                assert!(
                    parse(bytes[..cut].to_vec().into(), "tag", path, "1:2:3:4").is_none(),
                    "cut at {cut}"
                );
            }
            // Every flipped byte: refused, or sections that lie inside the file.
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 0xff;
                let len = flipped.len();
                if let Some(kept) = parse(flipped.into(), "tag", path, "1:2:3:4") {
                    assert!(kept.values().all(|b| b.len() <= len));
                }
            }
        }
    }
}
