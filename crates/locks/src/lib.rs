//! rprof-locks: lock contention from an `rprof record --off-cpu` profile (issue 17):
//! `rprof report --locks` and `rprof flame --locks`.
//!
//! Every blocking futex wait is an off-CPU block whose user registers at the switch-out hold
//! the system call's arguments: the futex word's address, the operation, the value. This crate
//! groups the waits per (process, address), counts the blocking waits (contended
//! acquisitions), their total, mean and longest time, the waiting threads and their share of
//! the recording's wall time, and the call sites that waited (the first frame of the program
//! below the lock's implementation, [`kind::is_machinery`]). What a futex word is — a mutex, a
//! read-write lock, a condition variable, a join — is found from the waiting functions
//! ([`kind`]); only mutexes and read-write locks are contention, the rest is shown apart.
//!
//! A lock is named by the data symbol that holds it ([`naming`]: `order_book`, a Rust
//! static's path, `+offset` inside a struct), else by its address and the function that most
//! often waits on it (a lock in the heap). When the recording had the privilege to record
//! wake-ups (the futex wake calls, `LockRecord::Wake`), each lock also gets the sites that
//! woke its waiters: the code that held it.
//!
//! It leaves reading the profile and naming code addresses to `rprof-profile`, the command
//! line, files and exit codes to the binary.

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod kind;
mod naming;
pub mod render;

use std::collections::{BTreeSet, HashMap};

use rprof_profile::{FrameKind, Profile, StackId, WaitReason};

pub use kind::Kind;
use naming::{Found, Namer};

/// What to analyse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Only this process. Default `None`: all.
    pub pid: Option<u32>,
    /// How many waiting and waking sites each lock lists. Default 5.
    pub sites: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pid: None,
            sites: 5,
        }
    }
}

/// How a lock got its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedBy {
    /// A data symbol of a module covers its address.
    Symbol,
    /// It is inside a module's data, but no symbol covers it: `module+0xSVMA`.
    Module,
    /// Nothing names the memory (the heap, a stack): its address and the function that most
    /// often waits on it.
    Waiter,
}

/// A call site that waited on a lock or woke its waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Function name.
    pub function: String,
    /// Source file, when known.
    pub file: Option<String>,
    /// Source line, when known.
    pub line: Option<u32>,
    /// Waits (or wake calls) at this site.
    pub count: u64,
    /// Time waited at this site (0 for wake sites).
    pub wait_ns: u64,
}

/// One futex word of one process and its waits.
#[derive(Debug, Clone, PartialEq)]
pub struct Lock {
    /// Process id.
    pub pid: u32,
    /// The futex word's address in the process.
    pub address: u64,
    /// The name shown (see [`NamedBy`]).
    pub name: String,
    /// How the name was found.
    pub named_by: NamedBy,
    /// What the word belongs to (the kind of most of its wait time).
    pub kind: Kind,
    /// Contended acquisitions: blocking waits, with a thread's retries merged into the wait
    /// they continue (see [`RETRY_GAP_NS`]).
    pub contended: u64,
    /// Blocking waits (futex waits that took the thread off the CPU), retries included: a
    /// thread woken when the lock was released that finds it taken again (another thread
    /// barged in) waits again.
    pub waits: u64,
    /// Total time threads waited (switch-out to switch-in, nanoseconds).
    pub wait_ns: u64,
    /// The longest wait.
    pub max_wait_ns: u64,
    /// The waiting threads (ids).
    pub threads: Vec<u32>,
    /// The waiting call sites, most time first (at most [`Options::sites`]).
    pub sites: Vec<Site>,
    /// Wake calls on the word (0 when wake-ups were not recorded).
    pub wakes: u64,
    /// The waking call sites, most calls first (at most [`Options::sites`]).
    pub wakers: Vec<Site>,
    /// The off-CPU blocks of its waits (indexes into `Profile::off_cpu`), for flame graphs.
    pub blocks: Vec<usize>,
}

impl Lock {
    /// Mean wait of a contended acquisition (its retries included).
    pub fn mean_wait_ns(&self) -> u64 {
        self.wait_ns.checked_div(self.contended).unwrap_or(0)
    }
}

/// Whether the profile holds wake-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakers {
    /// Recorded.
    Recorded,
    /// Not recorded, and why.
    NotRecorded(String),
    /// The profile does not say (recorded by an rprof before wake-ups existed).
    Unknown,
}

/// The lock analysis of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Mutexes and read-write locks, most wait time first.
    pub locks: Vec<Lock>,
    /// Condition variables, joins, semaphores and other futex waits: not contention.
    pub other: Vec<Lock>,
    /// The recording's wall time (first to last record, nanoseconds): the share of it threads
    /// spent blocked on a lock is `wait_ns / wall_ns` (over 100 % when several threads wait
    /// at once).
    pub wall_ns: u64,
    /// Whether wake-ups were recorded.
    pub wakers: Wakers,
    /// Blocks waiting in a futex whose address is unknown (no user registers captured, or
    /// `futex_waitv`): counted here, not in any lock.
    pub unaddressed: u64,
    /// Off-CPU blocks that carry the user registers (the futex arguments): none when the
    /// recording could not sample in kernel space (an unprivileged user), where the off-CPU
    /// sampler fires.
    pub with_registers: u64,
}

