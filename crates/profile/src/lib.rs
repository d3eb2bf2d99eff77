//! The rprof profile: what `rprof record` writes and `rprof report`/`rprof flame` read.
//!
//! A profile is a stream of checksummed blocks (see [`format`] and `docs/file-format.md`),
//! written while recording so that an interrupted recording still reads up to its last complete
//! block. Nothing in a file is trusted: blocks read twice are counted once, the summary is
//! checked against the records, and records of kinds a newer rprof added are skipped with a
//! warning. A finished profile is self-contained: samples hold stacks already unwound into
//! module-relative addresses, and [`Symbols`] records name those addresses, so reports work after
//! the binaries are gone or on another machine.
//!
//! This crate only stores and loads. It does not sample (`rprof-perf`), unwind (`rprof-unwind`),
//! symbolize (`rprof-symbols`) or render (`rprof-report`). [`Profile`] builds every sample's
//! stack of named frames from the stored symbols, and tells which addresses still lack names
//! ([`Profile::missing_lookups`]) so that a caller can symbolize them from the binaries on disk.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod format;
mod lookup;
mod model;
mod profile;

pub use format::{ReadError, ReadNotes, Writer, FORMAT_VERSION};
pub use lookup::LookupSet;
pub use model::{
    lookup_address, Address, Header, Module, ModuleId, ModuleKind, Record, Sample, StoredFrame,
    Summary, Symbols,
};
pub use profile::{FrameId, FrameInfo, FrameKind, Process, Profile, StackId, Thread, ThreadName};
