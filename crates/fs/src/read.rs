//! Inputs: regular files only, opened without blocking, read with a size cap.
//!
//! Every file rprof reads because a profile, a target's mappings or a fixed public path names it
//! (ELF modules, debug files, `/tmp/perf-PID.map`, `/proc/kallsyms`) goes through
//! [`open_regular`] or [`read_bounded`]:
//!
//! - the file is opened with `O_NONBLOCK`, so a FIFO without a writer cannot hang `open()`, then
//!   `fstat`ed on the open descriptor (no race with a rename) and refused unless it is a regular
//!   file: a FIFO, a device such as `/dev/zero`, a socket or a directory is a [`ReadError`];
//! - its size is checked against [`Options::max_size`] before anything is mapped or read, and
//!   [`read_bounded`] stops one byte past the cap however much the file grows meanwhile (files
//!   under `/proc` claim a size of 0);
//! - with [`Options::follow_links`] off, a symbolic link as the last path component is refused
//!   (`O_NOFOLLOW`), and [`Options::owners`] restricts who may own the file: for paths any user
//!   can plant, such as `/tmp/perf-PID.map`.
//!
//! What the bytes mean is left to the caller.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest ELF file (module, separate debug file, `.dwo`/`.dwp`, dwz file) rprof maps. ELF
/// files are mapped, not read, so this only keeps nonsense out; real debug files stay far below.
pub const ELF_LIMIT: u64 = 8 << 30;
/// The largest perf map (`/tmp/perf-PID.map`) read: text read whole and parsed into memory.
/// A JIT that writes a line per compiled function stays well below this.
pub const PERF_MAP_LIMIT: u64 = 256 << 20;
/// The largest kernel symbol list (`/proc/kallsyms`, about 20 MiB with many modules loaded).
pub const KALLSYMS_LIMIT: u64 = 256 << 20;
/// The largest `/proc/PID/maps` read.
pub const PROC_MAPS_LIMIT: u64 = 64 << 20;

/// The effective user id of this process: the owner perf maps are trusted from besides root
/// and the profiled process's owner.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// What tells one version of a file from another without reading it: device, inode, size and
/// modification time. A file rewritten in place or replaced by another (a rebuild, a stripped
/// copy renamed over it) gets another identity; what was worked out from the file before is
/// then not to be used.
pub fn identity(meta: &Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}:{}:{}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// How a file may be opened. Build with [`Options::new`], then narrow with
/// [`Options::no_follow`] and [`Options::owned_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    /// What the file is for, as messages say it after "limit for": `"an ELF file"`,
    /// `"a perf map"`.
    pub what: &'a str,
    /// The largest size accepted, in bytes.
    pub max_size: u64,
    /// Follow a symbolic link in the last path component. Default: true. Links in the
    /// directories leading to the file are always followed.
    pub follow_links: bool,
    /// When set, the file must be owned by one of these user ids. Default: any owner.
    pub owners: Option<&'a [u32]>,
}

impl<'a> Options<'a> {
    /// Any regular file of at most `max_size` bytes, links followed, any owner.
    pub fn new(what: &'a str, max_size: u64) -> Options<'a> {
        Options {
            what,
            max_size,
            follow_links: true,
            owners: None,
        }
    }

    /// Refuses a symbolic link as the last path component.
    pub fn no_follow(self) -> Options<'a> {
        Options {
            follow_links: false,
            ..self
        }
    }

    /// Accepts only files owned by one of `uids`.
    pub fn owned_by(self, uids: &'a [u32]) -> Options<'a> {
        Options {
            owners: Some(uids),
            ..self
        }
    }
}

/// What kind of file was found where a regular file was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A named pipe.
    Fifo,
    /// A character device, such as `/dev/zero`.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// A directory.
    Directory,
    /// Anything else.
    Other,
}

impl FileKind {
    fn of(meta: &Metadata) -> FileKind {
        let t = meta.file_type();
        if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else if t.is_socket() {
            FileKind::Socket
        } else if t.is_dir() {
            FileKind::Directory
        } else {
            FileKind::Other
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Directory => "a directory",
            FileKind::Other => "a special file",
        })
    }
}

