//! Integration tests of `rprof unwind`.
