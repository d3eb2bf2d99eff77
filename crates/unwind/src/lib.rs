//! rprof-unwind: (being written).