/// Why a file was not read. The message names the file, what failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// `open()` failed (including: no such file).
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The path tried.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The last path component is a symbolic link and links are not followed for this file.
    #[error("{}: is a symbolic link, not followed for {what}", path.display())]
    Symlink {
        /// The path tried.
        path: PathBuf,
        /// [`Options::what`].
        what: String,
    },
    /// The file is a FIFO, a device, a socket or a directory.
    #[error("{}: not a regular file ({kind})", path.display())]
    NotRegular {
        /// The path tried.
        path: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },
    /// The file is larger than [`Options::max_size`] (or grew past it while being read).
    #[error("{}: is {}, over the {} limit for {what}", path.display(), Size(*size), Size(*limit))]
    TooLarge {
        /// The path tried.
        path: PathBuf,
        /// Its size, or at least how much was there when reading stopped.
        size: u64,
        /// [`Options::max_size`].
        limit: u64,
        /// [`Options::what`].
        what: String,
    },
    /// The file is owned by a user it must not be owned by.
    #[error(
        "{}: owned by uid {uid}, not by {}; not trusted as {what}",
        path.display(),
        Owners(allowed)
    )]
    Owner {
        /// The path tried.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The owners accepted.
        allowed: Vec<u32>,
        /// [`Options::what`].
        what: String,
    },
    /// `fstat` or `read` failed on the open file.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The path tried.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// True when the file does not exist: the one failure that is normal (a module deleted since
    /// the recording, a program that writes no perf map).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Open { path, .. }
            | ReadError::Symlink { path, .. }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::Owner { path, .. }
            | ReadError::Read { path, .. } => path,
        }
    }

    /// The message without the leading path: why the file was not read.
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        full.strip_prefix(&prefix)
            .map_or(full.clone(), str::to_owned)
    }
}

/// Opens `path` for reading if it is a regular file within `options`: without blocking (a FIFO
/// is refused, never waited on), checked with `fstat` on the open descriptor. Returns the file
/// and its metadata.
pub fn open_regular(path: &Path, options: &Options<'_>) -> Result<(File, Metadata), ReadError> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !options.follow_links {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|source| {
            let is_link =
                || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if !options.follow_links && source.raw_os_error() == Some(libc::ELOOP) && is_link() {
                ReadError::Symlink {
                    path: path.to_path_buf(),
                    what: options.what.to_owned(),
                }
            } else {
                ReadError::Open {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    let meta = file.metadata().map_err(|source| ReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: FileKind::of(&meta),
        });
    }
    if let Some(allowed) = options.owners {
        if !allowed.contains(&meta.uid()) {
            return Err(ReadError::Owner {
                path: path.to_path_buf(),
                uid: meta.uid(),
                allowed: allowed.to_vec(),
                what: options.what.to_owned(),
            });
        }
    }
    if meta.len() > options.max_size {
        return Err(too_large(path, meta.len(), options));
    }
    Ok((file, meta))
}

/// Reads the whole of `path` if it is a regular file within `options` (see [`open_regular`]).
/// Reading stops one byte past [`Options::max_size`], so a file that grows while it is read, or
/// a `/proc` file that claims size 0, is still bounded.
pub fn read_bounded(path: &Path, options: &Options<'_>) -> Result<Vec<u8>, ReadError> {
    let (file, meta) = open_regular(path, options)?;
    read_opened(file, &meta, path, options)
}

/// Reads `file`, opened from `path` by [`open_regular`] with `options` (which gave `meta`), to
/// its end, failing past [`Options::max_size`] bytes as [`read_bounded`] does.
pub fn read_opened(
    file: File,
    meta: &Metadata,
    path: &Path,
    options: &Options<'_>,
) -> Result<Vec<u8>, ReadError> {
    // The stated size is a hint only: never reserve more than the cap allows.
    let hint = usize::try_from(meta.len().min(options.max_size)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(hint);
    file.take(options.max_size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let read = bytes.len() as u64;
    if read > options.max_size {
        return Err(too_large(path, read, options));
    }
    Ok(bytes)
}

fn too_large(path: &Path, size: u64, options: &Options<'_>) -> ReadError {
    ReadError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: options.max_size,
        what: options.what.to_owned(),
    }
}

/// A byte count as people read it: `512 MiB`, `4.2 GiB`, `100 bytes`.
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        let n = self.0;
        for (unit, scale) in UNITS {
            if n >= scale {
                let remainder = n % scale;
                return if remainder == 0 {
                    write!(f, "{} {unit}", n / scale)
                } else {
                    write!(f, "{:.1} {unit}", n as f64 / scale as f64)
                };
            }
        }
        write!(f, "{n} bytes")
    }
}

/// A list of owners for messages: `root or uid 1000`.
struct Owners<'a>(&'a [u32]);

