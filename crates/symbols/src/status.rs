//! What the symbolizer learned about one module: where its debug information came from, how many
//! symbols it has, and why names may be missing or untrusted.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The state of one module after the symbolizer loaded it (see [`crate::Symbolizer::module_status`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModuleStatus {
    /// Where the DWARF used for this module came from.
    pub debug_info: DebugInfo,
    /// How many named code symbols (symbol table, kallsyms or JIT map entries) are available.
    pub symbol_count: usize,
    /// The first problem met while loading; `None` when everything that exists was usable.
    /// A module without DWARF is not a problem in itself: see [`ModuleStatus::debug_info`].
    pub problem: Option<ModuleProblem>,
}

/// Where a module's DWARF (function names, lines, inline frames) comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DebugInfo {
    /// No usable DWARF: names come from symbol tables only, without file or line.
    #[default]
    None,
    /// The DWARF sections are in the module's own file.
    Embedded,
    /// The DWARF is in a separate debug file (found by build id or `.gnu_debuglink`).
    Separate(PathBuf),
}

/// Why a module's names are missing, partial or not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleProblem {
    /// The file does not exist (any more).
    #[error("{path}: no such file")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// The file exists but could not be opened, mapped or read.
    #[error("{path}: cannot read: {message}")]
    Unreadable {
        /// The path as given.
        path: String,
        /// The operating system's reason.
        message: String,
    },
    /// The file is not a well-formed ELF file.
    #[error("{path}: not a usable ELF file: {message}")]
    Malformed {
        /// The path as given.
        path: String,
        /// What the parser rejected.
        message: String,
    },
    /// The file on disk is not the build that was recorded, so neither its DWARF nor its symbol
    /// table is used (its addresses would name the wrong code). Names can still come from a
    /// separate debug file found under the recorded build id.
    #[error("{path}: build id {found} differs from the recorded {expected}; the file's symbols are not used")]
    BuildIdMismatch {
        /// The path as given.
        path: String,
        /// The recorded build id, in hex.
        expected: String,
        /// The build id of the file on disk, in hex, or "none".
        found: String,
    },
    /// The DWARF exists but could not be parsed; names come from the symbol table.
    #[error("{path}: malformed DWARF ({message}); using the symbol table only")]
    BadDwarf {
        /// The file holding the DWARF.
        path: String,
        /// What gimli rejected.
        message: String,
    },
    /// `/proc/kallsyms` shows every address as 0 (`kernel.kptr_restrict`, or not root).
    #[error(
        "kernel symbol addresses are hidden by kernel.kptr_restrict; \
         run as root or set `sysctl kernel.kptr_restrict=0` to name kernel frames"
    )]
    KernelAddressesHidden,
    /// The running process has no `[vdso]` mapping, or it could not be read.
    #[error("vDSO image unavailable: {message}")]
    VdsoUnavailable {
        /// What failed.
        message: String,
    },
}

impl ModuleProblem {
    /// The problem of a file that could not be read: missing, or unreadable for `error`.
    pub(crate) fn from_io(path: &std::path::Path, error: &std::io::Error) -> ModuleProblem {
        let path = path.display().to_string();
        if error.kind() == std::io::ErrorKind::NotFound {
            ModuleProblem::NotFound { path }
        } else {
            ModuleProblem::Unreadable {
                path,
                message: error.to_string(),
            }
        }
    }
}

impl ModuleProblem {
    /// The problem of a file that [`rprof_fs::read`] refused or could not read: missing, or
    /// unreadable with its reason (not a regular file, over its size limit, a planted link, the
    /// wrong owner, an I/O error).
    pub(crate) fn from_read(error: &rprof_fs::read::ReadError) -> ModuleProblem {
        let path = error.path().display().to_string();
        if error.is_not_found() {
            ModuleProblem::NotFound { path }
        } else {
            ModuleProblem::Unreadable {
                path,
                message: error.reason(),
            }
        }
    }
}

/// Lower-case hex of a build id.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}
