//! Unwinding real register/stack snapshots taken by `fixtures/unwind_snapshot.c` (built here
//! with gcc -O2 -fomit-frame-pointer, PIE and non-PIE, with a shared library), checked against
//! the call paths the fixture is known to have, named through the ELF symbol tables.

mod common;

use std::path::Path;

use common::{debug_frame_only, non_pie, pie, take, unwinder_for, Names, PID};
use rprof_unwind::{Frame, Mode, ModuleKind, Outcome};

/// The frames from `capture_leaf` up to `main`, and what follows main.
fn path_to_main(names: &[String]) -> (&[String], &[String]) {
    let main = names
        .iter()
        .position(|n| n == "main")
        .unwrap_or_else(|| panic!("main not reached: {names:?}"));
    names.split_at(main + 1)
}

fn unwind_one(dir: &Path, mode: &str, max: usize) -> (Vec<String>, Outcome, Vec<Frame>) {
    let (snaps, maps) = take(dir, mode, max, 1);
    assert_eq!(snaps.len(), 1);
    let mut u = unwinder_for(&maps);
    let mut frames = Vec::new();
    let s = &snaps[0];
    let outcome = u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
    let names = Names::default().names(&u, &frames);
    (names, outcome, frames)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn chain_pie_unwinds_exactly_to_start() {
    let (names, outcome, _) = unwind_one(pie(), "chain", 65536);
    let (to_main, after) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "chain_c", "chain_b", "chain_a", "main"]
    );
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
    assert_eq!(
        after.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
}

#[test]
fn chain_non_pie_unwinds_exactly_to_start() {
    let (names, outcome, frames) = unwind_one(non_pie(), "chain", 65536);
    let (to_main, after) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "chain_c", "chain_b", "chain_a", "main"]
    );
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
    assert_eq!(after.last().map(String::as_str), Some("_start"));
    // Non-PIE: the address in the file is the process address.
    assert_eq!(frames[0].address, frames[0].avma);
}

#[test]
fn thread_stack_ends_at_the_thread_start() {
    let (names, outcome, _) = unwind_one(pie(), "thread", 65536);
    assert_eq!(
        strs(&names[..5]),
        [
            "capture_leaf",
            "chain_c",
            "chain_b",
            "chain_a",
            "thread_main"
        ],
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n == "main"), "{names:?}");
    // glibc marks the thread's outermost frame (clone3) as the end of the stack.
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
    assert!(names.len() <= 8, "{names:?}");
}

#[test]
fn through_a_signal_frame() {
    let (names, outcome, _) = unwind_one(pie(), "signal", 65536);
    let (to_main, _) = path_to_main(&names);
    let ours: Vec<&str> = to_main
        .iter()
        .map(String::as_str)
        .filter(|n| ["capture_leaf", "on_usr1", "sig_chain", "main"].contains(n))
        .collect();
    assert_eq!(
        ours,
        ["capture_leaf", "on_usr1", "sig_chain", "main"],
        "{names:?}"
    );
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
}

#[test]
fn chain_with_cfi_in_debug_frame_only() {
    let (names, outcome, _) = unwind_one(debug_frame_only(), "chain", 65536);
    let (to_main, _) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "chain_c", "chain_b", "chain_a", "main"]
    );
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
}

#[test]
fn through_a_shared_library() {
    let (names, outcome, frames) = unwind_one(pie(), "lib", 65536);
    let (to_main, _) = path_to_main(&names);
    assert_eq!(
        strs(to_main),
        ["capture_leaf", "lib_inner", "lib_outer", "via_lib", "main"]
    );
    assert_eq!(outcome, Outcome::Complete);
    // The library frames are attributed to the library with addresses as in the file.
    assert!(frames[1].address < 0x10_0000 && frames[1].avma > 0x7000_0000_0000);
}

#[test]
fn deep_recursion_reaches_main_with_64k() {
    let (names, outcome, _) = unwind_one(pie(), "deep", 65536);
    let (to_main, _) = path_to_main(&names);
    assert_eq!(to_main.len(), 1 + 301 + 1, "{names:?}");
    assert_eq!(to_main[0], "capture_leaf");
    assert!(to_main[1..302].iter().all(|n| n == "deep"));
    assert_eq!(outcome, Outcome::Complete);
}

