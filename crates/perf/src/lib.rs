//! rprof-perf: (being written).
