//! The in-kernel filter of the allocation probes: a BPF program (`BPF_PROG_TYPE_KPROBE`, raw
//! bytecode loaded with the `bpf(2)` system call) attached to a uprobe perf event with
//! `PERF_EVENT_IOC_SET_BPF`. The kernel runs it on every hit before it writes the sample;
//! returning 0 drops the sample.
//!
//! Two jobs, decided before a record costs any ring space:
//! - **Whose call.** The probes are per CPU for every process (an inherited uprobe breaks the
//!   target's `clone`, see `rprof_latency::probes`), so the program keeps only hits of the
//!   processes in a hash map (key: the process id, `bpf_get_current_pid_tgid() >> 32`), which
//!   rprof fills with the target and the processes it forks.
//! - **Which calls get a stack** (the stack probe only): a call of `s` bytes is kept with
//!   probability `min(1, s / R)` (`bpf_get_prandom_u32`: kept when `rand · R < s · 2^32`), so
//!   that a stack costs its 16 KiB copy about once per `R` bytes allocated. The size comes
//!   from the argument registers in `struct pt_regs` (x86_64: `di` at 112, `si` at 104, `dx`
//!   at 96); `calloc`'s is `di · si`.
//!
//! Each probe is one perf event per CPU and each event its own trace event, so the program runs
//! once per CPU-event on a hit, but only the event of the CPU that took the hit writes: its own
//! draw decides, and the draws are independent. Nothing here holds state across calls.
//!
//! The program and the map live as long as a perf event holds them: closing the events (any
//! exit of rprof, SIGKILL included) frees both.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Where the size argument of an allocator function is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeArg {
    /// `malloc(size)`, `valloc(size)`, `pvalloc(size)`: `di`.
    First,
    /// `realloc(ptr, size)`, `aligned_alloc(align, size)`, `memalign(align, size)`: `si`.
    Second,
    /// `posix_memalign(&ptr, align, size)`: `dx`.
    Third,
    /// `calloc(n, size)`: `di · si`.
    Product,
}

/// `struct pt_regs` offsets on x86_64 (arch/x86/include/asm/ptrace.h).
const PT_REGS_DX: i16 = 96;
const PT_REGS_SI: i16 = 104;
const PT_REGS_DI: i16 = 112;

// Instruction classes, operations and sources (include/uapi/linux/bpf.h, bpf_common.h).
const ALU64: u8 = 0x07;
const JMP: u8 = 0x05;
const LDX_MEM_DW: u8 = 0x79;
const STX_MEM_W: u8 = 0x63;
const LD_IMM64: u8 = 0x18;
const MOV: u8 = 0xb0;
const MUL: u8 = 0x20;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const ADD: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const JGE: u8 = 0x30;
const JLT: u8 = 0xa0;
const JA: u8 = 0x00;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const PSEUDO_MAP_FD: u8 = 1;

// Helpers.
const MAP_LOOKUP_ELEM: i32 = 1;
const GET_PRANDOM_U32: i32 = 7;
const GET_CURRENT_PID_TGID: i32 = 14;

/// One instruction: `code`, `dst`/`src` registers, `off`, `imm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

impl Insn {
    fn encode(self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.push((self.dst & 0xf) | (self.src << 4));
        out.extend_from_slice(&self.off.to_le_bytes());
        out.extend_from_slice(&self.imm.to_le_bytes());
    }
}

/// The largest sampling rate the program takes (its products stay below 2^63).
pub const MAX_SAMPLE_BYTES: u64 = (1 << 31) - 1;

