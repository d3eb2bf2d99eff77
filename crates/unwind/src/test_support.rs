//! Made-up mappings and frame-pointer stacks for the unit tests.

use crate::{Mapping, Regs};

/// A pid no real process has (pids are at most 2^22), so no /tmp/perf-PID.map exists.
pub(crate) const PID: u32 = 3_999_999_001;

pub(crate) fn anon(start: u64, end: u64) -> Mapping {
    Mapping {
        start,
        end,
        path: "//anon".to_string(),
        executable: true,
        ..Default::default()
    }
}

pub(crate) fn file(start: u64, end: u64, pgoff: u64, path: &str) -> Mapping {
    Mapping {
        start,
        end,
        pgoff,
        path: path.to_string(),
        inode: 77,
        executable: true,
        ..Default::default()
    }
}

/// A stack at `sp` holding a frame-pointer chain through `return_addresses`, the last frame
/// pointing to 0. Returns (regs, bytes).
pub(crate) fn fp_stack(sp: u64, ip: u64, return_addresses: &[u64]) -> (Regs, Vec<u8>) {
    let mut bytes = vec![0u8; 32];
    let mut words: Vec<u64> = vec![0xdead; 4]; // the leaf's locals
    let mut bp = sp + 8 * words.len() as u64;
    let first_bp = bp;
    for (i, &ra) in return_addresses.iter().enumerate() {
        let next_bp = if i + 1 == return_addresses.len() {
            0
        } else {
            bp + 16 + 16
        };
        words.push(next_bp);
        words.push(ra);
        words.extend([0x1111, 0x2222]); // caller locals
        bp = next_bp;
    }
    bytes.clear();
    for w in words {
        bytes.extend(w.to_le_bytes());
    }
    (
        Regs {
            ip,
            sp,
            bp: first_bp,
        },
        bytes,
    )
}
