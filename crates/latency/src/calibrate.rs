//! The cost of a probed call: rprof times an empty function of its own with and without an
//! entry and a return probe on it, so the summary can say how much of each duration is the
//! probe.
//!
//! The function is `rprof_latency_calibration_target` in the rprof binary itself, found in
//! `/proc/self/exe` with the same resolver as a user's FUNCTION and probed the same way (the
//! same PMU, sample type and a ring buffer that takes the records), on rprof's own thread only.
//! Calls run in batches of 500 (5 without probes, 15 with); the cost is the difference of the
//! median batches' time per call.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use rprof_events::Tasks;
use rprof_perf::RingBuffer;

use crate::probes::{probe_attr, UprobePmu};
use crate::resolve::{resolve, Modules};

/// The symbol timed.
pub const TARGET_SYMBOL: &str = "rprof_latency_calibration_target";

/// The calibration target: does next to nothing, is never inlined and keeps its symbol.
#[no_mangle]
#[inline(never)]
pub extern "C" fn rprof_latency_calibration_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_add(1)
}

const BATCH: u32 = 500;
const BATCHES: u32 = 5;

/// The per-call time of each of `BATCHES` batches, in ns.
fn time_calls() -> Vec<f64> {
    let f: extern "C" fn(u64) -> u64 = std::hint::black_box(rprof_latency_calibration_target);
    let mut times = Vec::with_capacity(BATCHES as usize);
    let mut acc = 0u64;
    for _ in 0..BATCHES {
        let start = Instant::now();
        for i in 0..BATCH {
            acc = acc.wrapping_add(f(u64::from(i)));
        }
        times.push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    std::hint::black_box(acc);
    times
}

/// The median of `v` (not empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Measures the added time of one probed call (entry and return probe), in ns.
pub fn probe_cost(pmu: UprobePmu) -> Result<f64, String> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
    let modules = Modules {
        executable: Some(exe),
        libraries: Vec::new(),
    };
    let target = resolve(TARGET_SYMBOL, &modules).map_err(|e| e.to_string())?;
    let path = CString::new(target.path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let plain = median(time_calls());
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let mut fds = Vec::new();
    for ret in [false, true] {
        let attr = probe_attr(pmu, &path, target.offset, ret);
        let fd = rprof_events::perf_event_open(&attr, Tasks::Of(tid), None, None, 0)
            .map_err(|e| e.to_string())?;
        fds.push(fd);
    }
    let mut ring = RingBuffer::map(fds[0].as_fd(), 64).map_err(|e| e.to_string())?;
    // SAFETY: SET_OUTPUT between two perf descriptors we own, same task.
    let rc =
        unsafe { perf_event_open_sys::ioctls::SET_OUTPUT(fds[1].as_raw_fd(), fds[0].as_raw_fd()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut probed = Vec::new();
    let mut bytes = 0u64;
    for _ in 0..3 {
        probed.extend(time_calls());
        bytes += ring.read().len();
    }
    drop(ring);
    drop(fds);
    if bytes == 0 {
        return Err("the probes on rprof's own calibration function never fired".into());
    }
    Ok((median(probed) - plain).max(0.0))
}
