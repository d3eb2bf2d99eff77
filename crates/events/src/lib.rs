//! rprof-events: (being written).
