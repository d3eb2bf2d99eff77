//! Where the recorder's perf records come from: the seam between the kernel and the recorder's
//! rules. [`RecordSource`] hands over one round of raw records per call, buffer by buffer; the
//! live ring buffers ([`Samplers`]) are one source, a captured stream
//! ([`crate::capture::Replay`]) is another, so the rules can be tested without a kernel.
//!
//! It leaves parsing the records to `rprof-perf` and applying them to the [`crate::Recorder`].

use std::io;

use rprof_perf::{SampleFormat, Samplers};

/// The records one buffer held in one round, oldest first, as the kernel wrote them (each
/// starts with its `perf_event_header` and is `header.size` bytes long).
#[derive(Debug, Default)]
pub struct BufferRecords<'a> {
    /// The raw records.
    pub records: Vec<&'a [u8]>,
    /// The buffer's own bookkeeping was inconsistent: records after the bad spot were skipped.
    pub ring_error: bool,
}

/// A source of perf records, read a round at a time.
pub trait RecordSource {
    /// How the records are laid out (the events' `perf_event_attr`).
    fn format(&self) -> SampleFormat;

    /// The identifiers of the off-CPU sampler's events (`--off-cpu`): their samples are the
    /// stacks of threads leaving the CPU, not on-CPU samples. None by default.
    fn companion_ids(&self) -> &[u64] {
        &[]
    }

    /// The identifiers of the wake-up sampler's events (`--off-cpu` as root, see
    /// [`crate::locks`]): their samples are futex wake calls; they are among
    /// [`companion_ids`](Self::companion_ids) too. None by default.
    fn wake_ids(&self) -> Vec<u64> {
        Vec::new()
    }

    /// Reads one round: every buffer's records so far, all handed to `apply` at once (the
    /// recorder sorts a round's records by time across buffers). Their space is released when
    /// `apply` returns. A source with nothing left calls `apply` with empty buffers.
    fn read_round(
        &mut self,
        apply: &mut dyn FnMut(&[BufferRecords<'_>]) -> io::Result<()>,
    ) -> io::Result<()>;
}

impl RecordSource for Samplers {
    fn format(&self) -> SampleFormat {
        Samplers::format(self)
    }

    fn companion_ids(&self) -> &[u64] {
        Samplers::companion_ids(self)
    }

    fn wake_ids(&self) -> Vec<u64> {
        self.companion_ids_of(crate::locks::WAKER_EVENT)
    }

    fn read_round(
        &mut self,
        apply: &mut dyn FnMut(&[BufferRecords<'_>]) -> io::Result<()>,
    ) -> io::Result<()> {
        let batches: Vec<_> = self
            .buffers_mut()
            .iter_mut()
            .map(|b| b.ring.read())
            .collect();
        let buffers: Vec<BufferRecords<'_>> = batches
            .iter()
            .map(|batch| BufferRecords {
                records: batch.iter().collect(),
                ring_error: batch.error().is_some(),
            })
            .collect();
        apply(&buffers)
        // Dropping the batches hands the space back to the kernel.
    }
}
