//! Outputs: a new file next to the destination, renamed into place.
//!
//! rprof often runs as root (or under sudo, in another user's directory), so an output path may
//! name a link planted by someone else, or another user's file. [`NewFile`] never opens the
//! destination itself:
//!
//! 1. the destination's directory is opened once (`O_DIRECTORY`), and every later step is
//!    relative to that descriptor, so the directory cannot be swapped underneath;
//! 2. the destination is looked at without following a link: a directory, a device, a FIFO or
//!    a socket is refused ([`WriteErrorKind::NotAFile`]); nothing is ever renamed over
//!    `/dev/null`;
//! 3. a new temporary file is created beside it with `O_CREAT | O_EXCL | O_NOFOLLOW` and an
//!    explicit mode ([`Access`]), so it is ours and nobody else's;
//! 4. under sudo (effective uid 0 with `SUDO_UID`/`SUDO_GID` set) that file, and only that
//!    file, because rprof just created it, is handed to the invoking user with `fchown`
//!    (except rprof's own cache files, [`Access::Own`]);
//! 5. [`NewFile::commit`] renames it over the destination: a link or another user's file is
//!    replaced, never written through. Until then, an existing destination is untouched, and a
//!    `NewFile` dropped without `commit` removes its temporary file.
//!
//! A recording commits as soon as it begins and keeps writing through the returned descriptor,
//! so a killed recording still leaves its profile at the destination.
//!
//! Only the last component of the path is protected: the directories leading to it are
//! followed as given, because the user who runs rprof chose them.
//!
//! It leaves to others what is written.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

/// Who may read an output (the umask can only take permissions away).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only its owner, mode 0600, as perf does for `perf.data`: profiles hold command lines,
    /// paths, thread names and addresses of the profiled program.
    Private,
    /// Mode 0666 minus the umask, like any file an ordinary tool writes: flame graphs, folded
    /// stacks, counts.
    Shared,
    /// Mode 0600 and never handed to the invoking user under sudo: a file rprof keeps for its
    /// own later runs as the same user (its name cache), which must stay the effective user's.
    Own,
}

impl Access {
    fn mode(self) -> Mode {
        match self {
            Access::Private | Access::Own => Mode::from_bits_truncate(0o600),
            Access::Shared => Mode::from_bits_truncate(0o666),
        }
    }
}

/// Why an output could not be written.
#[derive(Debug)]
pub struct WriteError {
    path: PathBuf,
    kind: WriteErrorKind,
}

/// What went wrong, by step.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteErrorKind {
    /// The destination exists and is not a regular file or a link: what it is ("a directory",
    /// "a character device", ...). It is never replaced.
    NotAFile(&'static str),
    /// The destination's directory could not be opened.
    Directory(io::Error),
    /// The destination could not be looked at.
    Inspect(io::Error),
    /// The new file could not be created.
    Create(io::Error),
    /// The new file could not be renamed over the destination.
    Place(io::Error),
}

impl WriteError {
    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &WriteErrorKind {
        &self.kind
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        // The OS error is the source (shown after a colon by `{:#}`), never repeated here.
        match &self.kind {
            WriteErrorKind::NotAFile(what) => write!(
                f,
                "cannot write {path}: it is {what}; rprof writes a new file and replaces only a regular file or a link: give a file name"
            ),
            WriteErrorKind::Directory(_) => {
                write!(f, "cannot write {path}: cannot open its directory")
            }
            WriteErrorKind::Inspect(_) => write!(f, "cannot write {path}: cannot look at it"),
            WriteErrorKind::Create(_) => write!(
                f,
                "cannot write {path}: cannot create a new file in its directory"
            ),
            WriteErrorKind::Place(_) => write!(
                f,
                "cannot write {path}: cannot rename the new file over it"
            ),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            WriteErrorKind::NotAFile(_) => None,
            WriteErrorKind::Directory(e)
            | WriteErrorKind::Inspect(e)
            | WriteErrorKind::Create(e)
            | WriteErrorKind::Place(e) => Some(e),
        }
    }
}

/// A new output file, written beside its destination and moved there by [`commit`].
///
/// Writing goes to the new file ([`Write`] is implemented, or use [`file`](NewFile::file)).
/// Dropped without `commit`, the new file is removed and the destination is left as it was.
///
/// [`commit`]: NewFile::commit
#[derive(Debug)]
pub struct NewFile {
    path: PathBuf,
    name: OsString,
    file: File,
    temp: Temp,
    handover: Handover,
}

