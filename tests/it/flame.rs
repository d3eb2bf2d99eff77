//! Integration tests of `rprof flame`.
