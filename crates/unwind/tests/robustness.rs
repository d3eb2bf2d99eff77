//! Malformed input must give short or failed results, never a panic: corrupt unwind sections,
//! truncated files, mutated stacks and registers, random mapping tables (a seeded fuzz loop).
//! Also an ignored throughput benchmark (`cargo test -p rprof-unwind --release -- --ignored`).

mod common;

use std::path::Path;
use std::time::Instant;

use common::{pie, take, unwinder_for, Names, Snap, PID};
use object::{Object, ObjectSection};
use rprof_unwind::{parse_proc_maps, Mapping, Mode, Outcome, Regs, Unwinder, MAX_FRAMES};

/// xorshift64*: deterministic pseudo-random numbers for the fuzz loops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn check(u: &mut Unwinder, pid: u32, regs: Regs, stack: &[u8], mode: Mode) -> Outcome {
    let mut frames = Vec::new();
    let outcome = u.unwind(pid, regs, stack, mode, &mut frames);
    assert!(!frames.is_empty() && frames.len() <= MAX_FRAMES);
    assert_eq!(frames[0].avma, regs.ip);
    for f in &frames {
        if let Some(m) = f.module {
            assert!((m.0 as usize) < u.modules().len());
        }
    }
    outcome
}

/// The fixture's maps with its executable replaced by `exe_copy`.
fn maps_with_copy(maps: &str, exe: &Path, exe_copy: &Path) -> Vec<Mapping> {
    let exe = exe.to_str().unwrap();
    parse_proc_maps(maps)
        .into_iter()
        .map(|mut m| {
            if m.path == exe {
                m.path = exe_copy.to_str().unwrap().to_string();
                m.inode = 0;
            }
            m
        })
        .collect()
}