/// The program: keep hits of the processes in map `map_fd`; with `sample = Some((arg, R))`,
/// keep those only with probability `min(1, size / R)`.
pub fn program(map_fd: i32, sample: Option<(SizeArg, u64)>) -> Vec<Insn> {
    let mut p = vec![
        insn(ALU64 | MOV | X, 6, 1, 0, 0), // r6 = ctx
        insn(JMP | CALL, 0, 0, 0, GET_CURRENT_PID_TGID),
        insn(ALU64 | RSH | K, 0, 0, 0, 32),          // r0 = tgid
        insn(STX_MEM_W, 10, 0, -4, 0),               // *(u32 *)(fp - 4) = r0
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd), // r1 = map
        insn(0, 0, 0, 0, 0),
        insn(ALU64 | MOV | X, 2, 10, 0, 0), // r2 = fp - 4
        insn(ALU64 | ADD | K, 2, 0, 0, -4),
        insn(JMP | CALL, 0, 0, 0, MAP_LOOKUP_ELEM),
    ];
    // `if r0 == 0 goto drop`, patched below.
    let to_drop_from_lookup = p.len();
    p.push(insn(JMP | JEQ | K, 0, 0, 0, 0));
    let mut to_keep = Vec::new();
    if let Some((arg, rate)) = sample {
        let rate = rate.clamp(1, MAX_SAMPLE_BYTES) as i32;
        let load = |off| insn(LDX_MEM_DW, 7, 6, off, 0);
        match arg {
            SizeArg::First => p.push(load(PT_REGS_DI)),
            SizeArg::Second => p.push(load(PT_REGS_SI)),
            SizeArg::Third => p.push(load(PT_REGS_DX)),
            SizeArg::Product => {
                p.push(load(PT_REGS_DI));
                p.push(insn(LDX_MEM_DW, 8, 6, PT_REGS_SI, 0));
                p.push(insn(ALU64 | MUL | X, 7, 8, 0, 0));
            }
        }
        // A size of 0 weighs as 1 byte.
        p.push(insn(JMP | JNE | K, 7, 0, 1, 0));
        p.push(insn(ALU64 | MOV | K, 7, 0, 0, 1));
        // size >= R: always.
        p.push(insn(ALU64 | MOV | K, 1, 0, 0, rate));
        to_keep.push(p.len());
        p.push(insn(JMP | JGE | X, 7, 1, 0, 0));
        // rand * R < size << 32: kept.
        p.push(insn(JMP | CALL, 0, 0, 0, GET_PRANDOM_U32));
        p.push(insn(ALU64 | MOV | K, 1, 0, 0, rate));
        p.push(insn(ALU64 | MUL | X, 0, 1, 0, 0));
        p.push(insn(ALU64 | LSH | K, 7, 0, 0, 32));
        to_keep.push(p.len());
        p.push(insn(JMP | JLT | X, 0, 7, 0, 0));
    } else {
        to_keep.push(p.len());
        #[allow(clippy::identity_op)]
        p.push(insn(JMP | JA, 0, 0, 0, 0)); // goto keep
    }
    let drop = p.len();
    p.push(insn(ALU64 | MOV | K, 0, 0, 0, 0));
    p.push(insn(JMP | EXIT, 0, 0, 0, 0));
    let keep = p.len();
    p.push(insn(ALU64 | MOV | K, 0, 0, 0, 1));
    p.push(insn(JMP | EXIT, 0, 0, 0, 0));
    let jump = |from: usize, to: usize| (to as i64 - from as i64 - 1) as i16;
    p[to_drop_from_lookup].off = jump(to_drop_from_lookup, drop);
    for at in to_keep {
        p[at].off = jump(at, keep);
    }
    p
}

fn bpf(cmd: i32, attr: &mut [u8; 128]) -> io::Result<i32> {
    // SAFETY: bpf(2) reads (and for some commands writes) the attribute union we pass, whose
    // size we give; unused bytes are zero as the kernel requires.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.as_mut_ptr(),
            attr.len() as libc::c_long,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

fn put(attr: &mut [u8; 128], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

fn fd(raw: i32) -> OwnedFd {
    // SAFETY: a descriptor bpf(2) just returned, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// The set of processes whose calls are recorded (a `BPF_MAP_TYPE_HASH`, u32 → u32).
pub struct Pids {
    map: OwnedFd,
}

/// How many processes the set holds at most (the target and what it forks).
pub const MAX_PIDS: u32 = 4096;

impl Pids {
    /// Creates the empty set.
    pub fn new() -> io::Result<Pids> {
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &1u32.to_ne_bytes()); // BPF_MAP_TYPE_HASH
        put(&mut attr, 4, &4u32.to_ne_bytes()); // key_size
        put(&mut attr, 8, &4u32.to_ne_bytes()); // value_size
        put(&mut attr, 12, &MAX_PIDS.to_ne_bytes()); // max_entries
        let raw = bpf(0, &mut attr)?; // BPF_MAP_CREATE
        Ok(Pids { map: fd(raw) })
    }

    /// Adds process `pid`.
    pub fn insert(&self, pid: u32) -> io::Result<()> {
        let key = pid;
        let value = 1u32;
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &(self.map.as_raw_fd() as u32).to_ne_bytes());
        put(&mut attr, 8, &(&key as *const u32 as u64).to_ne_bytes());
        put(&mut attr, 16, &(&value as *const u32 as u64).to_ne_bytes());
        bpf(2, &mut attr).map(|_| ()) // BPF_MAP_UPDATE_ELEM, BPF_ANY
    }

    /// The map's descriptor (for [`program`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
}

/// Loads `program` as a `BPF_PROG_TYPE_KPROBE` program; an error carries the verifier's log.
pub fn load(program: &[Insn]) -> Result<OwnedFd, String> {
    let mut code = Vec::with_capacity(program.len() * 8);
    for i in program {
        i.encode(&mut code);
    }
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &2u32.to_ne_bytes()); // BPF_PROG_TYPE_KPROBE
    put(&mut attr, 4, &(program.len() as u32).to_ne_bytes());
    put(&mut attr, 8, &(code.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 24, &1u32.to_ne_bytes()); // log_level
    put(&mut attr, 28, &(log.len() as u32).to_ne_bytes());
    put(&mut attr, 32, &(log.as_mut_ptr() as u64).to_ne_bytes());
    put(&mut attr, 48, PROGRAM_NAME.as_bytes());
    match bpf(5, &mut attr) {
        // BPF_PROG_LOAD
        Ok(raw) => Ok(fd(raw)),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(if last.is_empty() {
                e.to_string()
            } else {
                format!("{e} (verifier: {last})")
            })
        }
    }
}

