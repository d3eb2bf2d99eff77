//! DWARF CFI unwinding through framehop (which falls back to frame pointers where a function
//! has no CFI), stepping over signal frames by reading the interrupted registers from the
//! kernel's `ucontext`, with loop, depth and stack-pointer checks and a guard around framehop.

use std::cell::Cell;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::{FrameAddress, Unwinder as _};

use crate::address_space::Process;
use crate::module_cache::Modules;
use crate::stack::StackCopy;
use crate::{Frame, Outcome, Regs, MAX_FRAMES};

/// User-space addresses are below this (x86-64 with 5-level paging: 2^56).
const USER_SPACE_END: u64 = 1 << 56;

pub(crate) fn unwind_dwarf(
    process: &mut Process,
    known: bool,
    modules: &mut Modules,
    cache: &mut CacheX86_64,
    regs: Regs,
    stack: &StackCopy<'_>,
    out: &mut Vec<Frame>,
) -> Outcome {
    let first = out.len();
    let short = Cell::new(false);
    let mut read_stack = |addr: u64| -> Result<u64, ()> {
        stack.read(addr).ok_or_else(|| {
            if stack.needs_more(addr) {
                short.set(true);
            }
        })
    };
    let mut fh_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
    let mut address = FrameAddress::from_instruction_pointer(regs.ip);
    loop {
        let lookup = address.address_for_lookup();
        let (frame, trampoline) = process
            .frame_and_trampoline(modules, address.address(), lookup)
            .unwrap_or((
                Frame {
                    module: None,
                    address: address.address(),
                    avma: address.address(),
                },
                false,
            ));
        if known && frame.module.is_none() && address.is_return_address() {
            return Outcome::Failed(format!(
                "return address {:#x} is outside every executable mapping",
                frame.avma
            ));
        }
        out.push(frame);
        if out.len() - first >= MAX_FRAMES {
            return Outcome::Failed(format!("more than {MAX_FRAMES} frames"));
        }
        if trampoline && address.is_return_address() {
            match step_over_signal_frame(stack, fh_regs.sp()) {
                Ok((ip, sp, bp)) => {
                    fh_regs = UnwindRegsX86_64::new(ip, sp, bp);
                    address = FrameAddress::from_instruction_pointer(ip);
                    continue;
                }
                Err(outcome) => return outcome,
            }
        }
        short.set(false);
        let sp = fh_regs.sp();
        if !(16..USER_SPACE_END).contains(&sp) {
            // framehop computes `cfa - 8` unchecked, and a CFA expression such as the PLT's
            // (rsp + 8 + ...) wraps around near 2^64; no user stack is there anyway.
            return Outcome::Failed(format!(
                "stack pointer {sp:#x} is not a user-space stack address"
            ));
        }
        // framehop and gimli are careful with malformed CFI, but a few of their arithmetic
        // operations are unchecked (overflow panics in debug builds): a malformed file must
        // not take the profiler down with it.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process
                .framehop
                .unwind_frame(address, &mut fh_regs, cache, &mut read_stack)
        }));
        let Ok(step) = step else {
            *cache = CacheX86_64::new();
            return Outcome::Failed(format!(
                "the unwinder choked on the unwind information at {:#x}",
                address.address()
            ));
        };
        if short.get() {
            // A read past the copy failed during this step (framehop may have fallen back to
            // frame pointers after it): the rest of the stack is not in the sample.
            return Outcome::Truncated;
        }
        match step {
            Ok(Some(return_address)) => {
                if fh_regs.sp() <= sp {
                    return Outcome::Failed(format!(
                        "stack pointer did not move up at {:#x}",
                        address.address()
                    ));
                }
                match FrameAddress::from_return_address(return_address) {
                    Some(next) => address = next,
                    None => return Outcome::Complete,
                }
            }
            Ok(None) => return Outcome::Complete,
            Err(framehop::Error::CouldNotReadStack(at)) => {
                return Outcome::Failed(format!(
                    "cannot read stack at {at:#x}, outside the copied {:#x}..{:#x}",
                    stack.sp, stack.end
                ))
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
}

/// Offsets in the kernel's x86-64 `ucontext_t` (which a signal handler's return address sits
/// right below) of the interrupted rip, rsp and rbp: `uc_mcontext.gregs` starts at 40, and
/// REG_RIP, REG_RSP, REG_RBP are its registers 16, 15 and 10.
const UC_RIP: u64 = 40 + 16 * 8;
const UC_RSP: u64 = 40 + 15 * 8;
const UC_RBP: u64 = 40 + 10 * 8;

/// The interrupted registers (ip, sp, bp) saved in the signal frame at `ucontext`.
fn step_over_signal_frame(
    stack: &StackCopy<'_>,
    ucontext: u64,
) -> Result<(u64, u64, u64), Outcome> {
    let read = |offset: u64| -> Result<u64, Outcome> {
        let at = ucontext
            .checked_add(offset)
            .ok_or_else(|| Outcome::Failed("signal frame address overflows".to_string()))?;
        stack.read(at).ok_or_else(|| {
            if stack.needs_more(at) {
                Outcome::Truncated
            } else {
                Outcome::Failed(format!("cannot read the signal frame at {at:#x}"))
            }
        })
    };
    let (ip, sp, bp) = (read(UC_RIP)?, read(UC_RSP)?, read(UC_RBP)?);
    if sp <= ucontext {
        // On an alternate signal stack the interrupted stack is elsewhere, not in the copy.
        return Err(Outcome::Failed(format!(
            "the stack interrupted by a signal ({sp:#x}) is not above the signal frame"
        )));
    }
    Ok((ip, sp, bp))
}
