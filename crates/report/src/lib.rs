//! rprof-report: (being written).
