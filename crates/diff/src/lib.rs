//! rprof-diff: compares two profiles of the same event, BASE and NEW — which functions' cost
//! changed, by how much, and whether the change is more than sampling noise.
//!
//! - [`Diff`]: functions matched by name and module, each with its self and total samples in
//!   both profiles, the change of estimated time (samples × the profile's mean sample period)
//!   and of share, and a significance test ([`stats`]); [`Measure`] says which of time or
//!   share is compared and ranked;
//!   With a time [`Weight`](rprof_report::Weight) in the selections (`--off-cpu`, `--wall`)
//!   the counts are nanoseconds: off-CPU time is measured, not sampled, so its change is
//!   judged by a threshold ([`OFF_CPU_PERCENT`], [`OFF_CPU_MIN_NS`]), the on-CPU part of
//!   wall time by the test;
//! - [`table`]: the terminal table, [`json`]: the same numbers for scripts;
//! - [`flame`]: a differential flame graph on NEW's stacks, each frame colored by the change of
//!   its whole stack.
//!
//! Like `rprof-report`, whose selections ([`rprof_report::Selection`]), function tables and
//! [`visible`](rprof_report::visible) it uses, this crate only compares and renders: it does
//! not read files, print warnings or decide exit codes (the binary's `src/diff.rs` does). The
//! test and its false-positive rate are written down in `docs/diff.md`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod compare;
pub mod flame;
pub mod json;
pub mod stats;
pub mod table;
mod text;

pub use compare::{
    event_is_time, Comparison, Diff, DiffError, DiffOptions, Measure, Row, Side, Status, Which,
    OFF_CPU_MIN_NS, OFF_CPU_PERCENT,
};

#[cfg(test)]
mod tests;
