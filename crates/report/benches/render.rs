//! Rendering speed on large in-memory profiles of 100,000 samples (stacks 8 to 40 deep): the
//! top table, the JSON report, folded stacks and the flame graph SVG. Two shapes: 5,000
//! distinct stacks (a busy real program has thousands) and every sample a distinct stack (the
//! worst case for folding and for inferno).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rprof_profile::Profile;
use rprof_report::flame::FlameOptions;
use rprof_report::folded::FoldedOptions;
use rprof_report::json::JsonOptions;
use rprof_report::synth;
use rprof_report::top::TopOptions;

const SAMPLES: usize = 100_000;

fn profile(stacks: usize) -> Profile {
    let bytes = synth::large(SAMPLES, stacks).expect("synthetic profile");
    Profile::read(&bytes[..], "bench").expect("readable profile")
}

fn render(c: &mut Criterion) {
    for (label, stacks) in [("5k stacks", 5_000), ("distinct stacks", 0)] {
        let profile = profile(stacks);
        let mut group = c.benchmark_group(format!("100k samples, {label}"));
        group.sample_size(10);
        group.bench_function("top table", |b| {
            let options = TopOptions {
                limit: Some(50),
                width: Some(120),
                ..TopOptions::default()
            };
            b.iter(|| {
                let mut out = Vec::with_capacity(1 << 16);
                rprof_report::top::render(black_box(&profile), &options, &mut out).expect("render");
                out
            })
        });
        group.bench_function("json", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(1 << 20);
                rprof_report::json::render(black_box(&profile), &JsonOptions::default(), &mut out)
                    .expect("render");
                out
            })
        });
        group.bench_function("folded", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(1 << 20);
                rprof_report::folded::render(
                    black_box(&profile),
                    &FoldedOptions::default(),
                    &mut out,
                )
                .expect("render");
                out
            })
        });
        group.bench_function("flame graph", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(1 << 22);
                rprof_report::flame::render(
                    black_box(&profile),
                    &FlameOptions::default(),
                    &mut out,
                )
                .expect("render");
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, render);
criterion_main!(benches);
