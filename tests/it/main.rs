//! Integration tests: they drive the real `rprof` binary on fixture programs built from source.
//!
//! One entry point (this file); one module per command. Shared helpers live in `util`.

mod exec_names;
mod flame;
mod hostile_files;
mod hostile_names;
mod off_cpu;
mod outputs;
mod pipeline;
mod profile_input;
mod record;
mod report;
mod stat;
mod unwind;
mod util;
