//! Frame-pointer unwinding: follows the chain of saved rbp values through the copied stack.

use crate::address_space::Process;
use crate::module_cache::Modules;
use crate::stack::StackCopy;
use crate::{Frame, Outcome, Regs, MAX_FRAMES};

/// The frame for `avma` in `process`, or an unknown-module frame.
fn frame_at(process: &mut Process, modules: &mut Modules, avma: u64, lookup: u64) -> Frame {
    process.frame(modules, avma, lookup).unwrap_or(Frame {
        module: None,
        address: avma,
        avma,
    })
}

pub(crate) fn unwind_frame_pointers(
    process: &mut Process,
    known: bool,
    modules: &mut Modules,
    regs: Regs,
    stack: &StackCopy<'_>,
    out: &mut Vec<Frame>,
) -> Outcome {
    let first = out.len();
    out.push(frame_at(process, modules, regs.ip, regs.ip));
    let (mut sp, mut bp) = (regs.sp, regs.bp);
    loop {
        if bp == 0 {
            return Outcome::Complete;
        }
        if bp < sp {
            return Outcome::Failed(format!(
                "frame pointer {bp:#x} is below the stack pointer {sp:#x}"
            ));
        }
        let Some(ra_slot) = bp.checked_add(8) else {
            return Outcome::Failed(format!("frame pointer {bp:#x} overflows"));
        };
        let (saved_bp, return_address) = match (stack.read(bp), stack.read(ra_slot)) {
            (Some(b), Some(r)) => (b, r),
            _ if stack.needs_more(bp) || stack.needs_more(ra_slot) => return Outcome::Truncated,
            _ => {
                return Outcome::Failed(format!(
                    "frame pointer {bp:#x} is outside the copied stack {:#x}..{:#x}",
                    stack.sp, stack.end
                ))
            }
        };
        if return_address == 0 {
            return Outcome::Complete;
        }
        let frame = frame_at(process, modules, return_address, return_address - 1);
        if known && frame.module.is_none() {
            return Outcome::Failed(format!(
                "return address {return_address:#x} is outside every executable mapping"
            ));
        }
        out.push(frame);
        if out.len() - first >= MAX_FRAMES {
            return Outcome::Failed(format!("more than {MAX_FRAMES} frames"));
        }
        sp = ra_slot.saturating_add(8);
        bp = saved_bp;
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{anon, fp_stack, PID};
    use crate::{Mode, ModuleKind, Outcome, Regs, Unwinder};

    #[test]
    fn frame_pointers_through_anonymous_code() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let (regs, stack) = fp_stack(0x7ff0_0000, 0x10_0010, &[0x10_0100, 0x10_0200, 0x10_0300]);
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            let mut frames = Vec::new();
            let outcome = u.unwind(PID, regs, &stack, mode, &mut frames);
            assert_eq!(outcome, Outcome::Complete, "{mode:?}");
            let avmas: Vec<u64> = frames.iter().map(|f| f.avma).collect();
            assert_eq!(
                avmas,
                [0x10_0010, 0x10_0100, 0x10_0200, 0x10_0300],
                "{mode:?}"
            );
            // Anonymous memory: the address is the process address.
            assert!(frames.iter().all(|f| f.address == f.avma));
            let m = frames[0].module.unwrap();
            assert_eq!(u.modules()[m.0 as usize].kind, ModuleKind::Anonymous);
            assert_eq!(u.modules()[m.0 as usize].path, "//anon");
        }
    }

    #[test]
    fn short_copy_is_truncated_not_failed() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let (regs, stack) = fp_stack(0x7ff0_0000, 0x10_0010, &[0x10_0100, 0x10_0200, 0x10_0300]);
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            let mut frames = Vec::new();
            let outcome = u.unwind(PID, regs, &stack[..64], mode, &mut frames);
            assert_eq!(outcome, Outcome::Truncated, "{mode:?}");
            assert_eq!(
                frames.len(),
                2,
                "{mode:?}: the frames before the cut are kept"
            );
        }
    }

    #[test]
    fn garbage_frame_pointers_fail() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let sp = 0x7ff0_0000u64;
        // bp points below sp.
        let regs = Regs {
            ip: 0x10_0010,
            sp,
            bp: sp - 64,
        };
        let stack = vec![0u8; 256];
        let mut frames = Vec::new();
        let outcome = u.unwind(PID, regs, &stack, Mode::FramePointer, &mut frames);
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
        // A frame-pointer loop: [bp] = bp.
        let mut stack = vec![0u8; 256];
        stack[..8].copy_from_slice(&sp.to_le_bytes());
        stack[8..16].copy_from_slice(&0x10_0100u64.to_le_bytes());
        let regs = Regs {
            ip: 0x10_0010,
            sp,
            bp: sp,
        };
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            frames.clear();
            let outcome = u.unwind(PID, regs, &stack, mode, &mut frames);
            assert!(
                matches!(outcome, Outcome::Failed(_)),
                "{mode:?} {outcome:?}"
            );
            assert!(frames.len() <= 3);
        }
        // A return address outside every mapping stops the walk.
        stack[8..16].copy_from_slice(&0x5000u64.to_le_bytes());
        stack[..8].copy_from_slice(&(sp + 64).to_le_bytes());
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            frames.clear();
            let outcome = u.unwind(PID, regs, &stack, mode, &mut frames);
            assert!(
                matches!(outcome, Outcome::Failed(ref m) if m.contains("outside")),
                "{outcome:?}"
            );
            assert_eq!(frames.len(), 1);
        }
    }
}
