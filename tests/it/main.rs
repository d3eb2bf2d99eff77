//! Integration tests: they drive the real `rprof` binary on fixture programs built from source.
//!
//! One entry point (this file); one module per command. Shared helpers live in `util`.

mod alloc;
mod annotate;
mod cargo_rprof;
mod completions;
mod diff;
mod exec_names;
mod export;
mod flame;
mod hostile_files;
mod hostile_names;
mod latency;
mod locks;
mod namecache;
mod off_cpu;
mod outputs;
mod pipeline;
mod profile_input;
mod progress;
mod record;
mod record_cost;
mod report;
mod stat;
mod timeline;
mod unwind;
mod util;
