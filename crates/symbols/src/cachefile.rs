//! Files of a [`CacheDir`](crate::CacheDir): read and written only as the effective user's, and
//! taken apart with every length checked.

use std::io::Write;
use std::path::Path;

use rprof_fs::read::{read_bounded, Options};
use rprof_fs::{Access, NewFile};

/// The bytes of the cache file at `path` when it is a regular file (not a link) of the
/// effective user of at most `limit` bytes.
pub(crate) fn read(path: &Path, what: &str, limit: u64) -> Option<Vec<u8>> {
    let uid = [rprof_fs::read::effective_uid()];
    let options = Options::new(what, limit).no_follow().owned_by(&uid);
    read_bounded(path, &options).ok()
}

/// Writes `bytes` to a new file renamed over `path` (mode 0600, the effective user's).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Option<()> {
    let mut file = NewFile::create(path, Access::Own).ok()?;
    file.write_all(bytes).ok()?;
    file.commit().ok()?;
    Some(())
}

pub(crate) use rprof_fs::bytes::{put_text, Cursor as Input};

/// A DWARF file's unit index kept between runs: `units-<build id>` of a
/// [`CacheDir`](crate::CacheDir), holding the writer's tag, the DWARF file's path and identity,
/// then the index (see `LazyDwarf::index_bytes`).
pub(crate) mod units {
    use std::path::{Path, PathBuf};

    use rprof_fs::read::{identity, open_regular, Options};

    use super::{put_text, Input};
    use crate::CacheDir;

    const MAGIC: &[u8] = b"rprof unit index 1\n";

    /// The largest index file read (a unit index of 2,000,000 ranges).
    const LIMIT: u64 = 48 << 20;

    fn file(cache: &CacheDir, build_id: &[u8]) -> Option<PathBuf> {
        if !(4..=64).contains(&build_id.len()) {
            return None;
        }
        Some(
            cache
                .dir
                .join(format!("units-{}", crate::status::hex(build_id))),
        )
    }

    fn identity_of(dwarf: &Path) -> Option<String> {
        let (_, meta) = open_regular(dwarf, &Options::new("a DWARF file", u64::MAX)).ok()?;
        Some(identity(&meta))
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
