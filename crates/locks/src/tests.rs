//! Issue 17: the analysis on a synthetic profile (written and read back through
//! `rprof-profile`): waits grouped per word, retries merged, kinds told apart, wake-ups
//! attributed, waits without registers counted apart.

use rprof_profile::{
    Address, Header, LockRecord, Module, ModuleId, ModuleKind, OffCpu, Profile, Record,
    StoredFrame, Symbols, Wake, Writer,
};

use crate::{analyze, render, Kind, NamedBy, Options, Wakers};

const APP: ModuleId = ModuleId(0);
const LIBC: ModuleId = ModuleId(1);
const LOCK_A: u64 = 0x5555_0000_1000;
const COND_B: u64 = 0x5555_0000_2008;
const MS: u64 = 1_000_000;

fn at(module: ModuleId, address: u64) -> Address {
    Address {
        module: Some(module),
        address,
    }
}

/// A mutex wait in `update` (app.c:20), called from `worker`.
fn mutex_stack() -> Vec<Address> {
    vec![
        at(LIBC, 0x300),
        at(LIBC, 0x401),
        at(APP, 0x201),
        at(APP, 0x101),
    ]
}

/// A condition-variable wait in `consumer` (app.c:30).
fn condvar_stack() -> Vec<Address> {
    vec![at(LIBC, 0x500), at(LIBC, 0x511), at(APP, 0x301)]
}

fn block(tid: u32, start: u64, end: u64, user: Vec<Address>, args: Vec<u64>) -> Record {
    Record::OffCpu(OffCpu {
        pid: 10,
        tid,
        cpu: 0,
        start,
        end,
        ended: true,
        preempted: false,
        user,
        kernel: Vec::new(),
        truncated: false,
        args,
    })
}

fn names(module: ModuleId, entries: &[(u64, &str, &str, u32)]) -> Record {
    let mut strings: Vec<String> = Vec::new();
    let mut index = |s: &str| -> u32 {
        match strings.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                strings.push(s.to_string());
                (strings.len() - 1) as u32
            }
        }
    };
    let entries = entries
        .iter()
        .map(|&(lookup, function, file, line)| {
            let frame = StoredFrame {
                function: index(function),
                file: index(file),
                line,
                inlined: false,
            };
            (lookup, vec![frame])
        })
        .collect();
    Record::Symbols(Symbols {
        module: Some(module),
        strings,
        entries,
    })
}

fn profile(wakers_recorded: bool) -> Profile {
    let mut w = Writer::new(Vec::new(), &Header::default()).unwrap();
    for (id, path) in [(APP, "/nonexistent/app"), (LIBC, "/nonexistent/libc.so.6")] {
        w.push(Record::Module(Module {
            id,
            path: path.into(),
            build_id: None,
            kind: ModuleKind::Elf,
            jit_pid: None,
        }))
        .unwrap();
    }
    w.push(Record::Lock(LockRecord::Wakers {
        recorded: wakers_recorded,
        note: if wakers_recorded {
            String::new()
        } else {
            "run rprof record as root".into()
        },
    }))
    .unwrap();
    let private_wait = vec![LOCK_A, 128, 2];
    // Thread 11 waits 2 ms, runs 10 us, waits again 1 ms (a retry), then sleeps.
    w.push(block(
        11,
        10 * MS,
        12 * MS,
        mutex_stack(),
        private_wait.clone(),
    ))
    .unwrap();
    w.push(block(
        11,
        12 * MS + 10_000,
        13 * MS,
        mutex_stack(),
        private_wait.clone(),
    ))
    .unwrap();
    // Thread 12 waits 3 ms.
    w.push(block(
        12,
        11 * MS,
        14 * MS,
        mutex_stack(),
        private_wait.clone(),
    ))
    .unwrap();
    // Thread 13 waits 20 ms on a condition variable (FUTEX_WAIT_BITSET | PRIVATE).
    w.push(block(
        13,
        5 * MS,
        25 * MS,
        condvar_stack(),
        vec![COND_B, 137, 0],
    ))
    .unwrap();
    // A lock wait without registers: counted apart.
    w.push(block(14, 5 * MS, 6 * MS, mutex_stack(), Vec::new()))
        .unwrap();
    // The waker: thread 12 releases in `update` (app.c:22).
    if wakers_recorded {
        for time in [12 * MS, 13 * MS] {
            w.push(Record::Lock(LockRecord::Wake(Wake {
                time,
                pid: 10,
                tid: 12,
                cpu: 1,
                args: vec![LOCK_A, 129, 1],
                user: vec![at(LIBC, 0x600), at(APP, 0x211)],
                kernel: Vec::new(),
                truncated: false,
            })))
            .unwrap();
        }
    }
    w.push(names(
        APP,
        &[
            (0x100, "worker", "app.c", 10),
            (0x200, "update", "app.c", 20),
            (0x210, "update", "app.c", 22),
            (0x300, "consumer", "app.c", 30),
        ],
    ))
    .unwrap();
    w.push(names(
        LIBC,
        &[
            (0x300, "__lll_lock_wait", "", 0),
            (0x400, "___pthread_mutex_lock", "", 0),
            (0x500, "__futex_abstimed_wait_common", "", 0),
            (0x510, "__pthread_cond_wait_common", "", 0),
            (0x600, "__lll_lock_wake", "", 0),
        ],
    ))
    .unwrap();
    let bytes = w.finish(Default::default()).unwrap();
    Profile::read(&bytes[..], "test").unwrap()
}

