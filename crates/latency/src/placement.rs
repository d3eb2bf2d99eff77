//! Where a function's uprobes go: its entry, or its second instruction when the first only
//! sets flags and the kernel would single-step it ([`probe_skip`]; glibc's `free` starts that
//! way). Used by `rprof latency` and `rprof record --alloc` alike.
//!
//! It reads at most 16 bytes of the function's code from the file (bounded, a regular file
//! only); what those bytes mean beyond the few instruction forms below is left alone: any
//! other first instruction keeps the probe at the entry.

use crate::resolve::Target;

/// The file offset where `target`'s probes go: its entry plus [`probe_skip`] of its first
/// code bytes (the entry when the file cannot be read).
pub fn probe_offset(target: &Target) -> u64 {
    let file = rprof_fs::read::open_regular(
        &target.path,
        &rprof_fs::read::Options::new("the probed file", rprof_fs::read::ELF_LIMIT),
    )
    .ok()
    .map(|(file, _)| file);
    target.offset + probe_skip(&code_at(file.as_ref(), target.offset))
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

#[cfg(test)]
mod tests {
    use super::{probe_offset, probe_skip};
    use crate::resolve::{resolve, Modules};

    /// Issue 15 (cost, from issue 14): `rprof latency libc:free` places its probes where
    /// `--alloc` does. On an x86-64 glibc whose `free` starts with a flags-only `test`, the
    /// probe goes 3 bytes in, not on the instruction the kernel would single-step.
    #[test]
    fn latency_probes_of_free_go_past_its_first_test() {
        let modules = Modules::of_process(std::process::id()).unwrap();
        let free = resolve("libc:free", &modules).unwrap();
        let code = std::fs::read(&free.path).unwrap();
        let entry = usize::try_from(free.offset).unwrap();
        let first = &code[entry..entry + 3];
        let offset = probe_offset(&free);
        if cfg!(target_arch = "x86_64") && first == [0x48, 0x85, 0xff] {
            assert_eq!(offset, free.offset + 3, "{:x?}", &code[entry..entry + 8]);
        } else {
            assert_eq!(offset, free.offset + probe_skip(&code[entry..entry + 16]));
        }
    }

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