impl fmt::Display for Owners<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, uid) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            match uid {
                0 => f.write_str("root")?,
                uid => write!(f, "uid {uid}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn opts(max: u64) -> Options<'static> {
        Options::new("a test file", max)
    }

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_bounded(&path, &opts(5)).unwrap(), b"hello");
        let (_, meta) = open_regular(&path, &opts(5).no_follow()).unwrap();
        assert_eq!(meta.len(), 5);
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read_bounded(Path::new("/nonexistent/rprof-fs/x"), &opts(10)).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    /// Issue 9.2: a FIFO without a writer is refused at once instead of blocking in open().
    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A hang would block this thread forever; run it on another one and wait with a timeout.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_bounded(&p, &opts(1 << 20)).map_err(|e| e.to_string()));
        });
        let started = Instant::now();
        let result = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("read_bounded returned (did not block on the FIFO)");
        assert!(started.elapsed() < Duration::from_secs(10));
        let message = result.unwrap_err();
        assert!(
            message.ends_with("not a regular file (a FIFO)"),
            "{message}"
        );
    }

    /// Issue 9.3: `/dev/zero` (endless) is refused as a device, followed or not.
    #[test]
    fn dev_zero_is_refused() {
        let err = read_bounded(Path::new("/dev/zero"), &opts(1 << 20)).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotRegular {
                    kind: FileKind::CharDevice,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "/dev/zero: not a regular file (a character device)"
        );
    }

    /// Issue 9.3: a link to `/dev/zero` is refused as a link when links are not followed, and as
    /// a device when they are.
    #[test]
    fn symlink_is_refused_when_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("perf-1.map");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = read_bounded(&link, &opts(1 << 20).no_follow()).unwrap_err();
        assert!(matches!(err, ReadError::Symlink { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("is a symbolic link, not followed for a test file"),
            "{err}"
        );
        let err = read_bounded(&link, &opts(1 << 20)).unwrap_err();
        assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
        // A link to a regular file is fine when followed.
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let ok = dir.path().join("ok-link");
        std::os::unix::fs::symlink(&target, &ok).unwrap();
        assert_eq!(read_bounded(&ok, &opts(10)).unwrap(), b"x");
        assert!(read_bounded(&ok, &opts(10).no_follow()).is_err());
    }

    /// Issue 9.3: a file over the cap is refused by its size, before anything is read.
    #[test]
    fn oversize_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let file = File::create(&path).unwrap();
        // Sparse: 4 GiB of size without 4 GiB of disk.
        file.set_len(4 << 30).unwrap();
        let err = open_regular(&path, &Options::new("a perf map", 512 << 20)).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("is 4 GiB, over the 512 MiB limit for a perf map"),
            "{err}"
        );
        std::fs::write(&path, b"0123456789").unwrap();
        assert!(matches!(
            read_bounded(&path, &opts(9)),
            Err(ReadError::TooLarge { size: 10, .. })
        ));
        assert_eq!(read_bounded(&path, &opts(10)).unwrap().len(), 10);
    }

    /// A `/proc` file claims size 0; the cap still holds while reading.
    #[test]
    fn proc_files_are_bounded_while_reading() {
        let all = read_bounded(Path::new("/proc/self/maps"), &opts(1 << 24)).unwrap();
        assert!(all.len() > 100);
        let err = read_bounded(Path::new("/proc/self/maps"), &opts(16)).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { size: 17, .. }), "{err}");
    }

    #[test]
    fn owner_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned");
        std::fs::write(&path, b"x").unwrap();
        let me = std::fs::metadata(&path).unwrap().uid();
        let mine = [me];
        assert!(read_bounded(&path, &opts(10).owned_by(&mine)).is_ok());
        let other = [me.wrapping_add(1), 0].map(|u| if u == me { u + 2 } else { u });
        let err = read_bounded(&path, &opts(10).owned_by(&other)).unwrap_err();
        assert!(matches!(err, ReadError::Owner { .. }), "{err}");
        assert!(
            err.to_string().contains("not trusted as a test file"),
            "{err}"
        );
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path(), &opts(10)).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(Size(100).to_string(), "100 bytes");
        assert_eq!(Size(512 << 20).to_string(), "512 MiB");
        assert_eq!(Size(4_509_715_660).to_string(), "4.2 GiB");
        assert_eq!(Size(1536).to_string(), "1.5 KiB");
    }
}