/// Waits of one lock while they are gathered.
#[derive(Default)]
struct Gather {
    contended: u64,
    waits: u64,
    wait_ns: u64,
    max_wait_ns: u64,
    threads: BTreeSet<u32>,
    by_kind: HashMap<Kind, u64>,
    sites: HashMap<SiteKey, (u64, u64)>,
    wakes: u64,
    wakers: HashMap<SiteKey, (u64, u64)>,
    blocks: Vec<usize>,
}

/// A site as (function, file, line).
type SiteKey = (String, Option<String>, Option<u32>);

/// The user frames of `stack`, leaf first, as (function, module name, file, line).
fn user_frames(profile: &Profile, stack: StackId) -> Vec<(&str, &str, Option<&str>, Option<u32>)> {
    profile
        .stack(stack)
        .iter()
        .map(|&f| profile.frame(f))
        .filter(|f| f.kind == FrameKind::User)
        .map(|f| {
            (
                f.function.as_str(),
                f.module.map_or("", |m| profile.module_name(m)),
                f.file.as_deref(),
                f.line,
            )
        })
        .collect()
}

/// The call site of a waiting or waking stack: its first frame outside the lock machinery,
/// else its leaf.
fn call_site(frames: &[(&str, &str, Option<&str>, Option<u32>)]) -> Option<SiteKey> {
    let frame = frames
        .iter()
        .find(|(function, module, _, _)| !kind::is_machinery(function, module))
        .or(frames.first())?;
    Some((frame.0.to_string(), frame.2.map(str::to_string), frame.3))
}

/// A futex wait of a thread that follows its previous wait on the same word after less than
/// this much time on the CPU (and nothing else took it off the CPU, preemption aside) is a
/// retry of the same acquisition: it was woken, found the lock taken again, and waited again
/// (glibc's `__lll_lock_wait` and Rust's `lock_contended` loop so). Releasing a lock and
/// taking it again takes the thread longer than that only if it does some work in between;
/// a thread that re-locks within this time is counted as one acquisition (an estimate,
/// `docs/off-cpu.md`).
pub const RETRY_GAP_NS: u64 = 50_000;

/// The futex word and operation an off-CPU block waited on, if it is an addressed futex wait.
fn futex_wait(profile: &Profile, index: usize) -> Option<(u64, u64)> {
    let block = profile.off_cpu.get(index)?;
    if profile.off_cpu_reason(index).0 != WaitReason::Lock {
        return None;
    }
    let (&address, &op) = (block.args.first()?, block.args.get(1)?);
    (kind::is_wait_op(op) && !in_futex_waitv(profile, profile.off_cpu_stack(index)))
        .then_some((address, op))
}

/// Per off-CPU block: whether it is a retry of its thread's previous wait ([`RETRY_GAP_NS`]).
fn retries(profile: &Profile) -> Vec<bool> {
    let blocks = &profile.off_cpu;
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (blocks[i].tid, blocks[i].start, i));
    let mut retry = vec![false; blocks.len()];
    // Per thread: the word of its last wait, when that wait ended, and the time preempted
    // since.
    let mut last: HashMap<u32, (u64, u64, u64)> = HashMap::new();
    for i in order {
        let block = &blocks[i];
        if profile.off_cpu_reason(i).0 == WaitReason::Cpu {
            if let Some(l) = last.get_mut(&block.tid) {
                l.2 = l.2.saturating_add(block.end.saturating_sub(block.start));
            }
            continue;
        }
        match futex_wait(profile, i) {
            Some((address, _)) => {
                if let Some(&(previous, end, preempted)) = last.get(&block.tid) {
                    let running = block.start.saturating_sub(end).saturating_sub(preempted);
                    retry[i] = previous == address && running < RETRY_GAP_NS;
                }
                last.insert(block.tid, (address, block.end, 0));
            }
            None => {
                last.remove(&block.tid);
            }
        }
    }
    retry
}

