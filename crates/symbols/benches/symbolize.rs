//! Symbolization throughput: addresses per second, cold (parse the module, then look up) and warm
//! (look up again with the module and addr2line's lazily built tables cached).
//!
//! Run with `cargo bench -p rprof-symbols`. Modules: this benchmark's own executable (Rust, with the
//! line tables of the bench profile) and any extra ELF files given in `RPROF_BENCH_FILES`
//! (colon-separated). Addresses: one every `STRIDE` bytes of `.text`, in a scrambled order, as the
//! caller's batches would be.

use std::time::{Duration, Instant};

use object::{Object, ObjectSection};
use rprof_symbols::{ModuleSource, Symbolizer};

const STRIDE: u64 = 7;

fn text_addresses(path: &str) -> Option<Vec<u64>> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let text = file.section_by_name(".text")?;
    let mut addrs: Vec<u64> = (text.address()..text.address() + text.size())
        .step_by(STRIDE as usize)
        .collect();
    // A fixed scramble: batches arrive unsorted.
    let n = addrs.len();
    for i in 0..n {
        addrs.swap(i, (i.wrapping_mul(2654435761) >> 7) % n);
    }
    Some(addrs)
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0} addr/s", n as f64 / d.as_secs_f64())
}

fn bench(path: &str, limit: usize) {
    let Some(mut addrs) = text_addresses(path) else {
        eprintln!("{path}: cannot read .text, skipped");
        return;
    };
    addrs.truncate(limit);
    let module = ModuleSource::Elf {
        path,
        build_id: None,
    };
    let mut sym = Symbolizer::new();
    let t0 = Instant::now();
    let status = sym.module_status(&module);
    let load = t0.elapsed();
    let cold = sym.symbolize(&module, &addrs);
    let cold_time = t0.elapsed();
    let t1 = Instant::now();
    let warm = sym.symbolize(&module, &addrs);
    let warm_time = t1.elapsed();
    assert_eq!(cold, warm);
    let named = cold.iter().filter(|l| !l.frames.is_empty()).count();
    let frames: usize = cold.iter().map(|l| l.frames.len()).sum();
    println!("{path}");
    println!(
        "  {} addresses, {named} named, {frames} frames; debug info {:?}, {} symbols",
        addrs.len(),
        status.debug_info,
        status.symbol_count
    );
    println!("  load {:>8.1} ms", load.as_secs_f64() * 1e3);
    println!(
        "  cold {:>8.1} ms  {}",
        cold_time.as_secs_f64() * 1e3,
        rate(addrs.len(), cold_time)
    );
    println!(
        "  warm {:>8.1} ms  {}",
        warm_time.as_secs_f64() * 1e3,
        rate(addrs.len(), warm_time)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --benches` (no flag) only a short smoke run.
    let limit = if std::env::args().any(|a| a == "--bench") {
        usize::MAX
    } else {
        2000
    };
    let me = std::env::current_exe().expect("current executable");
    bench(&me.to_string_lossy(), limit);
    if let Ok(extra) = std::env::var("RPROF_BENCH_FILES") {
        for path in extra.split(':').filter(|p| !p.is_empty()) {
            bench(path, limit);
        }
    }
}
