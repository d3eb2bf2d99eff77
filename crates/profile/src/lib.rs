//! rprof-profile: (being written).
