//! Which allocator functions to probe: found by symbol in the C library the target maps
//! (`libc.so.6`), through `rprof_latency::resolve` (symbol → file offset through `PT_LOAD`).
//!
//! The functions are glibc's public entry points. Calls inside glibc (`strdup`, `fopen`,
//! `reallocarray`, ...) reach the same addresses (`__libc_malloc` is `malloc`), so they count.
//! Allocators linked into the executable (jemalloc, mimalloc, tcmalloc statically, Rust's
//! `#[global_allocator]` crates) are not probed: their calls are not seen (docs/alloc.md).
//!
//! Each function's probes go on its entry, or on its second instruction when the first only
//! sets flags and the kernel would single-step it ([`probe_skip`]: glibc's `free`).

use std::path::PathBuf;

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
    /// first only sets flags and the second is one the kernel emulates ([`probe_skip`]).
    pub probe_offset: u64,
}

/// Bytes past a function's entry where its probe should go, from the function's first bytes
/// `code`: 0, or the length of a first instruction that writes nothing but the flags (`test`
/// of two registers, `cmpb $imm, disp(%rip)`) when the second is one that x86 uprobes emulate
/// (a conditional or plain jump, a call, a `push` of a register).
///
/// Why: a uprobe on an instruction the kernel does not emulate executes it out of line with a
/// single step, a second trap. On the VM of docs/benchmarks.md a probe on glibc's `free`
/// (`test %rdi,%rdi; je ...`) cost 13.5 µs a call at the `test` and 1.3 µs at the `je`;
/// `malloc` starts with `push %r12` (1.5 µs). At the second instruction the registers and the
/// stack are those of the entry (only the flags differ), so the probe records the same
/// arguments and return address, and every call passes there (the first instruction does not
/// branch). Glibc's `free`, `memalign` and `aligned_alloc` start this way.
pub fn probe_skip(code: &[u8]) -> u64 {
    let first: u64 = match code {
        // test r64, r64 (REX.W 85 /r, register form)
        [0x48 | 0x49 | 0x4c | 0x4d, 0x85, modrm, ..] if modrm >> 6 == 3 => 3,
        // test r32, r32
        [0x85, modrm, ..] if modrm >> 6 == 3 => 2,
        // cmpb $imm8, disp32(%rip) (80 /7, ModRM 0x3d), 7 bytes
        [0x80, 0x3d, _, _, _, _, _, ..] => 7,
        _ => return 0,
    };
    match code.get(first as usize..) {
        // jcc rel8, jmp rel32, call rel32, jmp rel8, jcc rel32, push r, push r8-r15
        Some(
            [0x70..=0x7f, ..]
            | [0xe8 | 0xe9 | 0xeb, ..]
            | [0x0f, 0x80..=0x8f, ..]
            | [0x50..=0x57, ..]
            | [0x41, 0x50..=0x57, ..],
        ) => first,
        _ => 0,
    }
}

/// The first 16 bytes of the code at file offset `offset` (fewer if the file is shorter or
/// cannot be read: then the probe stays at the entry).
fn code_at(file: Option<&std::fs::File>, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut code = [0u8; 16];
    let n = file
        .and_then(|f| f.read_at(&mut code, offset).ok())
        .unwrap_or(0);
    code[..n].to_vec()
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
    let file = rprof_fs::read::open_regular(
        libc,
        &rprof_fs::read::Options::new("the C library", rprof_fs::read::ELF_LIMIT),
    )
    .ok()
    .map(|(file, _)| file);
    let mut functions: Vec<Function> = Vec::new();
    for (name, kind) in FUNCTIONS {
        let spec = format!("{}:{name}", libc.display());
        let Ok(target) = resolve::resolve(&spec, modules) else {
            continue;
        };
        if functions.iter().any(|f| f.target.offset == target.offset) {
            continue;
        }
        let probe_offset = target.offset + probe_skip(&code_at(file.as_ref(), target.offset));
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

#[cfg(test)]
mod tests {
    use super::probe_skip;

    /// Issue 14 (cost): the probe of glibc's `free` (`test %rdi,%rdi; je`) goes on the `je`,
    /// which the kernel emulates, not on the `test`, which it single-steps (10× the cost).
    #[test]
    fn probes_skip_a_first_instruction_that_only_sets_flags() {
        // free: test %rdi,%rdi; je rel32
        assert_eq!(
            probe_skip(&[0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0]),
            3
        );
        // memalign: cmpb $0x0,0x140e71(%rip); je rel8
        assert_eq!(
            probe_skip(&[0x80, 0x3d, 0x71, 0x0e, 0x14, 0x00, 0x00, 0x74, 0x07]),
            7
        );
        // valloc: cmpb $0x0,0x140e31(%rip); push %rbx
        assert_eq!(
            probe_skip(&[0x80, 0x3d, 0x31, 0x0e, 0x14, 0x00, 0x00, 0x53]),
            7
        );
        // malloc: push %r12 (emulated): stays at the entry
        assert_eq!(probe_skip(&[0x41, 0x54, 0x55, 0x53]), 0);
        // test %rdi,%rdi; mov ...: the second is single-stepped anyway, stays
        assert_eq!(probe_skip(&[0x48, 0x85, 0xff, 0x48, 0x89, 0xfb]), 0);
        // test with a memory operand reads memory but is not skipped (ModRM not 11)
        assert_eq!(probe_skip(&[0x48, 0x85, 0x3f, 0x74, 0x05]), 0);
        // truncated code: stays at the entry
        assert_eq!(probe_skip(&[0x48, 0x85, 0xff]), 0);
        assert_eq!(probe_skip(&[0x80, 0x3d, 0x71]), 0);
        assert_eq!(probe_skip(&[]), 0);
    }
}
