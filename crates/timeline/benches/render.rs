//! Time to write the timeline page of a synthetic 100 threads × 10 s input (about 38,000
//! off-CPU spans and 415,000 samples; `rprof_timeline::synth`). The page's size and the time
//! Chromium takes to open it are measured by `crates/timeline/scripts/open-bench.sh`
//! (docs/benchmarks.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn render(c: &mut Criterion) {
    let input = rprof_timeline::synth::synthetic(100, 10);
    let mut group = c.benchmark_group("timeline 100 threads x 10 s");
    group.sample_size(10);
    group.bench_function("render html", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(16 << 20);
            rprof_timeline::render(black_box(&input), &mut out).expect("render");
            out
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
