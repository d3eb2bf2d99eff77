//! A synthetic input of any size for the benchmark and the page-opening measurement
//! (`docs/benchmarks.md`): threads that alternate between running (sampled at 1 kHz) and
//! off-CPU waits of every reason, with stacks drawn from a fixed pool. The same arguments give
//! the same input.

use crate::{Input, Process, Sample, Span, Stacks, State, Thread};

/// `threads` threads in (up to) 10 processes over `seconds` seconds: each runs 2–20 ms (one sample a
/// millisecond), then waits 1–30 ms (the reasons in turn), until the end; 2,000 distinct
/// stacks 10–30 frames deep over 500 function names.
pub fn synthetic(threads: u32, seconds: u64) -> Input {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut stacks = Stacks::default();
    let names: Vec<String> = (0..500).map(|i| format!("module::function_{i}")).collect();
    let pool: Vec<_> = (0..2000)
        .map(|_| {
            let depth = 10 + next(21) as usize;
            let frames: Vec<&str> = (0..depth)
                .map(|d| names[if d < 3 { d } else { next(500) as usize }].as_str())
                .collect();
            stacks.intern(frames)
        })
        .collect();
    let ms = 1_000_000u64;
    let end = seconds * 1_000 * ms;
    let states = [
        State::Runnable,
        State::Lock,
        State::Sleep,
        State::Io,
        State::Other,
    ];
    let mut processes: Vec<Process> = (0..10)
        .map(|p| Process {
            pid: 1000 + p * 100,
            name: format!("server-{p}"),
            threads: Vec::new(),
        })
        .collect();
    for t in 0..threads {
        let mut thread = Thread {
            tid: 1000 + (t % 10) * 100 + t / 10,
            name: format!("worker-{t}"),
            start: 0,
            end,
            spans: Vec::new(),
            samples: Vec::new(),
        };
        let mut now = next(10) * ms;
        let mut turn = 0;
        while now < end {
            let run = (2 + next(19)) * ms;
            let mut s = now + ms;
            while s <= (now + run).min(end) {
                thread.samples.push(Sample {
                    time: s,
                    stack: pool[next(2000) as usize],
                });
                s += ms;
            }
            now += run;
            let wait = (1 + next(30)) * ms;
            thread.spans.push(Span {
                start: now,
                end: (now + wait).min(end),
                state: states[turn % states.len()],
                stack: pool[next(2000) as usize],
            });
            turn += 1;
            now += wait;
        }
        processes[(t % 10) as usize].threads.push(thread);
    }
    processes.retain(|p| !p.threads.is_empty());
    Input {
        title: format!("synthetic: {threads} threads x {seconds} s"),
        start: 0,
        end,
        sample_ns: ms,
        off_cpu: true,
        notes: Vec::new(),
        processes,
        stacks,
    }
}
