//! rprof-symbols: turns code addresses into function names, source files and lines.
//!
//! Given a module (an ELF file by path and build id, the vDSO, the kernel, or a JIT perf map) and
//! a batch of lookup addresses, [`Symbolizer::symbolize`] returns one [`Location`] per address:
//! the chain of [`SymFrame`]s at that address, innermost inlined function first and the real
//! (out-of-line) function last.
//!
//! Where names come from:
//! - ELF modules: DWARF (names, files, lines, inline frames) through a lazy namer that parses
//!   only the units holding the addresses asked for and answers as `addr2line` does (through
//!   `addr2line` itself for split DWARF and dwz files), embedded or from a separate debug file found by build id (`<root>/.build-id/xx/rest.debug`) or by
//!   `.gnu_debuglink` (CRC-checked), with dwz supplementary files (`.gnu_debugaltlink`),
//!   compressed debug sections, and split DWARF (`.dwo` files, `<module>.dwp` packages).
//!   Without DWARF for an address, the nearest preceding code symbol of `.symtab`/`.dynsym`
//!   (size-checked where sizes exist), and `name@plt` for x86-64 PLT stubs. A file whose build id
//!   differs from the recorded one is not used (see [`ModuleProblem::BuildIdMismatch`]).
//! - vDSO: the image mapped into this very process (same kernel as the recording).
//! - Kernel: `/proc/kallsyms`, nearest preceding text symbol, module name kept in brackets.
//!
//! With a [`CacheDir`], what is costly to work out and cannot change while its files stay the
//! same is kept between runs: the kernel's own text symbols for the running boot, and each
//! DWARF file's unit index (which units cover which addresses).
//! - JIT: `/tmp/perf-PID.map`, only when it is a regular file (not a link) owned by root, by the
//!   user rprof runs as, or by the running process PID.
//!
//! Every file is opened through `rprof-fs`: only regular files, without blocking (a FIFO never
//! hangs), each kind under a size cap; a refused file leaves its addresses unnamed and its
//! status says why.
//!
//! [`Symbolizer::function_pieces`] names the whole function holding an address at once, in
//! pieces that each get one answer: what a caller can keep to name any later address of that
//! function without loading the module (rprof's name cache).
//!
//! Names are demangled ([`demangle`]: Rust legacy and v0 without hash, C++). Every module is
//! parsed once (files are memory-mapped) and kept for later batches until
//! [`Symbolizer::forget`] drops it; [`Symbolizer::module_status`] tells what was found and what
//! went wrong. Missing, unreadable or malformed files give empty
//! locations, never a panic.
//!
//! Left to others: turning process addresses into module addresses and subtracting 1 from return
//! addresses (rprof-unwind and the caller), naming unknown addresses `module+0xoffset` (the
//! report), storing names in the profile (rprof-profile), and keeping names between runs (the
//! caller, with rprof-namecache). No external tool (addr2line, perf) is ever run.

#![deny(missing_docs)]

mod cachefile;
mod demangle;
mod dwarf;
#[cfg(test)]
mod dwarf_diff;
mod elf;
mod fde;
mod jit;
mod kernel;
mod split;
mod status;
mod symtab;

use std::collections::HashMap;
use std::path::PathBuf;

pub use demangle::demangle;
pub use status::{DebugInfo, ModuleProblem, ModuleStatus};

use elf::ElfModule;
use jit::JitMap;
use kernel::KernelSymbols;

/// Which module a batch of addresses belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleSource<'a> {
    /// An ELF file (executable or shared library) as mapped by the profiled process.
    Elf {
        /// Path of the file, as in `/proc/PID/maps`.
        path: &'a str,
        /// The build id recorded for the mapping, if known. When given, the file on disk is only
        /// used if its build id matches.
        build_id: Option<&'a [u8]>,
    },
    /// The vDSO of the running kernel.
    Vdso,
    /// The kernel (`/proc/kallsyms`).
    Kernel,
    /// JIT-compiled code of process `pid`, named by its perf map file.
    JitMap {
        /// The process that wrote `/tmp/perf-PID.map`.
        pid: u32,
    },
}

/// One function level at an address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SymFrame {
    /// The demangled function name.
    pub function: Option<String>,
    /// The source file (as recorded in DWARF, usually absolute).
    pub file: Option<String>,
    /// The 1-based source line; for an inlined frame's callers, the line of the call.
    pub line: Option<u32>,
    /// True when this level was inlined into the next frame of the same [`Location`].
    pub inlined: bool,
}

/// All function levels at one address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// Innermost first; all but the last are inlined. Empty when the address cannot be named.
    pub frames: Vec<SymFrame>,
}