/// The temporary file's name in its directory; removed when dropped unless `placed`.
#[derive(Debug)]
struct Temp {
    dir: OwnedFd,
    name: OsString,
    placed: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.placed {
            // Nothing to do if it fails: the error that stopped the output is reported already.
            let _ =
                nix::unistd::unlinkat(&self.dir, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Whether the file went to the invoking user under sudo.
#[derive(Debug)]
enum Handover {
    /// Not under sudo: the file belongs to whoever runs rprof.
    NotNeeded,
    /// Handed to this uid.
    Done(u32),
    /// `fchown` to this uid failed.
    Failed(u32, io::Error),
}

/// Makes temporary names unique within this process; the pid makes them unique across.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Longest part of the destination's name kept in the temporary name (NAME_MAX is 255).
const NAME_KEPT: usize = 200;

impl NewFile {
    /// Checks the destination, creates the new file beside it with the mode of `access`, and
    /// hands it to the invoking user under sudo.
    pub fn create(path: &Path, access: Access) -> Result<NewFile, WriteError> {
        let fail = |kind| WriteError {
            path: path.to_path_buf(),
            kind,
        };
        let name = match path.file_name() {
            Some(name) if !path.as_os_str().as_bytes().ends_with(b"/") => name.to_os_string(),
            _ => return Err(fail(WriteErrorKind::NotAFile("a directory"))),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = nix::fcntl::open(
            parent,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(WriteErrorKind::Directory(e.into())))?;
        match nix::sys::stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                if let Some(what) = not_a_file(stat.st_mode) {
                    return Err(fail(WriteErrorKind::NotAFile(what)));
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail(WriteErrorKind::Inspect(e.into()))),
        }
        let (temp, fd) =
            create_temp(&dir, &name, access.mode()).map_err(|e| fail(WriteErrorKind::Create(e)))?;
        let handover = match sudo_user().filter(|_| access != Access::Own) {
            None => Handover::NotNeeded,
            // Safe because rprof created this file a moment ago (O_EXCL): it is nobody else's.
            Some((uid, gid)) => match nix::unistd::fchown(&fd, Some(uid), Some(gid)) {
                Ok(()) => Handover::Done(uid.as_raw()),
                Err(e) => Handover::Failed(uid.as_raw(), e.into()),
            },
        };
        Ok(NewFile {
            path: path.to_path_buf(),
            name,
            file: File::from(fd),
            temp: Temp {
                dir,
                name: temp,
                placed: false,
            },
            handover,
        })
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The new file (not yet at the destination until [`commit`](NewFile::commit)).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The uid the file was handed to under sudo, if it was.
    pub fn handed_to(&self) -> Option<u32> {
        match self.handover {
            Handover::Done(uid) => Some(uid),
            _ => None,
        }
    }

    /// Under sudo, why the file could not be handed to the invoking user (it then stays
    /// root's), as a sentence.
    pub fn handover_problem(&self) -> Option<String> {
        match &self.handover {
            Handover::Failed(uid, e) => Some(format!(
                "cannot give '{}' to uid {uid} (it stays root's): {e}",
                self.path.display()
            )),
            _ => None,
        }
    }

    /// Moves the new file over the destination (replacing a link or a file, never writing
    /// through it) and returns it, still open for writing.
    pub fn commit(self) -> Result<File, WriteError> {
        let NewFile {
            path,
            name,
            file,
            mut temp,
            ..
        } = self;
        match nix::fcntl::renameat(
            &temp.dir,
            temp.name.as_os_str(),
            &temp.dir,
            name.as_os_str(),
        ) {
            Ok(()) => {
                temp.placed = true;
                Ok(file)
            }
            // `temp` is dropped here: the new file is removed.
            Err(e) => Err(WriteError {
                path,
                kind: WriteErrorKind::Place(e.into()),
            }),
        }
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What a non-file destination is, in words; None for a regular file or a link.
fn not_a_file(st_mode: libc::mode_t) -> Option<&'static str> {
    let kind = SFlag::from_bits_truncate(st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFREG | SFlag::S_IFLNK => None,
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFCHR => Some("a character device"),
        SFlag::S_IFBLK => Some("a block device"),
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFSOCK => Some("a socket"),
        _ => Some("not a regular file"),
    }
}

/// Creates `.NAME.rprof-PID-N` in `dir`: a new file (never an existing one, never through a
/// link), retrying with another N if the name is taken.
fn create_temp(dir: &OwnedFd, name: &OsStr, mode: Mode) -> io::Result<(OsString, OwnedFd)> {
    let kept = &name.as_bytes()[..name.len().min(NAME_KEPT)];
    let pid = std::process::id();
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut last = io::Error::from(Errno::EEXIST);
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp = Vec::with_capacity(kept.len() + 32);
        temp.push(b'.');
        temp.extend_from_slice(kept);
        temp.extend_from_slice(format!(".rprof-{pid}-{n}").as_bytes());
        let temp = OsString::from_vec(temp);
        match nix::fcntl::openat(dir, temp.as_os_str(), flags, mode) {
            Ok(fd) => return Ok((temp, fd)),
            Err(Errno::EEXIST) => last = Errno::EEXIST.into(),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last)
}

/// The invoking user under sudo: effective uid 0 and both `SUDO_UID` and `SUDO_GID` set to
/// numbers (a `SUDO_UID` of 0 needs no handover).
fn sudo_user() -> Option<(Uid, Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let id = |name| std::env::var(name).ok()?.trim().parse::<u32>().ok();
    let uid = id("SUDO_UID").filter(|&uid| uid != 0)?;
    let gid = id("SUDO_GID")?;
    Some((Uid::from_raw(uid), Gid::from_raw(gid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn read(path: &Path) -> String {
        let mut text = String::new();
        File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .expect("readable");
        text
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Issue 9.1: a link at the destination is replaced, its target is not written.
    #[test]
    fn replaces_a_link_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("secret");
        std::fs::write(&target, "secret").expect("write");
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let mut out = NewFile::create(&link, Access::Private).expect("create");
        out.write_all(b"profile").expect("write");
        // Not yet committed: the link is still there.
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        out.commit().expect("commit");
        assert_eq!(read(&target), "secret");
        let meta = std::fs::symlink_metadata(&link).expect("out");
        assert!(meta.is_file());
        assert_eq!(read(&link), "profile");
        assert_eq!(entries(dir.path()), ["out", "secret"]);
    }

    /// Issue 9.1: a profile is private whatever the umask allows.
    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.data");
        NewFile::create(&path, Access::Private)
            .expect("create")
            .commit()
            .expect("commit");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    /// Issue 9.1: without commit, the destination keeps its old content and no file is left.
    #[test]
    fn dropped_without_commit_leaves_everything_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.data");
        std::fs::write(&path, "old").expect("write");
        let mut out = NewFile::create(&path, Access::Private).expect("create");
        out.write_all(b"new").expect("write");
        assert_eq!(entries(dir.path()).len(), 2);
        drop(out);
        assert_eq!(read(&path), "old");
        assert_eq!(entries(dir.path()), ["p.data"]);
        let fresh = dir.path().join("fresh");
        drop(NewFile::create(&fresh, Access::Shared).expect("create"));
        assert_eq!(entries(dir.path()), ["p.data"]);
    }

    /// Issue 9.1: a directory, a device or a FIFO is never replaced.
    #[test]
    fn refuses_what_is_not_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).expect("mkfifo");
        for (path, what) in [
            (sub.clone(), "a directory"),
            (dir.path().join("sub/"), "a directory"),
            (PathBuf::from("/dev/null"), "a character device"),
            (fifo.clone(), "a FIFO"),
        ] {
            let err = NewFile::create(&path, Access::Shared).expect_err("refused");
            assert!(
                matches!(err.kind(), WriteErrorKind::NotAFile(w) if *w == what),
                "{}: {err}",
                path.display()
            );
            assert!(err.to_string().contains("give a file name"), "{err}");
        }
        assert_eq!(entries(dir.path()), ["fifo", "sub"]);
        assert!(std::fs::metadata("/dev/null")
            .expect("null")
            .file_type()
            .is_char_device());
    }

    /// A missing directory is an error that names the path and carries the OS error once.
    #[test]
    fn missing_directory_is_one_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nowhere/p.data");
        let err = NewFile::create(&path, Access::Private).expect_err("no directory");
        assert!(matches!(err.kind(), WriteErrorKind::Directory(_)));
        let source = std::error::Error::source(&err).expect("source").to_string();
        assert!(!err.to_string().contains(&source), "{err}");
    }

    /// The temporary file stays unique when many are created at once.
    #[test]
    fn temporary_names_do_not_collide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let files: Vec<NewFile> = (0..20)
            .map(|_| NewFile::create(&path, Access::Shared).expect("create"))
            .collect();
        assert_eq!(entries(dir.path()).len(), 20);
        drop(files);
        assert!(entries(dir.path()).is_empty());
    }
}
