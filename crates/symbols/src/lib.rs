//! rprof-symbols: (being written).
