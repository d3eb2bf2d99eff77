//! Opening the samplers of a recording, with the fallbacks that keep it going, and the size of
//! their ring buffers.
//!
//! Fallbacks, tried in turn until the samplers open: a kernel before 5.12 refuses
//! `attr.build_id` (MMAP2 records then carry the inode); a kernel that refuses kernel-space
//! sampling gets user-only samplers (said in a [`Note::UserOnly`]); a ring buffer of the
//! default size over the locked-memory limit is halved down to [`MIN_PAGES`] (said in a
//! [`Note::SmallerBuffers`]). A size asked for with `-m` is never reduced. Rings below the
//! default size get a user-stack copy that leaves room for [`MIN_SAMPLES_PER_RING`] samples
//! ([`fitted_stack_copy`], said in a [`Note::SmallerStackCopy`]). A launched command on a
//! cgroup of its own gets per-CPU events on that cgroup ([`crate::cgroup`]), else inherited
//! per-task events.
//!
//! It leaves to others the samplers themselves (`rprof-perf`) and what is recorded from them
//! ([`crate::session`]).

use rprof_events::{Event, OpenError};
use rprof_perf::{CallGraph, Companion, MapError, Rate, SamplerError, Samplers, SamplingOptions};

use crate::cgroup::Cgroup;
use crate::error::RecordError;
use crate::note::Note;

/// Smallest ring buffer (data pages) tried when the default size is refused.
pub const MIN_PAGES: usize = 8;

/// Bytes of user stack the off-CPU sampler copies at most (dwarf mode): a thread that blocks
/// is usually in a shallow call of its own code into libc, and a copy is made at every context
/// switch (tens of thousands a second in a busy server), so it copies less than the on-CPU
/// sampler's default. A deeper stack is marked truncated. (Samples of one ring buffer may
/// differ in stack size: each records its own.)
pub const OFF_CPU_STACK_COPY: u32 = 8192;

/// Samples a ring buffer holds at least when its size is capped (by the locked-memory limits,
/// or halved after a refusal): the user-stack copy is made smaller to fit (issue 13). 128
/// samples of 4 KiB fill the 512 KiB an unprivileged user may lock per CPU by default
/// (`kernel.perf_event_mlock_kb`): 128 ms of a busy CPU at 999 Hz before the reader must run;
/// with `ulimit -l` at 8 MiB (4 MiB rings) the copy is 31 KiB, about what samply copies.
pub const MIN_SAMPLES_PER_RING: usize = 128;

/// Bytes a dwarf sample takes besides its stack copy, at most in practice: header, ids,
/// registers, size fields and a kernel callchain of up to 100 frames.
const SAMPLE_OVERHEAD: usize = 1024;

/// The smallest user-stack copy fitting chooses: below it, too few frames unwind to be useful.
pub const MIN_FITTED_STACK_COPY: u32 = 2048;

/// The user-stack copy (bytes) that lets a ring buffer of `pages` data pages hold
/// [`MIN_SAMPLES_PER_RING`] samples: `asked` if it fits, else as much as does (a multiple of 8,
/// at least [`MIN_FITTED_STACK_COPY`]).
pub fn fitted_stack_copy(pages: usize, asked: u32) -> u32 {
    let ring = pages.saturating_mul(rprof_perf::ring::page_size());
    let room = (ring / MIN_SAMPLES_PER_RING).saturating_sub(SAMPLE_OVERHEAD);
    let room = u32::try_from(room).unwrap_or(u32::MAX) & !7;
    asked.min(room.max(MIN_FITTED_STACK_COPY))
}

/// Samples a ring buffer sized with `-m` must hold with its stack copies: below that, most
/// samples of a busy CPU are lost before the recorder can read them (and none at all when one
/// sample does not fit).
pub const MIN_SAMPLES_PER_EXPLICIT_RING: usize = 8;

/// Why a ring of `pages` data pages, asked for with `-m`, cannot serve `call_graph`: `Some` with
/// the smallest ring that can, in bytes, when it holds fewer than
/// [`MIN_SAMPLES_PER_EXPLICIT_RING`] dwarf samples. A ring sized by rprof is never refused: its
/// stack copy is fitted to it ([`fitted_stack_copy`]).
pub fn explicit_ring_too_small(pages: usize, call_graph: CallGraph) -> Option<usize> {
    let CallGraph::Dwarf { stack_size } = call_graph else {
        return None;
    };
    let page = rprof_perf::ring::page_size();
    let sample = (stack_size as usize).saturating_add(SAMPLE_OVERHEAD);
    let needed = sample.saturating_mul(MIN_SAMPLES_PER_EXPLICIT_RING);
    (pages.saturating_mul(page) < needed).then(|| needed.next_power_of_two().max(page))
}

