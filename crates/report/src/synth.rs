//! Synthetic profiles for tests, benchmarks and the saved fixture profiles: a small builder over
//! [`rprof_profile::Writer`] and the designed workloads the golden files are made from.
//!
//! Not part of the stable API.

use std::collections::BTreeMap;
use std::io;

use rprof_profile::{
    Address, Header, Module, ModuleId, ModuleKind, OffCpu, Record, Sample, StoredFrame, Summary,
    Symbols, Writer,
};

/// Strings and entries of one module's symbols, as a `Symbols` record holds them.
type ModuleSymbols = (Vec<String>, Vec<(u64, Vec<StoredFrame>)>);

/// Builds a profile in memory, record by record.
#[derive(Debug, Default)]
pub struct Synth {
    header: Header,
    records: Vec<Record>,
    symbols: BTreeMap<u32, ModuleSymbols>,
    next_address: BTreeMap<u32, u64>,
    time: u64,
    samples: u64,
    truncated: u64,
    lost: u64,
    throttled: u64,
}

/// A source location of a synthetic function: name, file (empty: none), line (0: none).
pub type Loc<'a> = (&'a str, &'a str, u32);

impl Synth {
    /// A profile of `command`, sampled with cpu-clock at 1000 Hz.
    pub fn new(command: &[&str]) -> Synth {
        Synth {
            header: Header {
                rprof_version: "0.1.0".into(),
                command: command.iter().map(|s| s.to_string()).collect(),
                target_pid: None,
                event: "cpu-clock".into(),
                frequency: Some(1000),
                period: None,
                call_graph: "dwarf,32768".into(),
                start_unix_ns: 1_795_834_213_000_000_000,
                hostname: "fixture-host".into(),
                kernel_release: "6.18.0".into(),
            },
            time: 1_000_000_000,
            ..Synth::default()
        }
    }