/// Issue 17: the mutex row: retries merged, wait times, threads, sites, wakers, a heap name.
#[test]
fn mutex_row() {
    let analysis = analyze(&profile(true), &Options::default());
    assert_eq!(analysis.locks.len(), 1, "{analysis:#?}");
    let lock = &analysis.locks[0];
    assert_eq!(lock.address, LOCK_A);
    assert_eq!(lock.kind, Kind::Mutex);
    assert_eq!(lock.waits, 3);
    assert_eq!(lock.contended, 2, "thread 11's second wait is a retry");
    assert_eq!(lock.wait_ns, 2 * MS + 990_000 + 3 * MS);
    assert_eq!(lock.max_wait_ns, 3 * MS);
    assert_eq!(lock.threads, [11, 12]);
    assert_eq!(lock.sites[0].function, "update");
    assert_eq!(lock.sites[0].line, Some(20));
    assert_eq!(lock.sites[0].count, 3);
    assert_eq!(lock.wakes, 2);
    assert_eq!(lock.wakers[0].function, "update");
    assert_eq!(lock.wakers[0].line, Some(22));
    assert_eq!(lock.named_by, NamedBy::Waiter);
    assert_eq!(lock.name, format!("{LOCK_A:#x} in update"));
    assert_eq!(analysis.unaddressed, 1);
    assert_eq!(analysis.wakers, Wakers::Recorded);
}

/// Issue 17: a condition-variable wait is not contention: it is listed apart.
#[test]
fn condvar_apart() {
    let analysis = analyze(&profile(true), &Options::default());
    assert_eq!(analysis.other.len(), 1);
    assert_eq!(analysis.other[0].kind, Kind::Condvar);
    assert_eq!(analysis.other[0].address, COND_B);
    assert_eq!(analysis.other[0].sites[0].function, "consumer");
    let mut text = Vec::new();
    render::table(&analysis, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let apart = text.find("Condition variables").unwrap();
    assert!(text.find("in update").unwrap() < apart, "{text}");
    assert!(text.rfind("consumer").unwrap() > apart, "{text}");
}

/// Issue 17: without wake-ups the report says why, in the table and in JSON, not a blank.
#[test]
fn wakers_not_recorded() {
    let analysis = analyze(&profile(false), &Options::default());
    let mut text = Vec::new();
    render::table(&analysis, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("Wakers: not recorded: run rprof record as root"),
        "{text}"
    );
    assert!(text.contains("woken by: not recorded"), "{text}");
    let mut json = Vec::new();
    render::json(&analysis, &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["wakers_recorded"], false);
    assert_eq!(v["wakers_note"], "run rprof record as root");
    assert!(v["locks"][0]["wakers"].is_null());
    assert_eq!(v["locks"][0]["contended"], 2);
    assert_eq!(v["locks"][0]["threads"], 2);
}

/// Issue 17: the lock is the root frame of its folded stacks; only contended locks are drawn.
#[test]
fn folded_root() {
    let p = profile(true);
    let analysis = analyze(&p, &Options::default());
    let lines = render::folded_lines(&p, &analysis);
    assert_eq!(
        lines,
        [format!(
            "{LOCK_A:#x} in update [mutex];worker;update;___pthread_mutex_lock;__lll_lock_wait 5990"
        )]
    );
}