/// What the samplers sample, as the session asks for it.
pub(crate) struct Request<'a> {
    pub event: &'a Event,
    /// The ring size the rate wants ([`wanted_pages`]): rings below it are capped.
    pub wanted_pages: usize,
    pub rate: Rate,
    pub call_graph: CallGraph,
    /// Sample user space only (`--no-kernel`).
    pub no_kernel: bool,
    /// Record off-CPU blocks (`--off-cpu`): the off-CPU sampler as a companion of the sampler.
    pub off_cpu: bool,
    /// Data pages per CPU, and whether the user asked for them (then never reduced).
    pub pages: usize,
    pub explicit_pages: bool,
}

/// The samplers as opened, with the event as it ended up (user-only after a fallback).
pub(crate) struct Opened {
    pub samplers: Samplers,
    pub event: Event,
    /// With `--off-cpu`: whether the wake-up sampler (`crate::locks`) is on, or why not.
    pub wakers: Option<Result<(), String>>,
    /// The samplers are per-CPU events on the command's cgroup, opened disabled: the caller
    /// enables them when it releases the command (else: inherited, enabled at its `execve`).
    pub on_cgroup: bool,
    /// The call graph as opened: the user-stack copy fitted to capped ring buffers.
    pub call_graph: CallGraph,
}

/// True when the kernel lets us lock as much memory as we like for ring buffers.
pub fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    // CAP_IPC_LOCK (bit 14) in the effective set.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

/// How long a default dwarf ring buffer lasts on a CPU the target keeps busy, at least: the
/// reader must have run by then. Rounded up to a power of two of pages: 1/16 s becomes 62-125
/// ms. At 10 kHz the largest ring ([`default_dwarf_pages`]) holds 25 ms, and lost nothing in
/// the benchmarks (docs/benchmarks.md): lower rates keep more than twice that margin.
pub const RING_FRACTION_OF_SECOND: u64 = 16;

/// The smallest default ring buffer for dwarf stacks (bytes per CPU).
pub const MIN_DWARF_RING: usize = 256 << 10;

/// The default ring-buffer size per CPU (data pages): for dwarf stacks at a frequency, room
/// for 1/[`RING_FRACTION_OF_SECOND`] s of samples on a busy CPU (issue 13: 4 MiB at 999 Hz
/// with 64 KiB copies, where a fixed 16 MiB took 32 MiB of the recorder's memory on 2 CPUs),
/// between [`MIN_DWARF_RING`] and [`default_dwarf_pages`]; at a period (rate unknown), the
/// largest. Without privileges, at most [`affordable_pages`]. If the kernel refuses it anyway,
/// the samplers are opened with half of it, and so on.
pub fn default_pages(call_graph: CallGraph, rate: Rate) -> usize {
    let wanted = wanted_pages(call_graph, rate);
    if privileged() {
        return wanted;
    }
    affordable_pages().map_or(wanted, |pages| pages.min(wanted))
}

/// [`default_pages`] before the locked-memory limits.
pub fn wanted_pages(call_graph: CallGraph, rate: Rate) -> usize {
    let page = rprof_perf::ring::page_size();
    match (call_graph, rate) {
        (CallGraph::Dwarf { stack_size }, Rate::Frequency(hz)) => {
            let sample = u64::from(stack_size) + SAMPLE_OVERHEAD as u64;
            let bytes = hz.saturating_mul(sample) / RING_FRACTION_OF_SECOND;
            let bytes = usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .max(MIN_DWARF_RING);
            (bytes.div_ceil(page))
                .checked_next_power_of_two()
                .unwrap_or(usize::MAX)
                .min(default_dwarf_pages())
        }
        (CallGraph::Dwarf { .. }, Rate::Period(_)) => default_dwarf_pages(),
        _ => (1 << 20) / page,
    }
}

/// The largest default ring-buffer size per CPU for dwarf stacks (data pages): 16 MiB.
pub fn default_dwarf_pages() -> usize {
    (16 << 20) / rprof_perf::ring::page_size()
}

/// The largest power-of-two buffer (data pages per CPU) the locked-memory limits grant an
/// unprivileged user: `perf_event_mlock_kb` per CPU plus `RLIMIT_MEMLOCK` shared by all CPUs
/// (None: unlimited).
pub fn affordable_pages() -> Option<usize> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let page_kb = (rprof_perf::ring::page_size() as u64 / 1024).max(1);
    let mlock_kb = rprof_events::mlock_kb().unwrap_or(516);
    let cpus = rprof_events::online_cpus().map_or(1, |c| c.len().max(1)) as u64;
    let memlock_kb = match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft == RLIM_INFINITY => return None,
        Ok((soft, _)) => soft / 1024,
        Err(_) => 0,
    };
    let budget_kb = mlock_kb + memlock_kb / cpus;
    // The metadata page counts too.
    let pages = (budget_kb / page_kb).saturating_sub(1).max(1);
    Some(1usize << (63 - pages.leading_zeros()))
}

