//! Live tests against the kernel: open real samplers, let a busy target run, read and parse
//! what the kernel wrote.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rprof_perf::parse::{x86_64, FileId, PerfRecord};
use rprof_perf::{sampling_attr, CallGraph, Rate, Samplers, SamplingOptions};

fn cpu_clock() -> perf_event_open_sys::bindings::perf_event_attr {
    let event = rprof_events::parse("cpu-clock").unwrap();
    let mut attr = event.attr();
    // Works under perf_event_paranoid=2 for unprivileged users too.
    attr.set_exclude_kernel(1);
    attr
}

fn options(call_graph: CallGraph, enable_on_exec: bool) -> SamplingOptions {
    SamplingOptions {
        rate: Rate::Frequency(1000),
        call_graph,
        enable_on_exec,
        inherit: true,
        wakeup_bytes: 4096,
        mmap_build_id: true,
    }
}

fn busy_child() -> Child {
    Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap()
}

/// Reads every buffer until `want` samples arrived or `how_long` passed, returning (samples of
/// pid, other records) counts and checking every sample's content. Stopping on a count rather
/// than a time keeps the tests independent of how busy the machine is.
fn collect(samplers: &mut Samplers, pid: u32, want: usize, how_long: Duration) -> (usize, usize) {
    let format = samplers.format();
    let (mut samples, mut others) = (0, 0);
    let deadline = Instant::now() + how_long;
    while samples < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        for buffer in samplers.buffers_mut() {
            let batch = buffer.ring.read();
            assert!(batch.error().is_none(), "{:?}", batch.error());
            for bytes in batch.iter() {
                match rprof_perf::parse_record(&format, bytes).unwrap() {
                    PerfRecord::Sample(s) => {
                        assert_eq!(s.pid, Some(pid));
                        let regs = s.regs_user.unwrap();
                        let ip = regs.get(x86_64::IP).unwrap();
                        assert_eq!(Some(ip), s.ip);
                        let sp = regs.get(x86_64::SP).unwrap();
                        assert!(sp != 0);
                        assert!(!s.stack_user.unwrap().is_empty());
                        assert!(s.time.is_some() && s.period.is_some() && s.cpu.is_some());
                        samples += 1;
                    }
                    _ => others += 1,
                }
            }
        }
    }
    (samples, others)
}

#[test]
fn samples_a_running_process_per_cpu() {
    let mut child = busy_child();
    let pid = child.id();
    let attr = sampling_attr(
        &cpu_clock(),
        &options(CallGraph::Dwarf { stack_size: 8192 }, false),
    );
    let cpus = rprof_events::online_cpus().unwrap();
    let mut samplers = Samplers::open_process("cpu-clock:u", &attr, pid, &cpus, 16).unwrap();
    let (samples, _) = collect(&mut samplers, pid, 100, Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    // 1 kHz on a busy loop: 100 samples come within 0.1 s of CPU time.
    assert!(samples >= 100, "{samples} samples");
}

#[test]
fn attaches_to_every_thread_with_redirected_output() {
    let mut child = busy_child();
    let pid = child.id();
    let attr = sampling_attr(
        &cpu_clock(),
        &options(CallGraph::Dwarf { stack_size: 4096 }, false),
    );
    let cpus = rprof_events::online_cpus().unwrap();
    let mut samplers = Samplers::attach("cpu-clock:u", &attr, pid, &cpus, 16).unwrap();
    assert_eq!(samplers.attached_threads(), 1);
    assert_eq!(samplers.buffers().len(), cpus.len());
    let (samples, _) = collect(&mut samplers, pid, 100, Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(samples >= 100, "{samples} samples");
}

#[test]
fn attaching_to_a_missing_process_fails() {
    let attr = sampling_attr(&cpu_clock(), &options(CallGraph::FramePointer, false));
    let err = Samplers::attach("cpu-clock", &attr, 1 << 30, &[0], 1).unwrap_err();
    assert!(
        matches!(err, rprof_perf::SamplerError::Threads { .. }),
        "{err}"
    );
}

#[test]
fn an_oversized_buffer_is_a_map_error() {
    let mut child = busy_child();
    let attr = sampling_attr(&cpu_clock(), &options(CallGraph::FramePointer, false));
    // 2^40 pages cannot be mapped by anyone.
    let err = Samplers::open_process("cpu-clock", &attr, child.id(), &[0], 1 << 40).unwrap_err();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(err, rprof_perf::SamplerError::Map { .. }), "{err}");
}

#[test]
fn mmap_records_carry_build_ids() {
    // A shell that starts other programs after the events are attached: their executables and
    // libraries are mapped while we watch.
    let mut child = Command::new("sh")
        .args(["-c", "sleep 0.3; /bin/true; sleep 0.1"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let attr = sampling_attr(&cpu_clock(), &options(CallGraph::FramePointer, false));
    let cpus = rprof_events::online_cpus().unwrap();
    let mut samplers = Samplers::open_process("cpu-clock:u", &attr, pid, &cpus, 16).unwrap();
    let format = samplers.format();
    let mut with_build_id = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        for buffer in samplers.buffers_mut() {
            let batch = buffer.ring.read();
            for bytes in batch.iter() {
                if let PerfRecord::Mmap(m) = rprof_perf::parse_record(&format, bytes).unwrap() {
                    if let Some(FileId::BuildId(id)) = m.file_id {
                        with_build_id
                            .push((String::from_utf8_lossy(m.filename).into_owned(), id.len()));
                    }
                }
            }
        }
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        with_build_id
            .iter()
            .any(|(name, len)| name.contains("libc") && *len == 20),
        "{with_build_id:?}"
    );
}
