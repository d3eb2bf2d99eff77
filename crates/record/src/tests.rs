//! Unit tests of the recorder: the kernel's build-id note, and the recorder's rules replayed
//! from captured record streams (`fixtures/captures/`, made by `scripts/capture.sh`) without a
//! kernel.

use super::*;

/// One ELF note as the kernel lays them out in `/sys/kernel/notes`.
fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// Issue 10: the build-id test used to pass without checking anything when
/// `/sys/kernel/notes` was unreadable; the note parser is now tested on bytes.
#[test]
fn gnu_build_id_is_found_among_other_notes() {
    let id: Vec<u8> = (1..=20).collect();
    let mut notes = note(b"Xen\0", 3, &[9; 8]);
    notes.extend(note(b"GNU\0", 1, &[0; 16])); // NT_GNU_ABI_TAG: not the build id
    notes.extend(note(b"GNU\0", 3, &id));
    notes.extend(note(b"Linux\0", 6, &[1, 2, 3]));
    assert_eq!(gnu_build_id(&notes), Some(id.clone()));
    // Without the build-id note, or cut inside it: none, never a panic.
    assert_eq!(gnu_build_id(&note(b"Xen\0", 3, &[9; 8])), None);
    assert_eq!(gnu_build_id(&[]), None);
    let full = {
        let mut n = note(b"Xen\0", 3, &[9; 8]);
        n.extend(note(b"GNU\0", 3, &id));
        n
    };
    for len in 0..full.len() - 3 {
        assert_eq!(gnu_build_id(&full[..len]), None, "len {len}");
    }
    // Sizes that point far beyond the bytes.
    let mut huge = note(b"GNU\0", 3, &id);
    huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(gnu_build_id(&huge), None);
    let mut huge = note(b"GNU\0", 3, &id);
    huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(gnu_build_id(&huge), None);
}

#[test]
#[ignore = "reads the running kernel's /sys/kernel/notes, which is unreadable for non-root users \
            and in some containers; run with --ignored as root"]
fn this_kernel_has_a_build_id() {
    let id = kernel_build_id().expect("no GNU build id in /sys/kernel/notes");
    assert!((8..=64).contains(&id.len()), "{id:?}");
}

mod replay {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::PathBuf;

    use perf_event_open_sys::bindings as sys;
    use rprof_perf::parse::{parse_record, PerfRecord};
    use rprof_perf::SampleFormat;
    use rprof_profile::format::BlockReader;
    use rprof_profile::{Header, ModuleId, ModuleKind, Record, Sample};

    use crate::capture::{self, Capture, CaptureError};
    use crate::{BufferRecords, Settings, Stats};

    fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/captures")
            .join(name)
    }

    /// A replayed capture: the counts, and the profile records it wrote.
    struct Replayed {
        capture: Capture,
        stats: Stats,
        records: Vec<Record>,
    }

    fn replay(name: &str) -> Replayed {
        let capture = Capture::open(&path(&format!("{name}.cap")))
            .unwrap_or_else(|e| panic!("{name}.cap: {e}"));
        let (out, stats) = capture::replay(&capture, Vec::new(), &Header::default()).unwrap();
        let (_, mut reader) = BlockReader::new(&out[..], name).unwrap();
        let mut records = Vec::new();
        while let Some(block) = reader.next_records().unwrap() {
            records.extend(block);
        }
        Replayed {
            capture,
            stats,
            records,
        }
    }

    impl Replayed {
        fn samples(&self) -> impl Iterator<Item = &Sample> {
            self.records.iter().filter_map(|r| match r {
                Record::Sample(s) => Some(s),
                _ => None,
            })
        }

        /// Module id → (path, kind), in the order the Module records came.
        fn modules(&self) -> Vec<(ModuleId, String, ModuleKind)> {
            self.records
                .iter()
                .filter_map(|r| match r {
                    Record::Module(m) => Some((m.id, m.path.clone(), m.kind)),
                    _ => None,
                })
                .collect()
        }

        fn module_path(&self, id: Option<ModuleId>) -> Option<String> {
            let id = id?;
            self.modules()
                .into_iter()
                .find(|(m, _, _)| *m == id)
                .map(|(_, path, _)| path)
        }

        /// The perf records of the capture, parsed.
        fn perf_records(&self) -> Vec<PerfRecord<'_>> {
            let format = self.capture.format();
            self.capture
                .records()
                .map(|bytes| parse_record(&format, bytes).unwrap())
                .collect()
        }
    }

    /// The counts `scripts/capture.sh` saved from the live recording (`NAME.counts`).
    fn live_counts(name: &str) -> BTreeMap<String, u64> {
        let text = std::fs::read_to_string(path(&format!("{name}.counts"))).unwrap();
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
            .collect()
    }

    const CAPTURES: [&str; 4] = ["threads", "forkexec", "execloop", "lost"];

    /// Issue 10: the recorder's rules are tested from captured record streams. Replaying a
    /// capture counts what the live recording counted.
    #[test]
    fn a_replay_counts_what_the_recording_counted() {
        for name in CAPTURES {
            let r = replay(name);
            let live = live_counts(name);
            let replayed = BTreeMap::from([
                ("lost".to_string(), r.stats.lost),
                ("processes".to_string(), r.stats.processes.len() as u64),
                ("samples".to_string(), r.stats.samples),
                ("threads".to_string(), r.stats.threads.len() as u64),
            ]);
            assert_eq!(replayed, live, "{name}");
            assert_eq!(r.stats.bad_records, 0, "{name}");
            assert_eq!(r.samples().count() as u64, r.stats.samples, "{name}");
        }
    }

    /// Issue 13: with new lookups noted (to be named while the target runs), each (module,
    /// lookup address) the samples use is handed out once, in the round that first used it,
    /// with its module known; together they are every address named at the end.
    #[test]
    fn new_lookups_are_handed_out_once_each() {
        for name in CAPTURES {
            let capture = Capture::open(&path(&format!("{name}.cap"))).unwrap();
            let mut recorder = capture::recorder(&capture, Vec::new(), &Header::default()).unwrap();
            recorder.note_new_lookups();
            let mut source = capture.replay();
            let mut seen = Vec::new();
            let mut rounds = 0;
            while !source.is_done() {
                recorder.drain(&mut source).unwrap();
                let (modules, new) = recorder.take_new_lookups();
                for (module, _) in &new {
                    assert!(modules.iter().any(|m| m.id == *module), "{name}");
                }
                rounds += usize::from(!new.is_empty());
                seen.extend(new);
            }
            let mut handed = seen.clone();
            handed.sort_unstable();
            handed.dedup();
            assert_eq!(handed.len(), seen.len(), "{name}: each once");
            let mut wanted = Vec::new();
            recorder
                .finish(|_, all| {
                    for (module, lookups) in all.iter() {
                        wanted.extend(lookups.iter().map(|&a| (module, a)));
                    }
                    Vec::new()
                })
                .unwrap();
            assert!(!wanted.is_empty(), "{name}");
            assert_eq!(handed, wanted, "{name}");
            assert!(
                rounds > 1,
                "{name}: handed out as they came, {rounds} rounds"
            );
        }
    }

    /// Issue 10: a launched program's threads (record_threads: main + alpha, beta, gamma) are
    /// one process with four threads, each named by its COMM record.
    #[test]
    fn threads_of_a_launched_program() {
        let r = replay("threads");
        assert_eq!(r.stats.processes.len(), 1);
        assert_eq!(r.stats.threads.len(), 4);
        let pid = *r.stats.processes.iter().next().unwrap();
        let mut names = BTreeMap::new();
        let mut forks = BTreeSet::new();
        let mut exits = 0;
        for record in &r.records {
            match record {
                Record::Comm {
                    pid: p, tid, name, ..
                } => {
                    assert_eq!(*p, pid);
                    names.insert(name.clone(), *tid);
                }
                Record::Fork {
                    pid: p, ppid, tid, ..
                } => {
                    // Threads: same process.
                    assert_eq!((*p, *ppid), (pid, pid));
                    forks.insert(*tid);
                }
                Record::Exit { pid: p, .. } => {
                    assert_eq!(*p, pid);
                    exits += 1;
                }
                _ => {}
            }
        }
        let workers: BTreeSet<u32> = ["alpha", "beta", "gamma"]
            .iter()
            .map(|n| {
                *names
                    .get(*n)
                    .unwrap_or_else(|| panic!("no COMM {n}: {names:?}"))
            })
            .collect();
        assert_eq!(workers, forks);
        assert_eq!(exits, 4);
        // Every worker was sampled; gamma (3 units of work) more than alpha (1 unit).
        let mut per_tid: HashMap<u32, usize> = HashMap::new();
        for s in r.samples() {
            assert_eq!(s.pid, pid);
            *per_tid.entry(s.tid).or_default() += 1;
        }
        for tid in &workers {
            assert!(per_tid.get(tid).is_some_and(|&n| n > 0), "{per_tid:?}");
        }
        assert!(
            per_tid[&names["gamma"]] > per_tid[&names["alpha"]],
            "{per_tid:?}"
        );
    }

    /// Issue 10: module ids are dense, each module is written once and before any sample uses
    /// it, kernel addresses use the one kernel module, which carries the recording kernel's
    /// build id.
    #[test]
    fn module_ids_are_dense_and_written_before_use() {
        for name in CAPTURES {
            let r = replay(name);
            let mut written = BTreeSet::new();
            let mut keys = BTreeSet::new();
            let mut kernel = None;
            let mut used = 0;
            for record in &r.records {
                match record {
                    Record::Module(m) => {
                        assert_eq!(m.id, ModuleId(written.len() as u32), "{name}: {m:?}");
                        assert!(keys.insert((m.path.clone(), m.build_id.clone())), "{m:?}");
                        written.insert(m.id);
                        if m.kind == ModuleKind::Kernel {
                            assert!(kernel.is_none(), "{name}: two kernel modules");
                            assert_eq!(m.build_id, r.capture.settings().kernel_build_id);
                            kernel = Some(m.id);
                        }
                    }
                    Record::Sample(s) => {
                        for a in s.user.iter().chain(&s.kernel) {
                            if let Some(id) = a.module {
                                assert!(written.contains(&id), "{name}: {id:?} used first");
                                used += 1;
                            }
                        }
                        for a in &s.kernel {
                            assert_eq!(a.module, kernel, "{name}: kernel frame {a:?}");
                        }
                    }
                    _ => {}
                }
            }
            assert!(used > 0, "{name}: no sample used a module");
        }
        // The launched program is a module of its own recording.
        let r = replay("threads");
        assert!(
            r.modules()
                .iter()
                .any(|(_, p, k)| p.ends_with("/record_threads") && *k == ModuleKind::Elf),
            "{:?}",
            r.modules()
        );
    }

    /// Issue 10: fork + exec (record_forkexec): the parent forks two children, one of which
    /// execs; three processes, each sampled, each exiting once.
    #[test]
    fn fork_and_exec_bookkeeping() {
        let r = replay("forkexec");
        assert_eq!(r.stats.processes.len(), 3);
        let mut children = BTreeSet::new();
        let mut parents = BTreeSet::new();
        let mut execs = Vec::new();
        let mut exits = BTreeSet::new();
        for record in &r.records {
            match record {
                Record::Fork { pid, ppid, .. } => {
                    assert_ne!(pid, ppid, "the fixture has no threads");
                    children.insert(*pid);
                    parents.insert(*ppid);
                }
                Record::Comm {
                    pid,
                    exec: true,
                    name,
                    ..
                } => execs.push((*pid, name.clone())),
                Record::Exit { pid, tid, .. } => {
                    assert_eq!(pid, tid);
                    exits.insert(*pid);
                }
                _ => {}
            }
        }
        assert_eq!(children.len(), 2);
        assert_eq!(parents.len(), 1);
        let parent = *parents.iter().next().unwrap();
        // The launched program's own exec, and the exec'd child's, which renamed itself to
        // the program it ran.
        assert_eq!(execs.len(), 2, "{execs:?}");
        let child_execs: Vec<&(u32, String)> =
            execs.iter().filter(|(pid, _)| *pid != parent).collect();
        assert_eq!(child_execs.len(), 1, "{execs:?}");
        assert!(children.contains(&child_execs[0].0));
        assert_eq!(child_execs[0].1, "record_forkexec");
        let all: BTreeSet<u32> = children.iter().copied().chain([parent]).collect();
        assert_eq!(exits, all);
        let sampled: BTreeSet<u32> = r.samples().map(|s| s.pid).collect();
        assert_eq!(sampled, all);
        // Every process's user stacks start in a module of the program, libc or the vDSO.
        for s in r.samples() {
            let leaf = r.module_path(s.user.first().and_then(|a| a.module));
            assert!(
                leaf.as_deref()
                    .is_some_and(|p| p.ends_with("/record_forkexec")
                        || p.contains("libc.so")
                        || p == "[vdso]"),
                "{leaf:?}"
            );
        }
    }

    /// Issue 10: an exec-heavy loop (sh running /bin/true 100 times): 100 forked children
    /// that exec, whose samples after the exec are in the new program's modules, never in the
    /// shell's.
    #[test]
    fn exec_loop_children_run_the_new_program() {
        let r = replay("execloop");
        assert_eq!(r.stats.processes.len(), 101);
        let mut exec_time = HashMap::new();
        let mut shells = BTreeSet::new();
        let mut shell_execs = Vec::new();
        for record in &r.records {
            match record {
                Record::Fork { ppid, pid, .. } => {
                    assert_ne!(ppid, pid);
                    shells.insert(*ppid);
                }
                Record::Comm {
                    pid,
                    exec: true,
                    name,
                    time,
                    ..
                } => {
                    if name == "true" {
                        exec_time.insert(*pid, *time);
                    } else {
                        // The launched shell's own exec.
                        assert_eq!(name, "sh");
                        shell_execs.push(*pid);
                    }
                }
                _ => {}
            }
        }
        assert_eq!(shells.len(), 1, "one shell forks every child");
        assert_eq!(shell_execs, shells.iter().copied().collect::<Vec<_>>());
        assert_eq!(exec_time.len(), 100);
        let modules = r.modules();
        let true_id = modules
            .iter()
            .find(|(_, p, _)| p.ends_with("/true"))
            .map(|(id, _, _)| *id)
            .expect("/bin/true is a module");
        let dash: BTreeSet<ModuleId> = modules
            .iter()
            .filter(|(_, p, _)| p.ends_with("/dash") || p.ends_with("/sh") || p.ends_with("/bash"))
            .map(|(id, _, _)| *id)
            .collect();
        assert!(!dash.is_empty(), "the shell is a module: {modules:?}");
        let mut in_true = 0;
        for s in r.samples() {
            let Some(&exec) = exec_time.get(&s.pid) else {
                continue;
            };
            if s.time <= exec {
                continue;
            }
            for a in &s.user {
                assert!(
                    a.module.is_none_or(|m| !dash.contains(&m)),
                    "pid {} after its exec at {exec}: {s:?}",
                    s.pid
                );
            }
            in_true += usize::from(s.user.first().and_then(|a| a.module) == Some(true_id));
        }
        assert!(in_true > 0, "no sample in /bin/true after an exec");
    }

    /// Issue 10: a sample taken inside execve (the kernel could copy no user stack) keeps its
    /// kernel stack only, not marked truncated: the user registers belong to the image being
    /// replaced.
    #[test]
    fn samples_inside_execve_keep_only_their_kernel_stack() {
        let r = replay("execloop");
        let format: SampleFormat = r.capture.format();
        let mut inside = BTreeSet::new();
        for bytes in r.capture.records() {
            if let Ok(PerfRecord::Sample(s)) = parse_record(&format, bytes) {
                let kernel = s.callchain.is_some_and(|c| {
                    c.addresses()
                        .any(|(ctx, _)| ctx == rprof_perf::parse::CallchainContext::Kernel)
                });
                let user_regs = s.regs_user.is_some_and(|r| r.abi != 0);
                if kernel && user_regs && s.stack_user == Some(&[][..]) {
                    inside.insert((s.time.unwrap(), s.tid.unwrap()));
                }
            }
        }
        assert!(
            !inside.is_empty(),
            "the capture has no sample inside execve"
        );
        let (mut checked, mut cleared) = (0, 0);
        for s in r.samples() {
            if inside.contains(&(s.time, s.tid)) {
                // No frame of the image being replaced (an unknown process's lone IP may
                // stay, outside every module), the kernel stack, and not "truncated".
                assert!(s.user.iter().all(|a| a.module.is_none()), "{s:?}");
                assert!(!s.kernel.is_empty(), "{s:?}");
                assert!(!s.truncated, "{s:?}");
                checked += 1;
                cleared += usize::from(s.user.is_empty());
            }
        }
        assert_eq!(checked, inside.len());
        // Most of them were unwound into the old image, failed, and were cleared.
        assert!(cleared * 2 > checked, "{cleared} of {checked}");
    }

    /// Issue 10: LOST records (a one-page ring buffer at a high rate) are counted and written,
    /// as many as the kernel reported.
    #[test]
    fn lost_records_are_counted_and_written() {
        let r = replay("lost");
        let reported: u64 = r
            .perf_records()
            .iter()
            .map(|p| match p {
                PerfRecord::Lost(l) => l.lost,
                PerfRecord::LostSamples(l) => l.lost,
                _ => 0,
            })
            .sum();
        assert!(reported > 0, "the capture has no LOST record");
        assert_eq!(r.stats.lost, reported);
        let written: u64 = r
            .records
            .iter()
            .map(|x| match x {
                Record::Lost { count, .. } => *count,
                _ => 0,
            })
            .sum();
        assert_eq!(written, reported);
    }

    /// The `sample_id` trailer of `format` for a record of `pid`/`tid` at `time`.
    fn sample_id(format: &SampleFormat, pid: u32, tid: u32, time: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let has = |bit: u32| format.sample_type & u64::from(bit) != 0;
        if has(sys::PERF_SAMPLE_TID) {
            out.extend(pid.to_ne_bytes());
            out.extend(tid.to_ne_bytes());
        }
        if has(sys::PERF_SAMPLE_TIME) {
            out.extend(time.to_ne_bytes());
        }
        for bit in [sys::PERF_SAMPLE_ID, sys::PERF_SAMPLE_STREAM_ID] {
            if has(bit) {
                out.extend(0u64.to_ne_bytes());
            }
        }
        if has(sys::PERF_SAMPLE_CPU) {
            out.extend(0u64.to_ne_bytes());
        }
        if has(sys::PERF_SAMPLE_IDENTIFIER) {
            out.extend(0u64.to_ne_bytes());
        }
        assert_eq!(out.len(), format.sample_id_size());
        out
    }

    fn perf_record(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(kind.to_ne_bytes());
        out.extend(0u16.to_ne_bytes());
        out.extend(((8 + body.len()) as u16).to_ne_bytes());
        out.extend_from_slice(body);
        out
    }

    /// One round in the capture layout: one buffer holding `records`.
    fn round(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(1u32.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((records.len() as u32).to_le_bytes());
        for r in records {
            out.extend((r.len() as u32).to_le_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    /// Issue 10: THROTTLE records count once each (UNTHROTTLE not), and both are written.
    /// (No capture of this machine has one: they are added to a real capture as one more
    /// round.)
    #[test]
    fn throttling_is_counted() {
        let bytes = std::fs::read(path("threads.cap")).unwrap();
        let base = Capture::parse(bytes.clone()).unwrap();
        let format = base.format();
        let (pid, time) = (77, u64::MAX / 2);
        let throttle = |kind, t: u64| {
            let mut body = Vec::new();
            body.extend(t.to_ne_bytes());
            body.extend(1u64.to_ne_bytes()); // id
            body.extend(1u64.to_ne_bytes()); // stream id
            body.extend(sample_id(&format, pid, pid, t));
            perf_record(kind, &body)
        };
        let extra = round(&[
            throttle(sys::PERF_RECORD_THROTTLE, time),
            throttle(sys::PERF_RECORD_UNTHROTTLE, time + 1),
            throttle(sys::PERF_RECORD_THROTTLE, time + 2),
        ]);
        let mut with = bytes;
        with.extend(extra);
        let capture = Capture::parse(with).unwrap();
        assert_eq!(capture.rounds(), base.rounds() + 1);
        let (_, stats) = capture::replay(&capture, Vec::new(), &Header::default()).unwrap();
        let (_, before) = capture::replay(&base, Vec::new(), &Header::default()).unwrap();
        assert_eq!(stats.throttled, before.throttled + 2);
        assert_eq!(stats.samples, before.samples);
    }

    /// A capture written by [`crate::CaptureWriter`] reads back with the same rounds.
    #[test]
    fn captures_round_trip() {
        let original = Capture::open(&path("forkexec.cap")).unwrap();
        let file = std::env::temp_dir().join(format!("rprof-capture-test-{}", std::process::id()));
        let settings = Settings {
            capture: Some(file.clone()),
            ..original.settings()
        };
        let mut writer =
            crate::CaptureWriter::create(&file, &settings, original.call_graph()).unwrap();
        let mut source = original.replay();
        while !source.is_done() {
            use crate::RecordSource;
            source
                .read_round(&mut |buffers: &[BufferRecords<'_>]| {
                    // Issue 11: the off-CPU sampler's ids travel in the header; issue 17: so
                    // do the wake-up sampler's.
                    writer.round(&original.format(), &[42, 43], &[43], buffers)
                })
                .unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        let copy = Capture::open(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(copy.rounds(), original.rounds());
        assert_eq!(copy.format(), original.format());
        assert_eq!(copy.call_graph(), original.call_graph());
        assert_eq!(copy.settings(), original.settings());
        assert!(copy.records().eq(original.records()));
        assert_eq!(copy.companion_ids(), [42, 43]);
        assert_eq!(crate::RecordSource::wake_ids(&copy.replay()), [43]);
        // A capture written before the ids were added has none.
        assert!(original.companion_ids().is_empty());
        assert!(crate::RecordSource::wake_ids(&original.replay()).is_empty());
    }

    /// Captures are parsed without trusting them: every truncation and a few corruptions are
    /// errors, never panics.
    #[test]
    fn malformed_captures_are_errors() {
        let bytes = std::fs::read(path("threads.cap")).unwrap();
        let whole = Capture::parse(bytes.clone()).unwrap();
        // Cutting inside the header or inside a round is an error; cutting between rounds is
        // a shorter capture.
        let mut shorter = 0;
        for len in (0..bytes.len()).step_by(7) {
            match Capture::parse(bytes[..len].to_vec()) {
                Ok(c) => {
                    assert!(c.rounds() < whole.rounds());
                    shorter += 1;
                }
                Err(CaptureError::Malformed { offset, .. }) => assert!(offset <= len),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(shorter < 10);
        let corrupt = |at: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[at..at + value.len()].copy_from_slice(value);
            Capture::parse(b).unwrap_err().to_string()
        };
        assert!(corrupt(0, b"X").contains("magic"));
        assert!(corrupt(8, &2u32.to_le_bytes()).contains("version"));
        assert!(corrupt(12, &u32::MAX.to_le_bytes()).contains("header"));
        // The first round's buffer count.
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let first_round = 16 + header_len;
        assert!(corrupt(first_round, &u32::MAX.to_le_bytes()).contains("buffers"));
        // The first record's length (buffers, flags, records, then len).
        assert!(corrupt(first_round + 12, &(1u32 << 20).to_le_bytes()).contains("record"));
        assert!(Capture::open(&path("no-such.cap")).is_err());
    }

    /// Records handed over round by round (one buffer each), as a source that says which
    /// events are the off-CPU sampler.
    struct Rounds {
        format: SampleFormat,
        rounds: Vec<Vec<Vec<u8>>>,
    }

    impl crate::RecordSource for Rounds {
        fn format(&self) -> SampleFormat {
            self.format
        }

        fn companion_ids(&self) -> &[u64] {
            &[42]
        }

        fn read_round(
            &mut self,
            apply: &mut dyn FnMut(&[BufferRecords<'_>]) -> std::io::Result<()>,
        ) -> std::io::Result<()> {
            let records = if self.rounds.is_empty() {
                Vec::new()
            } else {
                self.rounds.remove(0)
            };
            apply(&[BufferRecords {
                records: records.iter().map(Vec::as_slice).collect(),
                ring_error: false,
            }])
        }
    }

    /// Issue 11: switch records pair into off-CPU blocks: a new thread's wait for its first
    /// switch-in is `cpu` (preempted), a switch-out opens a block that the next switch-in
    /// closes, a second switch-out without a switch-in is counted as unpaired, and a block
    /// still open when the recording stops ends there, not ended. A switch-in that reaches the
    /// recorder a round before its switch-out (or its thread's FORK), read from another CPU's
    /// buffer, pairs with it when it comes.
    #[test]
    fn switch_records_pair_into_blocks() {
        let base = Capture::parse(std::fs::read(path("threads.cap")).unwrap()).unwrap();
        let format = base.format();
        let (pid, tid) = (10, 11);
        let switch_of = |tid: u32, misc: u16, time: u64| {
            let mut out = perf_record(sys::PERF_RECORD_SWITCH, &sample_id(&format, pid, tid, time));
            out[4..6].copy_from_slice(&misc.to_ne_bytes());
            out
        };
        let switch = |misc: u16, time: u64| switch_of(tid, misc, time);
        let fork_of = |tid: u32, time: u64| {
            let mut body = Vec::new();
            for v in [pid, pid, tid, pid] {
                body.extend(v.to_ne_bytes());
            }
            body.extend(time.to_ne_bytes());
            body.extend(sample_id(&format, pid, tid, time));
            perf_record(sys::PERF_RECORD_FORK, &body)
        };
        let out = rprof_perf::parse::MISC_SWITCH_OUT;
        let preempt = out | rprof_perf::parse::MISC_SWITCH_OUT_PREEMPT;
        let mut source = Rounds {
            format,
            rounds: vec![
                vec![
                    fork_of(tid, 100),
                    switch(0, 150),
                    switch(preempt, 200),
                    switch(0, 260),
                    switch(out, 300),
                    switch(out, 350),
                    // Thread 12's first switch-in before its FORK.
                    switch_of(12, 0, 450),
                    fork_of(13, 100),
                    switch_of(13, 0, 120),
                ],
                // Thread 13's switch-in before its switch-out.
                vec![fork_of(12, 400), switch_of(13, 0, 300)],
                vec![switch_of(13, out, 250)],
            ],
        };
        let mut recorder = capture::recorder(&base, Vec::new(), &Header::default()).unwrap();
        for _ in 0..3 {
            recorder.drain(&mut source).unwrap();
        }
        recorder.set_stop_time(500);
        let (bytes, stats) = recorder.finish(|_, _| Vec::new()).unwrap();
        assert_eq!((stats.off_cpu_blocks, stats.unpaired_switches), (6, 1));
        assert_eq!(stats.off_cpu_without_stack, 6);
        let profile = rprof_profile::Profile::read(&bytes[..], "test").unwrap();
        let mut blocks: Vec<_> = profile
            .off_cpu
            .iter()
            .map(|b| (b.tid, b.start, b.end, b.preempted, b.ended))
            .collect();
        blocks.sort_unstable();
        assert_eq!(
            blocks,
            [
                (tid, 100, 150, true, true),
                (tid, 200, 260, true, true),
                (tid, 350, 500, false, false),
                (12, 400, 450, true, true),
                (13, 100, 120, true, true),
                (13, 250, 300, false, true),
            ]
        );
        // Nothing of this is a sample.
        assert!(profile.samples.is_empty());
    }

    /// Issue 13: a LOST record may have taken a process's MMAP records with it. A live recorder
    /// then reads `/proc/PID/maps` again for the first sample of that process it cannot unwind
    /// (here: this test process, of which no mapping was ever recorded), and names the sample's
    /// code; a replay (whose processes are not the ones in `/proc`) does not, nor does a live
    /// recorder before anything was lost.
    #[test]
    fn mappings_are_read_again_after_lost_records() {
        use rprof_perf::parse::x86_64;
        let format = SampleFormat {
            sample_type: u64::from(
                sys::PERF_SAMPLE_IP
                    | sys::PERF_SAMPLE_TID
                    | sys::PERF_SAMPLE_TIME
                    | sys::PERF_SAMPLE_REGS_USER
                    | sys::PERF_SAMPLE_STACK_USER,
            ),
            regs_user_mask: (1 << x86_64::BP) | (1 << x86_64::SP) | (1 << x86_64::IP),
            read_format: 0,
            sample_id_all: true,
        };
        let pid = std::process::id();
        let ip = mappings_are_read_again_after_lost_records as fn() as usize as u64;
        let lost = |time: u64| {
            let mut body = Vec::new();
            body.extend(1u64.to_ne_bytes()); // id
            body.extend(5u64.to_ne_bytes()); // lost
            body.extend(sample_id(&format, pid, pid, time));
            perf_record(sys::PERF_RECORD_LOST, &body)
        };
        let sample = |time: u64| {
            let mut body = Vec::new();
            body.extend(ip.to_ne_bytes());
            body.extend(pid.to_ne_bytes());
            body.extend(pid.to_ne_bytes());
            body.extend(time.to_ne_bytes());
            body.extend(u64::from(sys::PERF_SAMPLE_REGS_ABI_64).to_ne_bytes());
            // BP, SP, IP (mask order); no stack bytes copied.
            body.extend(0u64.to_ne_bytes());
            body.extend(0x7fff_0000_0000u64.to_ne_bytes());
            body.extend(ip.to_ne_bytes());
            body.extend(0u64.to_ne_bytes());
            perf_record(sys::PERF_RECORD_SAMPLE, &body)
        };
        let named = |live: bool, rounds: Vec<Vec<Vec<u8>>>| {
            let settings = Settings {
                max_stack: 127,
                kernel_build_id: None,
                capture: None,
                live,
            };
            let mut recorder = crate::Recorder::with_settings(
                Vec::new(),
                &Header::default(),
                rprof_perf::CallGraph::Dwarf { stack_size: 8192 },
                settings,
            )
            .unwrap();
            let mut source = Rounds { format, rounds };
            for _ in 0..3 {
                recorder.drain(&mut source).unwrap();
            }
            let (bytes, stats) = recorder.finish(|_, _| Vec::new()).unwrap();
            assert_eq!(stats.samples, 2);
            let profile = rprof_profile::Profile::read(&bytes[..], "test").unwrap();
            profile
                .samples
                .iter()
                .map(|s| s.user.first().is_some_and(|a| a.module.is_some()))
                .collect::<Vec<bool>>()
        };
        // Live, after a loss: the first failing sample reads the maps; both are named.
        assert_eq!(
            named(true, vec![vec![lost(10), sample(20)], vec![sample(30)]]),
            [true, true]
        );
        // Replayed: never.
        assert_eq!(
            named(false, vec![vec![lost(10), sample(20)], vec![sample(30)]]),
            [false, false]
        );
        // Live, nothing lost: the process is unknown, and /proc is not read.
        assert_eq!(
            named(true, vec![vec![sample(20)], vec![sample(30)]]),
            [false, false]
        );
    }
}