#[test]
fn short_copy_is_truncated_with_the_frames_found() {
    let (snaps, maps) = take(pie(), "deep", 65536, 1);
    let s = &snaps[0];
    let mut u = unwinder_for(&maps);
    let mut names = Names::default();
    let mut frames = Vec::new();
    let outcome = u.unwind(PID, s.regs, &[], Mode::Dwarf, &mut frames);
    assert!(
        matches!(outcome, Outcome::Failed(_)),
        "no stack at all is not a short copy: {outcome:?}"
    );
    assert_eq!(frames.len(), 1);
    for cut in [8usize, 100, 1000, 4096, 8192, 20000] {
        let mut frames = Vec::new();
        let outcome = u.unwind(PID, s.regs, &s.stack[..cut], Mode::Dwarf, &mut frames);
        assert_eq!(outcome, Outcome::Truncated, "cut at {cut}");
        let n = names.names(&u, &frames);
        assert_eq!(n[0], "capture_leaf");
        assert!(n[1..].iter().all(|f| f == "deep"), "cut {cut}: {n:?}");
        // Each deep frame is 128 bytes: the copy holds about cut/128 of them.
        assert!(
            frames.len() + 2 >= cut / 128,
            "cut {cut}: {} frames",
            frames.len()
        );
    }
}

#[test]
fn frame_pointer_mode_does_not_invent_frames() {
    // Built without frame pointers, rbp is a general register: frame-pointer unwinding must
    // stop (failed or truncated), not run away, and start with the instruction pointer.
    let (snaps, maps) = take(pie(), "chain", 65536, 1);
    let mut u = unwinder_for(&maps);
    let mut frames = Vec::new();
    let s = &snaps[0];
    let _ = u.unwind(PID, s.regs, &s.stack, Mode::FramePointer, &mut frames);
    assert_eq!(frames[0].avma, s.regs.ip);
    assert!(frames.len() < 64);
}

#[test]
fn sampled_stacks_unwind_to_main_from_anywhere() {
    for dir in [pie(), non_pie(), debug_frame_only()] {
        let (snaps, maps) = take(dir, "sample", 65536, 150);
        assert!(snaps.len() >= 100, "only {} samples", snaps.len());
        let mut u = unwinder_for(&maps);
        let mut names = Names::default();
        let mut vdso_leaves = 0;
        let mut lib_leaves = 0;
        let mut complete = 0;
        for s in &snaps {
            let mut frames = Vec::new();
            let outcome = u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
            let n = names.names(&u, &frames);
            if outcome == Outcome::Complete {
                complete += 1;
            }
            let expected: &[&str] = match s.phase {
                1 => &["work_leaf", "work_mid", "work_outer", "main"],
                2 => &["work_vdso", "main"],
                3 => &["lib_spin", "work_lib", "main"],
                _ => &["main"],
            };
            let (to_main, _) = path_to_main(&n);
            // Frames of fixture functions on the way to main, which must end the expected
            // path (the leaf may be below the hottest function, e.g. in clock_gettime).
            let ours: Vec<&str> = to_main
                .iter()
                .map(String::as_str)
                .filter(|f| {
                    ["work_", "lib_spin", "main"]
                        .iter()
                        .any(|p| f.starts_with(p))
                })
                .collect();
            assert!(
                expected.ends_with(&ours),
                "phase {}: {n:?} (expected a suffix of {expected:?})",
                s.phase
            );
            if s.phase == 2
                && u.modules()[frames[0].module.unwrap().0 as usize].kind == ModuleKind::Vdso
            {
                vdso_leaves += 1;
                assert_eq!(ours, ["work_vdso", "main"], "{n:?}");
            }
            if n[0] == "lib_spin" {
                lib_leaves += 1;
            }
        }
        assert_eq!(complete, snaps.len(), "every sample reaches _start");
        assert!(vdso_leaves > 0, "some samples were taken in the vDSO");
        assert!(lib_leaves > 0, "some samples were taken in the library");
    }
}
