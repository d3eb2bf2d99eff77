//! Integration tests of `rprof report`.
