//! rprof-report: turns a [`Profile`] into what a person reads.
//!
//! - [`top`]: the table of the hottest functions (or source lines) with a header describing the
//!   recording, and the per-thread breakdown;
//! - [`json`]: the same numbers, machine-readable (schema in `docs/report.md`);
//! - [`folded`]: Brendan Gregg's folded stacks, one line per distinct stack;
//! - [`flame`]: a flame graph SVG drawn by inferno;
//! - [`annotate`]: the source lines of one function with the samples on each.
//! - [`wait`]: for off-CPU profiles, the per-thread wall/on-CPU/off-CPU table and the tables
//!   ranked by off-CPU or wall-clock time ([`Weight`]).
//!
//! Every renderer takes an `Options` struct (each field documents its default) and writes into
//! any [`std::io::Write`]; errors of the writer are passed up untouched, so that the binary can
//! treat a closed pipe as the normal end it is. Which samples are counted is decided by a
//! [`Selection`] (threads, process, inline frames merged or kept), shared by all renderers; each
//! sample is shown under the name its thread had when it was taken ([`ThreadSpan`]).
//! Every string that came from the target or the profile goes through [`visible`] before a text
//! output shows it (control and bidi characters escaped); JSON keeps the exact strings.
//!
//! This crate does not read files, symbolize, decide about terminals (the binary tells it the
//! width and whether to use color), or print warnings: it only renders.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod aggregate;
pub mod annotate;
pub mod flame;
pub mod folded;
pub mod format;
pub mod json;
mod overview;
mod select;
mod shorten;
#[doc(hidden)]
pub mod synth;
pub mod top;
mod visible;
pub mod wait;

pub use aggregate::{Row, Table, TableKind};
pub use overview::Overview;
pub use select::{
    parse_thread_filter, SelectError, Selection, StackCounts, ThreadFilter, ThreadSpan, Weight,
};
pub use shorten::shorten;
pub use visible::{needs_escape, visible};

use rprof_profile::Profile;

/// How rows are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// By samples in the function itself (the leaf of the stack). The default.
    #[default]
    SelfSamples,
    /// By samples in the function or anything it called (each sample counted once).
    Total,
}

/// Samples of the profile with a truncated stack (their root is missing).
pub fn truncated_samples(profile: &Profile, selection: &Selection) -> u64 {
    profile
        .samples
        .iter()
        .filter(|s| s.truncated && selection.accepts_sample(profile, s))
        .count() as u64
}

#[cfg(test)]
mod tests;
