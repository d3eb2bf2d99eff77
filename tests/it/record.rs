//! Integration tests of `rprof record`.