/// Where the symbolizer looks for files. [`Options::default`] gives the system locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Roots searched for separate debug files: `<root>/.build-id/xx/rest.debug` and
    /// `<root>/<module dir>/<debuglink>`. Default: `["/usr/lib/debug"]`.
    pub debug_roots: Vec<PathBuf>,
    /// The kernel symbol file. Default: `/proc/kallsyms`.
    pub kallsyms: PathBuf,
    /// Directory holding `perf-PID.map` files. Default: `/tmp`.
    pub perf_map_dir: PathBuf,
    /// Where files that save work between runs are kept (see [`CacheDir`]). Default: none.
    pub cache: Option<CacheDir>,
}

/// A directory for files that save work between runs, written and read only by the effective
/// user (the caller chooses and checks the directory; rprof-namecache does for rprof).
///
/// - `kernel-symbols`: the symbols of the kernel's own code (`_stext`..`_etext` and the init
///   text), which do not change until the next boot, with the boot id, the symbol file they were
///   read from and `tag`. Used only when all three match; an address outside the kept ranges (a
///   module, a BPF program, a trampoline) makes the symbol file be read as without a cache.
/// - `units-<build id>`: a DWARF file's unit index (each unit's offset and address ranges, which
///   take parsing every unit's root entry to find), with the DWARF file's path and identity
///   (device, inode, size, modification time) and `tag`. Used only when all match.
/// - `sections-<build id>`: a DWARF file's compressed sections, inflated, under the same checks
///   as the unit index; mapped when read back.
///
/// Files are written beside their destination and renamed into place (rprof-fs, mode 0600, the
/// effective user's even under sudo); read only when they are regular files of the effective
/// user, up to a size cap, every record checked; a file that does not read is ignored and
/// replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDir {
    /// The directory.
    pub dir: PathBuf,
    /// Identifies the rprof that writes and reads the files: a file written by another build is
    /// not used.
    pub tag: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            debug_roots: vec![PathBuf::from("/usr/lib/debug")],
            kallsyms: PathBuf::from("/proc/kallsyms"),
            perf_map_dir: PathBuf::from("/tmp"),
            cache: None,
        }
    }
}

/// Symbolizes addresses, keeping every module it has loaded for later batches.
#[derive(Debug, Default)]
pub struct Symbolizer {
    options: Options,
    elf: HashMap<(String, Option<Vec<u8>>), ElfModule>,
    /// The vDSO image, or why it could not be read.
    vdso: Option<Result<ElfModule, ModuleStatus>>,
    kernel: Option<KernelSymbols>,
    jit: HashMap<u32, JitMap>,
}

