//! Files on disk, opened the safe way.
//!
//! rprof runs as root or under sudo and opens files whose names come from places it does not
//! trust: a profile someone sent, a target's memory mappings, `/tmp/perf-PID.map` that any local
//! user can create, an output path in another user's directory. This crate is the one place that
//! opens them:
//!
//! - [`read`]: inputs. Only regular files, opened without blocking (a FIFO never hangs a
//!   reader), with a size cap on everything read into memory.
//! - [`write`]: outputs. Created as a new file next to the destination and renamed into place,
//!   so a planted link or a file of another user is replaced, never written through; handed to
//!   the invoking user under sudo only because rprof created it.
//! - [`bytes`]: the bytes of rprof's own cache files taken apart, every length checked first.
//! - [`vdso`]: this process's `[vdso]` image, read from `/proc/self/mem` with a size cap (the
//!   kernel maps the same image into every process).
//!
//! It leaves to others what the bytes mean.

pub mod bytes;
pub mod read;
pub mod vdso;
pub mod write;

pub use write::{Access, NewFile, WriteError, WriteErrorKind};