/// Analyses the futex waits (and wake-ups) of `profile`.
pub fn analyze(profile: &Profile, options: &Options) -> Analysis {
    let mut gathered: HashMap<(u32, u64), Gather> = HashMap::new();
    let mut unaddressed = 0u64;
    let retry = retries(profile);
    let mut with_registers = 0u64;
    for (index, block) in profile.off_cpu.iter().enumerate() {
        if !block.args.is_empty() {
            with_registers += 1;
        }
        if options.pid.is_some_and(|pid| pid != block.pid) {
            continue;
        }
        let (reason, _) = profile.off_cpu_reason(index);
        if reason != WaitReason::Lock {
            continue;
        }
        let Some((address, op)) = futex_wait(profile, index) else {
            unaddressed += 1;
            continue;
        };
        let frames = user_frames(profile, profile.off_cpu_stack(index));
        let kind = kind::classify(frames.iter().map(|f| f.0), op);
        let wait = block.end.saturating_sub(block.start);
        let g = gathered.entry((block.pid, address)).or_default();
        g.waits += 1;
        if !retry[index] {
            g.contended += 1;
        }
        g.wait_ns = g.wait_ns.saturating_add(wait);
        g.max_wait_ns = g.max_wait_ns.max(wait);
        g.threads.insert(block.tid);
        *g.by_kind.entry(kind).or_default() += wait.max(1);
        if let Some(site) = call_site(&frames) {
            let s = g.sites.entry(site).or_default();
            s.0 += 1;
            s.1 = s.1.saturating_add(wait);
        }
        g.blocks.push(index);
    }
    for (index, wake) in profile.wakes.iter().enumerate() {
        let Some(&address) = wake.args.first() else {
            continue;
        };
        // Only words someone waited on: a wake-up nobody waited for is not contention.
        let Some(g) = gathered.get_mut(&(wake.pid, address)) else {
            continue;
        };
        g.wakes += 1;
        let frames = user_frames(profile, profile.wake_stack(index));
        if let Some(site) = call_site(&frames) {
            g.wakers.entry(site).or_default().0 += 1;
        }
    }
    let wakers = match &profile.wakers {
        Some((true, _)) => Wakers::Recorded,
        Some((false, why)) => Wakers::NotRecorded(why.clone()),
        None => Wakers::Unknown,
    };
    let mut namer = Namer::default();
    let mut locks = Vec::new();
    let mut other = Vec::new();
    for ((pid, address), g) in gathered {
        let kind = g
            .by_kind
            .iter()
            .max_by_key(|&(&kind, &ns)| (ns, std::cmp::Reverse(kind)))
            .map_or(Kind::Other, |(&kind, _)| kind);
        let sites = top_sites(g.sites, options.sites);
        let wakers = top_sites(g.wakers, options.sites);
        let (name, named_by) = match namer.find(profile, pid, address) {
            Some(Found::Symbol {
                name, offset: 0, ..
            }) => (name, NamedBy::Symbol),
            Some(Found::Symbol { name, offset, .. }) => {
                (format!("{name}+{offset:#x}"), NamedBy::Symbol)
            }
            Some(Found::InModule { module, svma }) => (
                format!("{}+{svma:#x}", profile.module_name(module)),
                NamedBy::Module,
            ),
            None => {
                let waiter = sites
                    .iter()
                    .max_by_key(|s| (s.count, s.wait_ns))
                    .map_or("?", |s| s.function.as_str());
                (format!("{address:#x} in {waiter}"), NamedBy::Waiter)
            }
        };
        let lock = Lock {
            pid,
            address,
            name,
            named_by,
            kind,
            contended: g.contended,
            waits: g.waits,
            wait_ns: g.wait_ns,
            max_wait_ns: g.max_wait_ns,
            threads: g.threads.into_iter().collect(),
            sites,
            wakes: g.wakes,
            wakers,
            blocks: g.blocks,
        };
        if kind.is_contention() {
            locks.push(lock);
        } else {
            other.push(lock);
        }
    }
    let order = |a: &Lock, b: &Lock| {
        b.wait_ns
            .cmp(&a.wait_ns)
            .then(a.pid.cmp(&b.pid))
            .then(a.address.cmp(&b.address))
    };
    locks.sort_by(order);
    other.sort_by(order);
    Analysis {
        locks,
        other,
        wall_ns: wall_ns(profile),
        wakers,
        unaddressed,
        with_registers,
    }
}

/// The most frequent `n` sites: by time waited, then count, then name.
fn top_sites(sites: HashMap<SiteKey, (u64, u64)>, n: usize) -> Vec<Site> {
    let mut list: Vec<Site> = sites
        .into_iter()
        .map(|((function, file, line), (count, wait_ns))| Site {
            function,
            file,
            line,
            count,
            wait_ns,
        })
        .collect();
    list.sort_by(|a, b| {
        (b.wait_ns, b.count)
            .cmp(&(a.wait_ns, a.count))
            .then_with(|| (&a.function, &a.file, a.line).cmp(&(&b.function, &b.file, b.line)))
    });
    list.truncate(n);
    list
}

/// True when the block's kernel stack is in `futex_waitv` (its arguments are an array of
/// waiters, not one address).
fn in_futex_waitv(profile: &Profile, stack: StackId) -> bool {
    profile.stack(stack).iter().any(|&f| {
        let frame = profile.frame(f);
        frame.kind == FrameKind::Kernel && frame.function.contains("futex_waitv")
    })
}

/// The recording's span on the perf clock: from its first timed record to its last.
fn wall_ns(profile: &Profile) -> u64 {
    let first = profile
        .samples
        .iter()
        .map(|s| s.time)
        .chain(profile.off_cpu.iter().map(|b| b.start))
        .chain(profile.wakes.iter().map(|w| w.time))
        .chain(profile.threads.values().filter_map(|t| t.created))
        .filter(|&t| t > 0)
        .min();
    first.map_or(0, |first| profile.last_time().saturating_sub(first))
}

#[cfg(test)]
mod tests;