    /// The header, to adjust before building.
    pub fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }

    /// Adds a module and returns its id.
    pub fn module(&mut self, path: &str, kind: ModuleKind) -> ModuleId {
        let id = ModuleId(self.next_address.len() as u32);
        let base = if kind == ModuleKind::Kernel {
            0xffff_ffff_8100_0000
        } else {
            0x1000
        };
        self.next_address.insert(id.0, base);
        self.records.push(Record::Module(Module {
            id,
            path: path.into(),
            build_id: Some(vec![0xb1, 0x1d, id.0 as u8]),
            kind,
            jit_pid: None,
        }));
        id
    }

    /// A code address in `module` whose symbols are `frames`, innermost first: every frame but
    /// the last was inlined into the next. No frames: an address without a name.
    pub fn code(&mut self, module: ModuleId, frames: &[Loc<'_>]) -> Address {
        let next = self.next_address.entry(module.0).or_insert(0x1000);
        let address = *next;
        *next += 0x40;
        // A finished recording stores every address it looked up, those it could not name
        // with no frames.
        {
            let (strings, entries) = self.symbols.entry(module.0).or_default();
            let mut index = |s: &str| -> u32 {
                if s.is_empty() {
                    return u32::MAX;
                }
                match strings.iter().position(|x| x == s) {
                    Some(i) => i as u32,
                    None => {
                        strings.push(s.to_string());
                        (strings.len() - 1) as u32
                    }
                }
            };
            let stored = frames
                .iter()
                .enumerate()
                .map(|(i, &(name, file, line))| StoredFrame {
                    function: index(name),
                    file: index(file),
                    line,
                    inlined: i + 1 < frames.len(),
                })
                .collect();
            entries.push((address, stored));
        }
        Address {
            module: Some(module),
            address,
        }
    }

    /// A thread `tid` of process `pid` named `name` (a new process when `tid == pid`).
    pub fn thread(&mut self, pid: u32, tid: u32, name: &str) {
        if tid != pid {
            self.records.push(Record::Fork {
                time: self.time,
                pid,
                ppid: pid,
                tid,
                ptid: pid,
            });
        }
        self.records.push(Record::Comm {
            time: self.time,
            pid,
            tid,
            name: name.into(),
            exec: tid == pid,
        });
    }

    /// Process `pid` runs `exec`: its main thread is called `name` from now on.
    pub fn exec(&mut self, pid: u32, name: &str) {
        // Just after the last sample: that sample was taken under the old name.
        self.time += 1;
        self.records.push(Record::Comm {
            time: self.time,
            pid,
            tid: pid,
            name: name.into(),
            exec: true,
        });
    }

    /// A sample on `tid` with `user` and `kernel` frames given leaf first as code addresses
    /// (what [`code`](Self::code) returned); callers are stored as return addresses.
    pub fn sample(
        &mut self,
        pid: u32,
        tid: u32,
        user: &[Address],
        kernel: &[Address],
        truncated: bool,
    ) {
        let returns = |frames: &[Address]| -> Vec<Address> {
            frames
                .iter()
                .enumerate()
                .map(|(i, a)| Address {
                    module: a.module,
                    address: if i == 0 { a.address } else { a.address + 1 },
                })
                .collect()
        };
        self.time += 1_000_000;
        self.samples += 1;
        self.truncated += u64::from(truncated);
        self.records.push(Record::Sample(Sample {
            time: self.time,
            pid,
            tid,
            cpu: tid % 2,
            period: 1_000_000,
            user: returns(user),
            kernel: returns(kernel),
            truncated,
        }));
    }

    /// An off-CPU block of `ms` milliseconds on `tid`, starting now, with `user` and `kernel`
    /// frames as for [`sample`](Self::sample); `preempted` is the switch's PREEMPT flag.
    pub fn off_cpu(
        &mut self,
        pid: u32,
        tid: u32,
        ms: u64,
        user: &[Address],
        kernel: &[Address],
        preempted: bool,
    ) {
        let returns = |frames: &[Address]| -> Vec<Address> {
            frames
                .iter()
                .enumerate()
                .map(|(i, a)| Address {
                    module: a.module,
                    address: if i == 0 { a.address } else { a.address + 1 },
                })
                .collect()
        };
        let start = self.time + 1;
        self.time = start + ms * 1_000_000;
        self.records.push(Record::OffCpu(OffCpu {
            pid,
            tid,
            cpu: 0,
            start,
            end: self.time,
            ended: true,
            preempted,
            user: returns(user),
            kernel: returns(kernel),
            truncated: false,
            args: Vec::new(),
        }));
    }

    /// The kernel lost `count` samples.
    pub fn lost(&mut self, count: u64) {
        self.lost += count;
        self.records.push(Record::Lost {
            time: self.time,
            count,
        });
    }

    /// The kernel throttled sampling once.
    pub fn throttle(&mut self) {
        self.throttled += 1;
        self.records.push(Record::Throttle {
            time: self.time,
            throttled: true,
        });
    }

    /// The profile file: a finished recording (symbols and summary at the end), or with
    /// `finished == false` what a killed recording leaves (no symbols, no summary). Blocks
    /// end every `block` records.
    pub fn bytes(self, finished: bool, block: usize) -> io::Result<Vec<u8>> {
        let mut buffer = Vec::new();
        let mut w = Writer::new(&mut buffer, &self.header)?;
        for (i, record) in self.records.into_iter().enumerate() {
            w.push(record)?;
            if block > 0 && (i + 1) % block == 0 {
                w.flush()?;
            }
        }
        if !finished {
            // A killed recording: whatever was flushed, no symbols, no summary.
            w.flush()?;
            drop(w);
            return Ok(buffer);
        }
        w.flush()?;
        for (module, (strings, entries)) in self.symbols {
            w.push(Record::Symbols(Symbols {
                module: Some(ModuleId(module)),
                strings,
                entries,
            }))?;
        }
        w.finish(Summary {
            end_unix_ns: self.header.start_unix_ns + (self.time - 1_000_000_000) + 5_000_000,
            samples: self.samples,
            lost: self.lost,
            throttled: self.throttled,
            truncated: self.truncated,
            unwind_failed: 0,
        })?;
        Ok(buffer)
    }
}

/// A small deterministic pseudo-random sequence (xorshift).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from `seed` (not 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const STAGE: &str = "rprof_fixture::pipeline::Stage<rprof_fixture::codec::Decoder<std::io::buffered::bufreader::BufReader<std::fs::File>>>::process_batch";
const EXTEND: &str = "<alloc::vec::Vec<rprof_fixture::Item> as core::iter::traits::collect::Extend<&rprof_fixture::Item>>::extend";

