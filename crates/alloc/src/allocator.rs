//! Which allocator functions to probe: found by symbol in the C library the target maps
//! (`libc.so.6`), through `rprof_latency::resolve` (symbol → file offset through `PT_LOAD`).
//!
//! The functions are glibc's public entry points. Calls inside glibc (`strdup`, `fopen`,
//! `reallocarray`, ...) reach the same addresses (`__libc_malloc` is `malloc`), so they count.
//! Allocators linked into the executable (jemalloc, mimalloc, tcmalloc statically, Rust's
//! `#[global_allocator]` crates) are not probed: their calls are not seen (docs/alloc.md).
//!
//! Each function's probes go on its entry, or on its second instruction when the first only
//! sets flags and the kernel would single-step it (`rprof_latency::placement`: glibc's `free`).

use std::path::PathBuf;

use rprof_latency::placement;
use rprof_latency::resolve::{self, Modules, Target};

use crate::bpf::SizeArg;
use crate::AllocError;

/// What an allocator function does with its arguments and result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `malloc(size)`, `valloc`, `pvalloc`: a new block, the result is its address.
    Malloc,
    /// `calloc(n, size)`.
    Calloc,
    /// `realloc(ptr, size)`: frees `ptr` (unless the call fails), allocates the result.
    Realloc,
    /// `aligned_alloc(align, size)`, `memalign(align, size)`.
    Aligned,
    /// `free(ptr)`.
    Free,
}

impl Kind {
    /// Where the size is, for the stack filter (`None`: `free`).
    pub fn size_arg(self) -> Option<SizeArg> {
        match self {
            Kind::Malloc => Some(SizeArg::First),
            Kind::Calloc => Some(SizeArg::Product),
            Kind::Realloc | Kind::Aligned => Some(SizeArg::Second),
            Kind::Free => None,
        }
    }

    /// The call returns a block (a return probe is needed).
    pub fn allocates(self) -> bool {
        self != Kind::Free
    }
}

/// The functions probed, in the order of the summary's `calls_by_function`.
pub const FUNCTIONS: [(&str, Kind); 8] = [
    ("malloc", Kind::Malloc),
    ("calloc", Kind::Calloc),
    ("realloc", Kind::Realloc),
    ("free", Kind::Free),
    ("aligned_alloc", Kind::Aligned),
    ("memalign", Kind::Aligned),
    ("valloc", Kind::Malloc),
    ("pvalloc", Kind::Malloc),
];

/// One function to probe.
#[derive(Clone, Debug)]
pub struct Function {
    /// Its name (`malloc`).
    pub name: &'static str,
    /// What it does.
    pub kind: Kind,
    /// The function's symbol and entry.
    pub target: Target,
    /// The file offset where its probes go: the entry, or the second instruction when the
    /// first only sets flags and the second is one the kernel emulates (`rprof_latency::placement`).
    pub probe_offset: u64,
}

/// The allocator of a target: the C library and the functions found in it.
#[derive(Clone, Debug)]
pub struct Allocator {
    /// The library's path.
    pub path: PathBuf,
    /// The functions found, in [`FUNCTIONS`] order; two names at one address (`aligned_alloc`
    /// and `memalign` in some glibc versions) keep the first.
    pub functions: Vec<Function>,
}

/// Finds the C library among `modules` and its allocator functions. `what` names the target
/// in messages.
pub fn find(modules: &Modules, what: &str) -> Result<Allocator, AllocError> {
    let libc = modules.libraries.iter().find(|p| {
        p.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with("libc.so") || f.starts_with("libc-"))
    });
    let Some(libc) = libc else {
        let searched: Vec<String> = modules
            .executable
            .iter()
            .chain(&modules.libraries)
            .map(|p| p.display().to_string())
            .collect();
        return Err(AllocError::NoAllocator(format!(
            "no allocator to probe in {what}: it maps no C library (libc.so.6) with malloc, \
             calloc, realloc and free (searched: {}); a statically linked program or one with \
             its own allocator cannot be profiled with --alloc (docs/alloc.md)",
            if searched.is_empty() {
                "nothing".to_string()
            } else {
                searched.join(", ")
            }
        )));
    };
    let mut functions: Vec<Function> = Vec::new();
    for (name, kind) in FUNCTIONS {
        let spec = format!("{}:{name}", libc.display());
        let Ok(target) = resolve::resolve(&spec, modules) else {
            continue;
        };
        if functions.iter().any(|f| f.target.offset == target.offset) {
            continue;
        }
        let probe_offset = placement::probe_offset(&target);
        functions.push(Function {
            name,
            kind,
            target,
            probe_offset,
        });
    }
    for needed in ["malloc", "free"] {
        if !functions.iter().any(|f| f.name == needed) {
            return Err(AllocError::NoAllocator(format!(
                "{} has no '{needed}' symbol rprof can probe (searched .symtab and .dynsym); \
                 --alloc needs glibc's malloc and free",
                libc.display()
            )));
        }
    }
    Ok(Allocator {
        path: libc.clone(),
        functions,
    })
}
