//! Fuzzes `Unwinder::unwind` with this process's real modules (their real CFI) and arbitrary
//! registers and stack bytes: it must never panic, and must keep its output promises.
//!
//! Input layout: 8 bytes selector/ip, 8 bytes offset, 8 bytes bp delta, 1 byte flags, then the
//! stack copy.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use rprof_unwind::{parse_proc_maps, Mapping, Mode, Regs, Unwinder, MAX_FRAMES};

const PID: u32 = 1;
const STACK: u64 = 0x7ffc_0000_0000;

struct State {
    unwinder: Unwinder,
    code: Vec<Mapping>,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut unwinder = Unwinder::new();
        let mut code = Vec::new();
        for m in parse_proc_maps(&maps) {
            if m.executable {
                code.push(m.clone());
            }
            unwinder.add_mapping(PID, m);
        }
        Mutex::new(State { unwinder, code })
    })
}

/// The unwinder catches panics of the code it builds on (framehop does some unchecked
/// arithmetic on malformed CFI) and turns them into `Outcome::Failed`; libfuzzer-sys aborts on
/// any panic, caught or not. Unless RPROF_FUZZ_STRICT is set, only panics that escape the
/// unwinder (libfuzzer-sys still aborts on those) count as crashes.
fn tolerate_caught_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("RPROF_FUZZ_STRICT").is_none() {
            std::panic::set_hook(Box::new(|info| eprintln!("caught: {info}")));
        }
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_caught_panics();
    if data.len() < 25 {
        return;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&data[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let flags = data[24];
    let stack = &data[25..];
    let mut guard = state().lock().unwrap_or_else(|e| e.into_inner());
    let st = &mut *guard;
    let ip = if flags & 1 != 0 && !st.code.is_empty() {
        let m = &st.code[(word(0) % st.code.len() as u64) as usize];
        m.start + word(1) % (m.end - m.start)
    } else {
        word(0)
    };
    let sp = if flags & 2 != 0 { word(1) } else { STACK };
    let bp = if flags & 4 != 0 {
        word(2)
    } else {
        sp.wrapping_add(word(2) % 4096)
    };
    let mode = if flags & 8 != 0 {
        Mode::FramePointer
    } else {
        Mode::Dwarf
    };
    let mut frames = Vec::new();
    let _ = st
        .unwinder
        .unwind(PID, Regs { ip, sp, bp }, stack, mode, &mut frames);
    assert!(!frames.is_empty() && frames.len() <= MAX_FRAMES);
    assert_eq!(frames[0].avma, ip);
});
