//! rprof-stat: (being written).