/// Opens the samplers for `pid` (`attach`: every existing thread of a running process; else a
/// held child, enabled at its exec), with the fallbacks of this module. Notes go to `tell`
/// once the samplers are open.
///
/// With `cgroup` (a launched command already moved into it, no `--off-cpu`), the samplers are
/// per-CPU events on the cgroup (see [`crate::cgroup`]); if the kernel refuses those, inherited
/// per-task events as without it.
pub(crate) fn open_samplers(
    request: &Request<'_>,
    pid: u32,
    attach: bool,
    cgroup: Option<&Cgroup>,
    tell: &mut dyn FnMut(Note),
) -> Result<Opened, RecordError> {
    let mut cgroup = cgroup.filter(|_| !attach && !request.off_cpu);
    let cpus = rprof_events::online_cpus().map_err(|error| RecordError::Io {
        what: "cannot list the online CPUs".to_string(),
        error,
    })?;
    let mut event = if request.no_kernel {
        request.event.user_only()
    } else {
        request.event.clone()
    };
    let asked = request.pages;
    let mut pages = asked;
    let mut kernel_refused = None;
    // The off-CPU sampler fires in kernel space (at the switch), so it must count kernel space
    // even when only user stacks are wanted; refused that, it is user-only and never fires.
    let mut switch_kernel = true;
    let mut switch_refused = None;
    // The wake-up sampler of lock analyses (`crate::locks`): tried with `--off-cpu`, dropped
    // (and the reason kept for the profile) when the kernel refuses it.
    let mut wakers: Option<Result<(), String>> = request.off_cpu.then_some(Ok(()));
    let mut options = SamplingOptions {
        rate: request.rate,
        call_graph: request.call_graph,
        enable_on_exec: !attach,
        inherit: true,
        wakeup_bytes: 0,
        mmap_build_id: true,
    };
    loop {
        // Rings capped below the default size (and not sized with -m) get a stack copy that
        // leaves room for MIN_SAMPLES_PER_RING samples: with 64 KiB copies a 512 KiB ring
        // holds 7, and an unprivileged recording of many busy threads lost 40-90% of them.
        options.call_graph = match request.call_graph {
            CallGraph::Dwarf { stack_size }
                if !request.explicit_pages && pages < request.wanted_pages =>
            {
                CallGraph::Dwarf {
                    stack_size: fitted_stack_copy(pages, stack_size),
                }
            }
            call_graph => call_graph,
        };
        // Wake up when a quarter of the buffer is used; with the off-CPU sampler, every 32nd:
        // at tens of thousands of switches a second, each with a stack copy, a quarter fills
        // in milliseconds and a late reader loses records (docs/off-cpu.md, Cost).
        let share = if request.off_cpu { 32 } else { 4 };
        let bytes = pages.saturating_mul(rprof_perf::ring::page_size()) / share;
        options.wakeup_bytes = bytes.clamp(1, u32::MAX as usize) as u32;
        let mut attr = rprof_perf::sampling_attr(&event.attr(), &options);
        if event.exclude_kernel {
            attr.set_exclude_callchain_kernel(1);
        }
        let mut companions = Vec::new();
        if request.off_cpu {
            rprof_perf::with_argument_registers(&mut attr);
            let mut switch = rprof_perf::switch_attr(&attr);
            if switch.sample_stack_user > OFF_CPU_STACK_COPY {
                switch.sample_stack_user = OFF_CPU_STACK_COPY;
            }
            if switch_kernel {
                switch.set_exclude_kernel(0);
                if event.exclude_kernel {
                    switch.set_exclude_callchain_kernel(1);
                }
            } else {
                switch.set_exclude_kernel(1);
            }
            companions.push(Companion {
                event: "context-switches",
                attr: switch,
                filter: None,
            });
            if !switch_kernel {
                wakers = Some(Err(
                    "kernel-space sampling was refused (the futex tracepoint fires in the \
                     kernel); run rprof record as root"
                        .into(),
                ));
            }
            if let Some(Ok(())) = wakers {
                match crate::locks::waker_attr(&switch) {
                    Ok(attr) => companions.push(Companion {
                        event: crate::locks::WAKER_EVENT,
                        attr,
                        filter: Some(crate::locks::WAKE_FILTER),
                    }),
                    Err(why) => wakers = Some(Err(why)),
                }
            }
        }
        let with_wakers = companions.len() > 1;
        let result = if let Some(cgroup) = cgroup {
            let mut attr = attr;
            attr.set_inherit(0);
            attr.set_enable_on_exec(0);
            attr.set_disabled(1);
            Samplers::open_cgroup(&event.name, &attr, cgroup.fd(), pid, &cpus, pages)
        } else if attach {
            Samplers::attach_with(&event.name, &attr, &companions, pid, &cpus, pages)
        } else {
            Samplers::open_process_with(&event.name, &attr, &companions, pid, &cpus, pages)
        };
        match result {
            Ok(samplers) => {
                if let Some(note) = kernel_refused.take() {
                    tell(note);
                }
                if let Some(note) = switch_refused.take() {
                    tell(note);
                } else if let Some(Err(why)) = &wakers {
                    // (Without kernel stacks, the note above says more.)
                    tell(Note::NoWakers(why.clone()));
                }
                if pages != asked {
                    tell(Note::SmallerBuffers { asked, pages });
                }
                if let (
                    CallGraph::Dwarf { stack_size: asked },
                    CallGraph::Dwarf { stack_size: used },
                ) = (request.call_graph, options.call_graph)
                {
                    if used < asked {
                        tell(Note::SmallerStackCopy { asked, used, pages });
                    }
                }
                return Ok(Opened {
                    samplers,
                    event,
                    wakers,
                    on_cgroup: cgroup.is_some(),
                    call_graph: options.call_graph,
                });
            }
            // The wake-up sampler refused (no permission for the tracepoint, a kernel without
            // its filter): record without it, and say why in the profile.
            Err(SamplerError::Open(e)) if with_wakers && e.is_permission() => {
                wakers = Some(Err(format!(
                    "the kernel refused the {} tracepoint ({e}); run rprof record as root",
                    crate::locks::WAKER_EVENT
                )));
            }
            Err(SamplerError::Filter { source, .. }) if with_wakers => {
                wakers = Some(Err(format!(
                    "the kernel refused the filter of the {} tracepoint ({source})",
                    crate::locks::WAKER_EVENT
                )));
            }
            // Kernels before 5.12 do not know attr.build_id: MMAP2 records then carry the inode.
            Err(SamplerError::Open(e)) if e.errno == libc::EINVAL && options.mmap_build_id => {
                options.mmap_build_id = false;
            }
            // CPU-wide events on the cgroup refused (not root nor CAP_PERFMON, a kernel without
            // cgroup events): inherited per-task events, as without a cgroup.
            Err(SamplerError::Open(_)) if cgroup.is_some() => cgroup = None,
            Err(SamplerError::Open(e))
                if e.is_permission()
                    && e.counts_kernel
                    && event.exclude_kernel
                    && request.off_cpu
                    && switch_kernel =>
            {
                switch_kernel = false;
                switch_refused = Some(Note::OffCpuNoStacks {
                    paranoid: e.paranoid,
                });
            }
            Err(SamplerError::Open(e))
                if e.is_permission() && e.counts_kernel && !event.exclude_kernel =>
            {
                // Said only once the user-only events open: attaching may still be refused.
                kernel_refused = Some(Note::UserOnly {
                    paranoid: e.paranoid,
                });
                event = event.user_only();
            }
            Err(SamplerError::Map { source, .. })
                if source.is_mlock_limit() && !request.explicit_pages && pages / 2 >= MIN_PAGES =>
            {
                pages /= 2;
            }
            Err(SamplerError::Map { source, .. }) if source.is_mlock_limit() => {
                return Err(RecordError::Refused(mlock_message(pages, &source)));
            }
            Err(SamplerError::Open(e)) if e.is_permission() && attach => {
                return Err(RecordError::Refused(attach_permission_message(pid, &e)));
            }
            Err(SamplerError::Open(e)) if e.is_no_such_process() && attach => {
                return Err(RecordError::Gone(pid));
            }
            Err(SamplerError::Gone { .. }) if attach => return Err(RecordError::Gone(pid)),
            Err(SamplerError::Threads { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(RecordError::Gone(pid));
            }
            Err(e) => return Err(RecordError::Sampler(e)),
        }
    }
}

fn mlock_message(pages: usize, source: &MapError) -> String {
    if privileged() {
        // Root (or CAP_IPC_LOCK) is not held to the locked-memory limits: the kernel could not
        // provide that much memory. Advising to run as root would be advising what is done.
        let page = rprof_perf::ring::page_size();
        return format!(
            "{source}: the kernel cannot provide ring buffers this large ({} MiB per CPU); use a smaller buffer (-m {}M, the default for dwarf stacks, is enough for most programs)",
            (pages as u64 * page as u64) >> 20,
            (default_dwarf_pages() * page) >> 20
        );
    }
    let mlock = rprof_events::mlock_kb().map_or("unreadable".to_string(), |kb| format!("{kb} KiB"));
    format!(
        "{source}: over the locked-memory limit for perf buffers (kernel.perf_event_mlock_kb = {mlock} per CPU, plus `ulimit -l`); use a smaller buffer (-m {}), raise the limit with `sudo sysctl -w kernel.perf_event_mlock_kb={}`, or run as root",
        affordable_pages().map_or(pages / 4, |p| p.min(pages / 2)).max(1),
        (pages * rprof_perf::ring::page_size() / 1024 + 4).max(516)
    )
}

fn process_owner(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

fn attach_permission_message(pid: u32, e: &OpenError) -> String {
    let me = nix::unistd::geteuid().as_raw();
    match process_owner(pid) {
        Some(owner) if owner != me => format!(
            "cannot attach to process {pid}: it belongs to uid {owner} and rprof runs as uid {me}; only root (or CAP_PERFMON with ptrace access) may profile other users' processes: run `sudo rprof record -p {pid}`"
        ),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_buffers_are_powers_of_two() {
        for cg in [
            CallGraph::Dwarf { stack_size: 8 },
            CallGraph::FramePointer,
            CallGraph::None,
        ] {
            let pages = default_pages(cg, Rate::Frequency(999));
            assert!(pages.is_power_of_two() && pages >= 1, "{pages}");
        }
    }

    /// Issue 13: dwarf rings are sized for the rate: 4 MiB at 999 Hz with 64 KiB copies, the
    /// largest from about 4 kHz, the smallest at low rates or small copies.
    #[test]
    fn rings_are_sized_for_the_rate() {
        let page = rprof_perf::ring::page_size();
        let dwarf = CallGraph::Dwarf {
            stack_size: rprof_perf::MAX_STACK_COPY,
        };
        let bytes = |cg, rate| wanted_pages(cg, rate) * page;
        assert_eq!(bytes(dwarf, Rate::Frequency(999)), 4 << 20);
        assert_eq!(bytes(dwarf, Rate::Frequency(10_000)), 16 << 20);
        assert_eq!(bytes(dwarf, Rate::Period(1000)), 16 << 20);
        assert_eq!(bytes(dwarf, Rate::Frequency(1)), MIN_DWARF_RING);
        let small = CallGraph::Dwarf { stack_size: 8192 };
        assert_eq!(bytes(small, Rate::Frequency(999)), 1 << 20);
        assert_eq!(
            bytes(CallGraph::FramePointer, Rate::Frequency(999)),
            1 << 20
        );
        for hz in [1, 99, 999, 4999, 10_000, 100_000] {
            let pages = wanted_pages(dwarf, Rate::Frequency(hz));
            assert!(pages.is_power_of_two(), "{hz}: {pages}");
            // The ring lasts at least 1/16 s or is the largest.
            let sample = (rprof_perf::MAX_STACK_COPY as usize + SAMPLE_OVERHEAD) as u64;
            assert!(
                (pages * page) as u64 * RING_FRACTION_OF_SECOND >= hz * sample
                    || pages == default_dwarf_pages(),
                "{hz}"
            );
        }
    }

    /// Issue 13: a ring capped by the locked-memory limit holds MIN_SAMPLES_PER_RING samples;
    /// a large ring keeps the copy asked for.
    #[test]
    fn stack_copies_fit_capped_rings() {
        let page = rprof_perf::ring::page_size();
        let unprivileged = (512 << 10) / page;
        let copy = fitted_stack_copy(unprivileged, rprof_perf::MAX_STACK_COPY);
        assert_eq!(copy % 8, 0);
        assert!((MIN_FITTED_STACK_COPY..4096).contains(&copy), "{copy}");
        let sample = copy as usize + SAMPLE_OVERHEAD;
        assert!((512 << 10) / sample >= MIN_SAMPLES_PER_RING);
        assert_eq!(
            fitted_stack_copy(default_dwarf_pages(), rprof_perf::MAX_STACK_COPY),
            rprof_perf::MAX_STACK_COPY
        );
        assert_eq!(fitted_stack_copy(unprivileged, 2048), 2048);
        assert_eq!(fitted_stack_copy(1, 65528), MIN_FITTED_STACK_COPY);
    }
}