/// A loaded module of any kind.
enum Loaded<'s> {
    Elf(&'s mut ElfModule),
    Kernel(&'s mut KernelSymbols),
    Jit(&'s JitMap),
    /// The module could not be loaded at all; the status says why.
    Nothing(&'s ModuleStatus),
}

impl Loaded<'_> {
    fn locate(&mut self, addr: u64) -> Location {
        match self {
            Loaded::Elf(m) => m.locate(addr),
            Loaded::Kernel(k) => k.locate(addr),
            Loaded::Jit(j) => j.locate(addr),
            Loaded::Nothing(_) => Location::default(),
        }
    }

    fn status(&self) -> &ModuleStatus {
        match self {
            Loaded::Elf(m) => m.status(),
            Loaded::Kernel(k) => k.status(),
            Loaded::Jit(j) => j.status(),
            Loaded::Nothing(s) => s,
        }
    }
}

impl Symbolizer {
    /// A symbolizer using the system locations ([`Options::default`]).
    pub fn new() -> Symbolizer {
        Symbolizer::with_options(Options::default())
    }

    /// A symbolizer looking for files where `options` says.
    pub fn with_options(options: Options) -> Symbolizer {
        Symbolizer {
            options,
            ..Symbolizer::default()
        }
    }

    /// Names each address of `addrs` in `module`.
    ///
    /// `addrs` are lookup addresses: SVMAs (addresses as stated in the ELF file) for
    /// [`ModuleSource::Elf`] and [`ModuleSource::Vdso`], with 1 already subtracted from return
    /// addresses; absolute addresses for [`ModuleSource::Kernel`] and [`ModuleSource::JitMap`].
    /// Returns one [`Location`] per address, in the same order; an address that cannot be named
    /// gives a location without frames. Each distinct address is looked up once per call.
    pub fn symbolize(&mut self, module: &ModuleSource<'_>, addrs: &[u64]) -> Vec<Location> {
        let mut loaded = self.load(module);
        let mut unique = addrs.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut found: Vec<Location> = unique.iter().map(|&a| loaded.locate(a)).collect();
        // Move each location to its last use, clone it for earlier ones.
        let slots: Vec<Option<usize>> =
            addrs.iter().map(|a| unique.binary_search(a).ok()).collect();
        let mut uses = vec![0usize; unique.len()];
        for &i in slots.iter().flatten() {
            if let Some(n) = uses.get_mut(i) {
                *n += 1;
            }
        }
        slots
            .into_iter()
            .map(|slot| {
                let Some(i) = slot else {
                    return Location::default();
                };
                match (uses.get_mut(i), found.get_mut(i)) {
                    (Some(n), Some(loc)) => {
                        *n -= 1;
                        if *n == 0 {
                            std::mem::take(loc)
                        } else {
                            loc.clone()
                        }
                    }
                    _ => Location::default(),
                }
            })
            .collect()
    }

    /// Names the whole function of `module` that holds the lookup address `addr` at once: its
    /// answers in pieces of one [`Location`] each, as (start, end, location) sorted by start,
    /// together covering the function's range and `addr`. Every address of a piece gets that
    /// location from [`symbolize`](Self::symbolize). Empty when this cannot be promised (no
    /// DWARF function there, overlapping units or functions, split DWARF, a function of more
    /// than 16,384 pieces, or a module that is not an ELF file): then name `addr` alone.
    ///
    /// What rprof caches between runs: a function sampled once is named for every later
    /// sample in it.
    pub fn function_pieces(
        &mut self,
        module: &ModuleSource<'_>,
        addr: u64,
    ) -> Vec<(u64, u64, Location)> {
        if !matches!(module, ModuleSource::Elf { .. }) {
            return Vec::new();
        }
        match self.load(module) {
            Loaded::Elf(m) => m.pieces(addr),
            _ => Vec::new(),
        }
    }

    /// What was found for `module` (loading it if this is the first time it is asked for): where
    /// its debug information came from, how many symbols it has, and the problem that keeps names
    /// missing or untrusted, if any.
    pub fn module_status(&mut self, module: &ModuleSource<'_>) -> ModuleStatus {
        self.load(module).status().clone()
    }

    /// Gives the file pages the loaded modules' DWARF was read from back to the page cache
    /// (they no longer count in this process's RSS; the next read maps them again), keeping
    /// everything parsed. For a caller that names in bursts with the modules loaded between
    /// them (rprof names while its target runs): on this machine's page cache a single read
    /// maps a 2 MiB folio.
    pub fn release_pages(&mut self) {
        for module in self.elf.values_mut() {
            module.release_pages();
        }
    }

    /// Drops what was loaded for `module` (its parsed DWARF, symbol tables and file mappings),
    /// so that naming many modules one after the other holds one at a time. Asking for the
    /// module again loads it again.
    pub fn forget(&mut self, module: &ModuleSource<'_>) {
        match *module {
            ModuleSource::Elf { path, build_id } => {
                self.elf
                    .remove(&(path.to_owned(), build_id.map(<[u8]>::to_vec)));
            }
            ModuleSource::Vdso => self.vdso = None,
            ModuleSource::Kernel => self.kernel = None,
            ModuleSource::JitMap { pid } => {
                self.jit.remove(&pid);
            }
        }
    }

    fn load(&mut self, module: &ModuleSource<'_>) -> Loaded<'_> {
        let options = &self.options;
        match *module {
            ModuleSource::Elf { path, build_id } => {
                let key = (path.to_owned(), build_id.map(<[u8]>::to_vec));
                let m = self.elf.entry(key).or_insert_with(|| {
                    ElfModule::load(path, build_id, &options.debug_roots, options.cache.as_ref())
                });
                Loaded::Elf(m)
            }
            ModuleSource::Vdso => {
                let vdso = self
                    .vdso
                    .get_or_insert_with(|| match rprof_fs::vdso::read_own_vdso() {
                        Ok(bytes) => Ok(ElfModule::from_memory(
                            bytes,
                            "[vdso]",
                            &options.debug_roots,
                        )),
                        Err(message) => Err(ModuleStatus {
                            problem: Some(ModuleProblem::VdsoUnavailable { message }),
                            ..ModuleStatus::default()
                        }),
                    });
                match vdso {
                    Ok(m) => Loaded::Elf(m),
                    Err(status) => Loaded::Nothing(status),
                }
            }
            ModuleSource::Kernel => Loaded::Kernel(self.kernel.get_or_insert_with(|| {
                KernelSymbols::load(&options.kallsyms, options.cache.as_ref())
            })),
            ModuleSource::JitMap { pid } => {
                let m = self.jit.entry(pid).or_insert_with(|| {
                    let path = options.perf_map_dir.join(format!("perf-{pid}.map"));
                    JitMap::load(&path, &jit::trusted_owners(pid))
                });
                Loaded::Jit(m)
            }
        }
    }
}
