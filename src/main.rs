//! rprof: a sampling profiler for Linux.
fn main() {}