/// The designed workload of `fixtures/profiles/basic.rprof`.
///
/// Process 100 (`./app --fast`): thread `app` (100) runs `main -> run ->` …
/// - `compute` with `square` inlined, leaf in `square`: 300 samples;
/// - `compute` itself: 100; of which another 40 are in the kernel (page fault) under it;
/// - `fib` recursing 4 deep: 150;
/// - `sqrt` in libm: 50.
///
/// Two threads named `worker` (101: 200 samples, 102: 100) run `worker_main -> process_batch
/// -> extend` (leaf in `extend`: 3 of 5, in `process_batch`: 1 of 5) and 1 of 5 are truncated
/// stacks `[truncated] -> process_batch -> extend`. Process 200 (`helper-tool`) has 60 samples
/// in an address without a name. 25 samples lost, one throttle.
pub fn basic(finished: bool, block: usize) -> io::Result<Vec<u8>> {
    let mut s = Synth::new(&["./app", "--fast"]);
    s.thread(100, 100, "app");
    let app = s.module("/nonexistent/rprof-fixture/app", ModuleKind::Elf);
    let libm = s.module("/nonexistent/rprof-fixture/libm.so.6", ModuleKind::Elf);
    let kernel = s.module("[kernel.kallsyms]", ModuleKind::Kernel);
    let main = s.code(app, &[("main", "/src/app/app.c", 40)]);
    let run_compute = s.code(app, &[("run", "/src/app/app.c", 31)]);
    let run_fib = s.code(app, &[("run", "/src/app/app.c", 32)]);
    let run_sqrt = s.code(app, &[("run", "/src/app/app.c", 33)]);
    let square = s.code(
        app,
        &[
            ("square", "/src/app/app.c", 10),
            ("compute", "/src/app/app.c", 22),
        ],
    );
    let compute = s.code(app, &[("compute", "/src/app/app.c", 25)]);
    let fib_leaf = s.code(app, &[("fib", "/src/app/app.c", 50)]);
    let fib_call = s.code(app, &[("fib", "/src/app/app.c", 52)]);
    let sqrt = s.code(libm, &[("sqrt", "", 0)]);
    let clear_page = s.code(kernel, &[("clear_page_erms", "", 0)]);
    let fault = s.code(kernel, &[("asm_exc_page_fault", "", 0)]);
    s.thread(100, 101, "worker");
    s.thread(100, 102, "worker");
    let worker_main = s.code(app, &[("worker_main", "/src/app/worker.rs", 12)]);
    let stage_call = s.code(app, &[(STAGE, "/src/app/pipeline.rs", 88)]);
    let stage_self = s.code(app, &[(STAGE, "/src/app/pipeline.rs", 95)]);
    let extend = s.code(
        app,
        &[(EXTEND, "/rustc/library/alloc/src/vec/mod.rs", 3100)],
    );
    s.thread(200, 200, "helper-tool");
    let helper = s.module("/nonexistent/rprof-fixture/helper-tool", ModuleKind::Elf);
    let helper_main = s.code(helper, &[("main", "/src/helper.c", 5)]);
    let helper_hot = s.code(helper, &[]);

    // (pid, tid, user stack leaf first, kernel stack, truncated, count)
    type Shape = (u32, u32, Vec<Address>, Vec<Address>, bool, u32);
    let shapes: Vec<Shape> = vec![
        (
            100,
            100,
            vec![square, run_compute, main],
            vec![],
            false,
            300,
        ),
        (
            100,
            100,
            vec![compute, run_compute, main],
            vec![],
            false,
            100,
        ),
        (
            100,
            100,
            vec![compute, run_compute, main],
            vec![clear_page, fault],
            false,
            40,
        ),
        (
            100,
            100,
            vec![fib_leaf, fib_call, fib_call, fib_call, run_fib, main],
            vec![],
            false,
            150,
        ),
        (100, 100, vec![sqrt, run_sqrt, main], vec![], false, 50),
        (
            100,
            101,
            vec![extend, stage_call, worker_main],
            vec![],
            false,
            120,
        ),
        (100, 101, vec![stage_self, worker_main], vec![], false, 40),
        (100, 101, vec![extend, stage_call], vec![], true, 40),
        (
            100,
            102,
            vec![extend, stage_call, worker_main],
            vec![],
            false,
            60,
        ),
        (100, 102, vec![stage_self, worker_main], vec![], false, 20),
        (100, 102, vec![extend, stage_call], vec![], true, 20),
        (200, 200, vec![helper_hot, helper_main], vec![], false, 60),
    ];
    let mut left: Vec<u32> = shapes.iter().map(|s| s.5).collect();
    let mut rng = Rng::new(42);
    let mut remaining: u32 = left.iter().sum();
    while remaining > 0 {
        let mut pick = rng.below(u64::from(remaining)) as u32;
        let i = left
            .iter()
            .position(|&n| {
                if pick < n {
                    true
                } else {
                    pick -= n;
                    false
                }
            })
            .unwrap_or(0);
        left[i] -= 1;
        remaining -= 1;
        let (pid, tid, user, kernel, truncated, _) = &shapes[i];
        s.sample(*pid, *tid, user, kernel, *truncated);
        if remaining == 500 {
            s.lost(25);
            s.throttle();
        }
    }
    s.bytes(finished, block)
}