/// Attaches `program` to the perf event `event` (a uprobe).
pub fn attach(event: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: SET_BPF on a perf event descriptor we own, with a program descriptor.
    let rc = unsafe {
        perf_event_open_sys::ioctls::SET_BPF(event.as_raw_fd(), program.as_raw_fd() as u32)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// How many BPF programs named `name` are loaded in the kernel (by any process): walks the
/// kernel's program ids (`BPF_PROG_GET_NEXT_ID`) and reads each one's name. Used to check that
/// nothing of rprof stays in the kernel after it exits.
pub fn programs_named(name: &str) -> io::Result<usize> {
    let mut count = 0;
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &id.to_ne_bytes());
        match bpf(11, &mut attr) {
            // BPF_PROG_GET_NEXT_ID
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(count),
            Err(e) => return Err(e),
        }
        id = u32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]);
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &id.to_ne_bytes());
        // BPF_PROG_GET_FD_BY_ID; a program freed meanwhile is skipped.
        let Ok(raw) = bpf(13, &mut attr) else {
            continue;
        };
        let prog = fd(raw);
        let mut info = [0u8; 96];
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &(prog.as_raw_fd() as u32).to_ne_bytes());
        put(&mut attr, 4, &(info.len() as u32).to_ne_bytes());
        put(&mut attr, 8, &(info.as_mut_ptr() as u64).to_ne_bytes());
        // BPF_OBJ_GET_INFO_BY_FD: struct bpf_prog_info, `name` at 64.
        if bpf(15, &mut attr).is_ok() {
            let raw_name = &info[64..80];
            let end = raw_name.iter().position(|&b| b == 0).unwrap_or(16);
            if &raw_name[..end] == name.as_bytes() {
                count += 1;
            }
        }
    }
}

/// The name rprof's programs are loaded under.
pub const PROGRAM_NAME: &str = "rprof_alloc";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_drop_and_keep() {
        let p = program(3, Some((SizeArg::Product, 512 * 1024)));
        let n = p.len();
        // The program ends with `r0 = 0; exit; r0 = 1; exit`.
        let (drop, keep) = (n - 4, n - 2);
        assert_eq!((p[drop].imm, p[keep].imm), (0, 1));
        assert_eq!(p[n - 1].code, JMP | EXIT);
        let target = |i: usize| (i as i64 + 1 + i64::from(p[i].off)) as usize;
        for (i, ins) in p.iter().enumerate() {
            let op = ins.code & 0xf0;
            if ins.code & 0x07 != JMP || op == CALL || op == EXIT {
                continue;
            }
            match op {
                JEQ => assert_eq!(target(i), drop, "the pid lookup fails to drop"),
                JGE | JLT => assert_eq!(target(i), keep, "the size test passes to keep"),
                // size 0 → 1: skips one instruction.
                JNE => assert_eq!(target(i), i + 2),
                _ => panic!("unexpected jump {ins:?}"),
            }
        }
        // The map is referenced through the pseudo map fd, one ld_imm64.
        assert_eq!(p.iter().filter(|i| i.code == LD_IMM64).count(), 1);
        let filter_only = program(3, None);
        assert!(filter_only.len() < p.len());
    }
}
