//! Issue 11: off-CPU blocks read back with their reasons (from kernel names, the PREEMPT flag,
//! or user names without kernel stacks) and each thread's life on and off the CPU.

use rprof_profile::*;

const KERNEL: ModuleId = ModuleId(0);
const LIBC: ModuleId = ModuleId(1);

fn module(id: ModuleId, path: &str, kind: ModuleKind) -> Record {
    Record::Module(Module {
        id,
        path: path.into(),
        build_id: None,
        kind,
        jit_pid: None,
    })
}

fn at(module: ModuleId, address: u64) -> Address {
    Address {
        module: Some(module),
        address,
    }
}

fn block(tid: u32, start: u64, end: u64, kernel: &[u64], user: &[u64], preempted: bool) -> Record {
    Record::OffCpu(OffCpu {
        pid: 100,
        tid,
        cpu: 0,
        start,
        end,
        ended: true,
        preempted,
        user: user.iter().map(|&a| at(LIBC, a)).collect(),
        kernel: kernel.iter().map(|&a| at(KERNEL, a)).collect(),
        truncated: false,
        args: vec![0x5000, 128, 2],
    })
}

/// Names for the kernel (instruction pointer at index 0 is looked up as is, return addresses
/// minus one) and libc addresses used below.
fn symbols(module: ModuleId, names: &[(u64, &str)]) -> Record {
    let mut strings = Vec::new();
    let mut entries = Vec::new();
    for (i, &(lookup, name)) in names.iter().enumerate() {
        strings.push(name.to_string());
        entries.push((
            lookup,
            vec![StoredFrame {
                function: i as u32,
                file: u32::MAX,
                line: 0,
                inlined: false,
            }],
        ));
    }
    Record::Symbols(Symbols {
        module: Some(module),
        strings,
        entries,
    })
}

fn profile() -> Profile {
    let header = Header {
        command: vec!["app".into()],
        event: "cpu-clock".into(),
        ..Header::default()
    };
    let mut w = Writer::new(Vec::new(), &header).unwrap();
    for record in [
        module(KERNEL, "[kernel.kallsyms]", ModuleKind::Kernel),
        module(LIBC, "/lib/libc.so.6", ModuleKind::Elf),
        Record::Comm {
            time: 1_000,
            pid: 100,
            tid: 100,
            name: "app".into(),
            exec: true,
        },
        Record::Fork {
            time: 2_000,
            pid: 100,
            ppid: 100,
            tid: 101,
            ptid: 100,
        },
        // 101: a futex wait (kernel stack), then a sleep, a preemption and a pipe read.
        block(101, 3_000, 5_000, &[0x10, 0x21], &[0x100], false),
        block(101, 6_000, 7_000, &[0x10, 0x31], &[0x100], false),
        block(101, 7_500, 8_000, &[0x10, 0x31], &[0x100], true),
        block(101, 8_000, 9_000, &[0x10, 0x41, 0x51], &[0x100], false),
        Record::Exit {
            time: 10_000,
            pid: 100,
            ppid: 100,
            tid: 101,
            ptid: 100,
        },
        // 100: no kernel stack; the user leaf says what it waited for.
        block(100, 4_000, 6_000, &[], &[0x200, 0x301], false),
        block(100, 11_000, 12_000, &[], &[0x400], false),
        symbols(
            KERNEL,
            &[
                (0x10, "__schedule"),
                (0x20, "futex_wait_queue"),
                (0x30, "do_nanosleep"),
                (0x40, "pipe_read"),
                (0x50, "__x64_sys_read"),
            ],
        ),
        symbols(
            LIBC,
            &[
                (0x200, "__GI___clock_nanosleep"),
                (0x300, "main"),
                (0x400, "compute"),
                (0x100, "__futex_abstimed_wait_common"),
            ],
        ),
    ] {
        w.push(record).unwrap();
    }
    let bytes = w.finish(Summary::default()).unwrap();
    Profile::read(&bytes[..], "test").unwrap()
}

#[test]
fn reasons_come_from_kernel_names_the_flag_or_user_names() {
    let p = profile();
    assert!(p.has_off_cpu());
    let reasons: Vec<_> = (0..p.off_cpu.len()).map(|i| p.off_cpu_reason(i)).collect();
    assert_eq!(
        reasons,
        [
            (WaitReason::Lock, ReasonSource::Kernel),
            (WaitReason::Sleep, ReasonSource::Kernel),
            (WaitReason::Cpu, ReasonSource::Preempted),
            (WaitReason::Io, ReasonSource::Kernel),
            (WaitReason::Sleep, ReasonSource::User),
            (WaitReason::Other, ReasonSource::Nothing),
        ]
    );
    assert_eq!(p.reason_sources(), [1, 3, 1, 1]);
    // The reason is the leaf of the block's stack, then the kernel frames, then the user ones.
    let stack = p.stack(p.off_cpu_stack(0));
    let names: Vec<_> = stack
        .iter()
        .map(|&f| p.frame(f).function.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "[lock]",
            "__schedule",
            "futex_wait_queue",
            "__futex_abstimed_wait_common"
        ]
    );
    assert_eq!(p.frame(stack[0]).kind, FrameKind::Wait);
    assert_eq!(p.off_cpu[0].args, [0x5000, 128, 2]);
}

#[test]
fn threads_are_alive_from_creation_to_exit_and_on_cpu_between_blocks() {
    let p = profile();
    let threads = p.thread_activity();
    assert_eq!(threads.len(), 2);
    let main = &threads[0];
    assert_eq!(
        (main.tid, main.start, main.end, main.exited),
        (100, 1_000, 12_000, false)
    );
    assert_eq!(main.off_cpu_ns(), 3_000);
    assert_eq!(main.on_cpu_ns(), 8_000);
    let worker = &threads[1];
    assert_eq!(
        (worker.tid, worker.start, worker.end, worker.exited),
        (101, 2_000, 10_000, true)
    );
    assert_eq!(worker.off_cpu_ns(), 4_500);
    assert_eq!(worker.on_cpu_ns(), 3_500);
    assert_eq!(worker.wait_ns(), [500, 2_000, 1_000, 1_000, 0]);
    assert_eq!(worker.off_cpu[3].reason, WaitReason::Io);
}
