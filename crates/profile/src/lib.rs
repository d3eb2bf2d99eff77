//! The rprof profile: what `rprof record` writes and `rprof report`/`rprof flame` read.
//!
//! A profile is a stream of checksummed, zstd-compressed blocks (see [`format`] and
//! `docs/file-format.md`), written while recording so that an interrupted recording still reads
//! up to its last complete block; within a block, samples share their stacks (`compact`). Nothing in a file is trusted: blocks read twice are counted once, the summary is
//! checked against the records, and records of kinds a newer rprof added are skipped with a
//! warning. A finished profile is self-contained: samples hold stacks already unwound into
//! module-relative addresses, and [`Symbols`] records name those addresses, so reports work after
//! the binaries are gone or on another machine.
//!
//! This crate only stores and loads. It does not sample (`rprof-perf`), unwind (`rprof-unwind`),
//! symbolize (`rprof-symbols`) or render (`rprof-report`). [`Profile`] builds every sample's
//! stack of named frames from the stored symbols, and tells which addresses still lack names
//! ([`Profile::missing_lookups`]) so that a caller can symbolize them from the binaries on disk.
//!
//! Off-CPU blocks ([`OffCpu`], `rprof record --off-cpu`) get stacks the same way, with the
//! reason they waited ([`off_cpu`]) as a synthetic leaf frame; [`Profile::thread_activity`]
//! gives each thread's off-CPU intervals and sample times (for timelines and thread tables).

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod compact;
pub mod format;
mod lookup;
mod model;
pub mod off_cpu;
mod profile;

pub use format::{ReadError, ReadNotes, Writer, FORMAT_VERSION};
pub use lookup::LookupSet;
pub use model::{
    lookup_address, Address, AllocStack, AllocSummary, Header, LockRecord, Module, ModuleId,
    ModuleKind, OffCpu, Record, Sample, StoredFrame, Summary, Symbols, Wake,
};
pub use off_cpu::{OffCpuInterval, ReasonSource, ThreadActivity, WaitReason};
pub use profile::{FrameId, FrameInfo, FrameKind, Process, Profile, StackId, Thread, ThreadName};