/// A finished profile with no samples.
pub fn empty() -> io::Result<Vec<u8>> {
    let mut s = Synth::new(&["./idle"]);
    s.thread(300, 300, "idle");
    s.bytes(true, 0)
}

/// A large profile for benchmarks: `samples` samples over 4 threads drawn, with a skewed
/// distribution, from `stacks` distinct stacks 8 to 40 frames deep; the stacks are paths down a
/// tree of 2,000 functions with long Rust-like names, a fifth of them with an inlined helper.
/// `stacks == 0` makes every sample's stack a fresh path (the worst case for folding).
pub fn large(samples: usize, stacks: usize) -> io::Result<Vec<u8>> {
    let mut s = Synth::new(&["./big-app", "--iterations", "1000000"]);
    s.thread(10, 10, "big-app");
    for tid in 11..14 {
        s.thread(10, tid, &format!("pool-{}", tid - 10));
    }
    let app = s.module("/nonexistent/rprof-fixture/big-app", ModuleKind::Elf);
    let mut addresses = Vec::new();
    for i in 0..2000u32 {
        let name = format!(
            "big_app::module_{}::Worker<big_app::types::Item{}>::step_{i}",
            i % 37,
            i % 11
        );
        let file = format!("/src/big-app/src/module_{}.rs", i % 37);
        let address = if i % 5 == 0 {
            let inner = format!("big_app::util::helper_{}", i % 13);
            s.code(app, &[(&inner, &file, 7 + i % 50), (&name, &file, 100 + i)])
        } else {
            s.code(app, &[(&name, &file, 100 + i)])
        };
        addresses.push(address);
    }
    let mut rng = Rng::new(7);
    let path = |rng: &mut Rng| -> Vec<Address> {
        let depth = 8 + rng.below(33) as usize;
        // A path down a tree: each level narrows the choice, so stacks share prefixes.
        let mut stack: Vec<Address> = Vec::with_capacity(depth);
        let mut node = 0u64;
        for level in 0..depth {
            node = (node * 3 + rng.below(3) + level as u64) % addresses.len() as u64;
            stack.push(addresses[node as usize]);
        }
        stack.reverse();
        stack
    };
    let pool: Vec<Vec<Address>> = (0..stacks).map(|_| path(&mut rng)).collect();
    for _ in 0..samples {
        let tid = 10 + rng.below(4) as u32;
        if pool.is_empty() {
            let stack = path(&mut rng);
            s.sample(10, tid, &stack, &[], false);
        } else {
            let n = pool.len() as u64;
            let pick = (rng.below(n) * rng.below(n)) / n;
            s.sample(10, tid, &pool[pick as usize], &[], false);
        }
    }
    s.bytes(true, 0)
}

/// Issue 9.11: process 300 starts as `launcher` (30 samples in `launcher_main`), then runs
/// `exec` and becomes `busy` (70 samples in `busy_main`).
pub fn exec_rename() -> io::Result<Vec<u8>> {
    let mut s = Synth::new(&["./launcher"]);
    s.thread(300, 300, "launcher");
    let launcher = s.module("/nonexistent/rprof-fixture/launcher", ModuleKind::Elf);
    let launcher_main = s.code(launcher, &[("launcher_main", "/src/launcher.c", 9)]);
    for _ in 0..30 {
        s.sample(300, 300, &[launcher_main], &[], false);
    }
    s.exec(300, "busy");
    let busy = s.module("/nonexistent/rprof-fixture/busy", ModuleKind::Elf);
    let busy_main = s.code(busy, &[("busy_main", "/src/busy.c", 4)]);
    for _ in 0..70 {
        s.sample(300, 300, &[busy_main], &[], false);
    }
    s.bytes(true, 20)
}
