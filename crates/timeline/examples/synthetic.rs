//! Writes the timeline page of a synthetic input: `synthetic OUT.html [THREADS [SECONDS]]`
//! (default 100 threads × 10 s), and prints how long rendering took and the page's size. Used
//! by `crates/timeline/scripts/open-bench.sh` to measure how fast Chromium opens a large page.

use std::io::{BufWriter, Write};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: synthetic OUT.html [THREADS [SECONDS]]");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let input = rprof_timeline::synth::synthetic(threads, seconds);
    let spans: usize = input
        .processes
        .iter()
        .flat_map(|p| &p.threads)
        .map(|t| t.spans.len())
        .sum();
    let samples: usize = input
        .processes
        .iter()
        .flat_map(|p| &p.threads)
        .map(|t| t.samples.len())
        .sum();
    let start = Instant::now();
    let mut file = BufWriter::new(std::fs::File::create(&out)?);
    rprof_timeline::render(&input, &mut file)?;
    file.flush()?;
    let elapsed = start.elapsed();
    let size = std::fs::metadata(&out)?.len();
    println!(
        "{threads} threads x {seconds} s: {spans} spans, {samples} samples; rendered in {:.1} ms, \
         {size} bytes",
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