#[test]
fn corrupt_unwind_sections_and_files_do_not_panic() {
    let dir = pie();
    let exe = dir.join("snap");
    let (snaps, maps) = take(dir, "chain", 65536, 1);
    let s = &snaps[0];
    let original = std::fs::read(&exe).unwrap();
    let sections: Vec<(String, usize, usize)> = {
        let file = object::File::parse(&*original).unwrap();
        [".eh_frame", ".eh_frame_hdr"]
            .iter()
            .map(|name| {
                let sec = file.section_by_name(name).unwrap();
                let (off, len) = sec.file_range().unwrap();
                (name.to_string(), off as usize, len as usize)
            })
            .collect()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_0001);
    let mut variant = 0;
    let mut try_bytes = |bytes: &[u8], what: &str| {
        variant += 1;
        let copy = tmp.path().join(format!("snap-{variant}"));
        std::fs::write(&copy, bytes).unwrap();
        let mut u = Unwinder::new();
        for m in maps_with_copy(&maps, &exe, &copy) {
            u.add_mapping(PID, m);
        }
        for mode in [Mode::Dwarf, Mode::FramePointer] {
            let _ = check(&mut u, PID, s.regs, &s.stack, mode);
        }
        let _ = what;
    };
    for (name, off, len) in &sections {
        // Entirely random bytes.
        let mut bytes = original.clone();
        for b in &mut bytes[*off..off + len] {
            *b = rng.next() as u8;
        }
        try_bytes(&bytes, name);
        // A few flipped bytes, many times.
        for _ in 0..40 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(8) {
                let at = off + rng.below(*len as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            try_bytes(&bytes, name);
        }
        // Zeroed (length 0 entries, terminators).
        let mut bytes = original.clone();
        bytes[*off..off + len].fill(0);
        try_bytes(&bytes, name);
        // All ones (huge lengths, 64-bit DWARF escapes).
        let mut bytes = original.clone();
        bytes[*off..off + len].fill(0xff);
        try_bytes(&bytes, name);
    }
    // Truncated files, and not an ELF file at all.
    for cut in [0, 4, 64, 1000, 4096, original.len() / 2, original.len() - 1] {
        try_bytes(&original[..cut], "truncated");
    }
    try_bytes(b"#!/bin/sh\necho not elf\n", "script");
}

#[test]
fn plt_with_a_stack_pointer_near_the_top_does_not_overflow() {
    // Found by the cargo-fuzz target: the PLT's CFA expression (rsp + 8 + ...) wrapped around
    // 2^64 and framehop subtracted 8 from the result.
    let dir = pie();
    let exe = dir.join("snap");
    let (_, maps) = take(dir, "chain", 65536, 1);
    let data = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let plt = file.section_by_name(".plt").unwrap().address();
    let text = parse_proc_maps(&maps)
        .into_iter()
        .find(|m| m.executable && Path::new(&m.path) == exe)
        .unwrap();
    let mut u = unwinder_for(&maps);
    let base = u.locate(PID, text.start).avma - u.locate(PID, text.start).address;
    for sp in [u64::MAX - 8, u64::MAX - 15, 1 << 63, (1 << 56) - 8, 0, 8] {
        for offset in [0, 6, 0x10, 0x16, 0x1b, 0x1c, 0x2b] {
            let regs = Regs {
                ip: base + plt + offset,
                sp,
                bp: 0,
            };
            let outcome = check(&mut u, PID, regs, &[0xff; 32], Mode::Dwarf);
            // Failed, and not by the last-resort catch of a panic inside framehop.
            assert!(
                matches!(outcome, Outcome::Failed(ref m) if !m.contains("choked")),
                "{outcome:?}"
            );
        }
    }
}

#[test]
fn corrupt_header_still_unwinds_with_eh_frame() {
    // A damaged .eh_frame_hdr (no search table) must not cost us the CFI: the unwinder leaves
    // it out and framehop indexes .eh_frame itself.
    let dir = pie();
    let exe = dir.join("snap");
    let (snaps, maps) = take(dir, "chain", 65536, 1);
    let s = &snaps[0];
    let mut bytes = std::fs::read(&exe).unwrap();
    let (off, len) = {
        let file = object::File::parse(&*bytes).unwrap();
        let sec = file.section_by_name(".eh_frame_hdr").unwrap();
        let (off, len) = sec.file_range().unwrap();
        (off as usize, len as usize)
    };
    // version 1, eh_frame_ptr encoding ok, fde_count encoding and table encoding = omit.
    bytes[off + 2] = 0xff;
    bytes[off + 3] = 0xff;
    bytes[off + 8..off + len].fill(0);
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("snap-nohdr");
    std::fs::write(&copy, &bytes).unwrap();
    let mut u = Unwinder::new();
    for m in maps_with_copy(&maps, &exe, &copy) {
        u.add_mapping(PID, m);
    }
    let mut frames = Vec::new();
    let outcome = u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
    let names = Names::default().names(&u, &frames);
    assert_eq!(outcome, Outcome::Complete, "{names:?}");
    assert!(names.iter().any(|n| n == "main"), "{names:?}");
    assert_eq!(
        names[..5],
        ["capture_leaf", "chain_c", "chain_b", "chain_a", "main"]
    );
}

#[test]
fn fuzz_mutated_snapshots_and_random_inputs() {
    let dir = pie();
    let (snaps, maps) = take(dir, "sample", 16384, 40);
    let mappings = parse_proc_maps(&maps);
    let code: Vec<&Mapping> = mappings.iter().filter(|m| m.executable).collect();
    let mut u = unwinder_for(&maps);
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    let mut outcomes = [0usize; 3];
    for round in 0..3000 {
        let s: &Snap = &snaps[rng.below(snaps.len() as u64) as usize];
        let mut regs = s.regs;
        let mut stack = s.stack.clone();
        match rng.below(6) {
            0 => {
                // Overwrite some stack words with code addresses or random values.
                for _ in 0..1 + rng.below(16) {
                    if stack.len() < 8 {
                        break;
                    }
                    let at = (rng.below((stack.len() / 8) as u64) * 8) as usize;
                    let value = if rng.below(2) == 0 {
                        let m = code[rng.below(code.len() as u64) as usize];
                        m.start + rng.below(m.end - m.start)
                    } else {
                        rng.next()
                    };
                    stack[at..at + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
            1 => {
                let cut = rng.below(stack.len() as u64 + 1) as usize;
                stack.truncate(cut);
            }
            2 => {
                regs.bp = if rng.below(2) == 0 {
                    rng.next()
                } else {
                    regs.sp.wrapping_add(rng.below(4096))
                };
                regs.sp = regs.sp.wrapping_add(rng.below(64)).wrapping_sub(32);
            }
            3 => {
                let m = code[rng.below(code.len() as u64) as usize];
                regs.ip = m.start + rng.below(m.end - m.start);
            }
            4 => {
                for b in stack.iter_mut() {
                    *b = rng.next() as u8;
                }
                regs.ip = rng.next();
            }
            _ => {
                // Byte-level noise.
                for _ in 0..rng.below(64) {
                    if stack.is_empty() {
                        break;
                    }
                    let at = rng.below(stack.len() as u64) as usize;
                    stack[at] ^= 1 << rng.below(8);
                }
            }
        }
        let mode = if round % 4 == 0 {
            Mode::FramePointer
        } else {
            Mode::Dwarf
        };
        match check(&mut u, PID, regs, &stack, mode) {
            Outcome::Complete => outcomes[0] += 1,
            Outcome::Truncated => outcomes[1] += 1,
            Outcome::Failed(_) => outcomes[2] += 1,
        }
    }
    // The loop must have exercised every ending.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

#[test]
fn fuzz_random_mapping_tables() {
    let dir = pie();
    let (snaps, maps) = take(dir, "chain", 65536, 1);
    let s = &snaps[0];
    let real = parse_proc_maps(&maps);
    let mut rng = Rng(0xfeed_beef);
    let mut u = Unwinder::new();
    let pids = [PID, PID + 1, PID + 2];
    for _ in 0..2000 {
        let pid = pids[rng.below(3) as usize];
        match rng.below(10) {
            0..=3 => {
                let mut m = real[rng.below(real.len() as u64) as usize].clone();
                if rng.below(3) == 0 {
                    let shift = rng.below(1 << 20) * 4096;
                    m.start = m.start.wrapping_add(shift);
                    m.end = m.end.wrapping_add(shift);
                }
                if rng.below(4) == 0 {
                    m.pgoff = rng.below(1 << 24);
                }
                if rng.below(8) == 0 {
                    m.build_id = Some(vec![rng.next() as u8; 20]);
                }
                u.add_mapping(pid, m);
            }
            4 => {
                let start = rng.next();
                u.add_mapping(
                    pid,
                    Mapping {
                        start,
                        end: start.saturating_add(rng.below(1 << 30)),
                        pgoff: rng.next(),
                        path: ["", "[vdso]", "/nonexistent", "//anon", "/proc/self/exe"]
                            [rng.below(5) as usize]
                            .to_string(),
                        build_id: None,
                        inode: rng.below(3),
                        executable: rng.below(2) == 0,
                    },
                );
            }
            5 => u.fork(pid, pids[rng.below(3) as usize]),
            6 => u.exec(pid),
            7 => u.exit(pid),
            _ => {
                let mode = if rng.below(2) == 0 {
                    Mode::Dwarf
                } else {
                    Mode::FramePointer
                };
                let _ = check(&mut u, pid, s.regs, &s.stack, mode);
                let _ = u.locate(pid, rng.next());
            }
        }
    }
}

/// Post-processing speed: unwinding real samples (DWARF, 16 KiB stacks) with warm caches.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_unwind_throughput() {
    let dir = pie();
    let (snaps, maps) = take(dir, "sample", 16384, 300);
    let (deep, deep_maps) = take(dir, "deep", 65536, 1);
    let mut u = unwinder_for(&maps);
    let mut frames = Vec::new();
    for s in &snaps {
        frames.clear();
        u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
    }
    let rounds = 200;
    let started = Instant::now();
    let mut total_frames = 0;
    for _ in 0..rounds {
        for s in &snaps {
            frames.clear();
            u.unwind(PID, s.regs, &s.stack, Mode::Dwarf, &mut frames);
            total_frames += frames.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = rounds * snaps.len();
    println!(
        "unwind: {n} samples, {total_frames} frames in {secs:.3}s: {:.0} samples/s, {:.0} frames/s; cache (hits, misses) {:?}",
        n as f64 / secs,
        total_frames as f64 / secs,
        u.cache_stats()
    );
    let mut u = unwinder_for(&deep_maps);
    frames.clear();
    let outcome = u.unwind(PID, deep[0].regs, &deep[0].stack, Mode::Dwarf, &mut frames);
    assert_eq!(outcome, Outcome::Complete);
    let deep_frames = frames.len();
    let started = Instant::now();
    for _ in 0..2000 {
        frames.clear();
        u.unwind(PID, deep[0].regs, &deep[0].stack, Mode::Dwarf, &mut frames);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "deep ({deep_frames} frames): {:.0} samples/s",
        2000.0 / secs
    );
    // Cold start: a fresh unwinder reads the modules on first use.
    let started = Instant::now();
    let mut cold = unwinder_for(&maps);
    frames.clear();
    cold.unwind(
        PID,
        snaps[0].regs,
        &snaps[0].stack,
        Mode::Dwarf,
        &mut frames,
    );
    println!("first sample with cold modules: {:?}", started.elapsed());
}

#[test]
fn deleted_executable_of_a_live_process_is_read_through_map_files() {
    // Reading /proc/PID/map_files needs CAP_SYS_ADMIN (rprof runs as root to profile others).
    let own_maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let first = parse_proc_maps(&own_maps).into_iter().next().unwrap();
    let probe = format!("/proc/self/map_files/{:x}-{:x}", first.start, first.end);
    if std::fs::File::open(&probe).is_err() {
        rprof_testkit::skip(&format!(
            "cannot open {probe}: needs root (CI runs as root)"
        ));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sleep-copy");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
    let pid = child.id();
    // Wait until the copy is mapped (exec done): up to 30 s, as an exec on a loaded machine can
    // take longer than the 2 s this waited before (issue 10).
    let path = exe.to_str().unwrap().to_string();
    for _ in 0..3000 {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if maps.contains(&path) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::remove_file(&exe).unwrap();
    let mut u = Unwinder::new();
    u.load_proc_maps(pid).unwrap();
    let maps = parse_proc_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap());
    let _ = child.kill();
    let _ = child.wait();
    let text = maps
        .iter()
        .find(|m| m.executable && m.path.starts_with(&path))
        .expect("the deleted copy's code mapping");
    assert!(text.path.ends_with(" (deleted)"), "{}", text.path);
    let f = u.locate(pid, text.start);
    let m = f.module.unwrap();
    assert_eq!(u.modules()[m.0 as usize].path, text.path);
    assert!(u.load_error(m).is_none(), "{:?}", u.load_error(m));
    assert!(u.modules()[m.0 as usize].build_id.is_some());
    // The SVMA comes from the file's segments: for a PIE text segment it equals the offset.
    assert_eq!(f.address, text.pgoff);
}
