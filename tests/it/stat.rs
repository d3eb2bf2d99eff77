//! Integration tests of `rprof stat`.
