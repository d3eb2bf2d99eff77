//! Captures of the raw perf record stream of a recording, and their replay without a kernel.
//!
//! A recording started with `RPROF_CAPTURE=PATH` in its environment also writes every round of
//! records it drains, byte for byte, to PATH ([`CaptureWriter`]). [`Capture`] reads such a file
//! back and [`Replay`] is a [`RecordSource`] that hands the rounds to a [`Recorder`] exactly as
//! the ring buffers did, so that the recorder's rules (fork, exec, exit, lost, throttle, module
//! ids) are tested on real kernel output. `scripts/capture.sh` regenerates the captures under
//! `fixtures/captures/`.
//!
//! What a replay does not reproduce: the files the recording's modules were read from (a
//! replay reads whatever is at those paths now, or nothing), and, for `record -p`, what the
//! binary loaded from `/proc` before the first round.
//!
//! # File layout (version 1)
//!
//! Framing integers are little-endian; the records inside are the kernel's bytes, unchanged
//! (native-endian: captures are taken and replayed on x86-64).
//!
//! ```text
//! file    := "RPROFCAP" version:u32 header_len:u32 header round*
//! header  := sample_type:u64 regs_user_mask:u64 read_format:u64 sample_id_all:u8
//!            call_graph:u8 (0 none, 1 fp, 2 dwarf) reserved:u16 stack_size:u32
//!            max_stack:u64 build_id_len:u16 build_id:[u8; build_id_len]
//!            [companions:u16 companion_id:u64 * companions]   (added for --off-cpu)
//!            [wakes:u16 wake_id:u64 * wakes]      (added for lock wake-ups, issue 17)
//!            (header_len bytes; a reader skips fields added after these, and a header
//!            without the companion or wake ids has none)
//! round   := buffers:u32 buffer*
//! buffer  := flags:u32 (bit 0: the ring reported an inconsistency) records:u32 record*
//! record  := len:u32 bytes:[u8; len]       (len <= 65535, the largest perf record)
//! ```
//!
//! Every round is written, empty ones too: the recorder forgets an exited process one round
//! after its EXIT record, and a replay keeps the same rounds.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use rprof_perf::{CallGraph, SampleFormat};
use rprof_profile::Header;

use crate::source::{BufferRecords, RecordSource};
use crate::{Recorder, Settings, Stats};

/// The environment variable that makes a recording capture its record stream.
pub const CAPTURE_ENV: &str = "RPROF_CAPTURE";

const MAGIC: &[u8; 8] = b"RPROFCAP";
const VERSION: u32 = 1;
/// Header fields of version 1, before the build id.
const HEADER_FIXED: usize = 8 * 3 + 1 + 1 + 2 + 4 + 8 + 2;
/// Captures larger than this are refused (they are test fixtures, not recordings).
pub const MAX_CAPTURE_BYTES: u64 = 256 << 20;
/// Buffers a round may have (one per CPU).
const MAX_BUFFERS: u32 = 1 << 16;
/// The largest perf record (`perf_event_header.size` is 16 bits).
const MAX_RECORD: u32 = u16::MAX as u32;

/// Writes the rounds of a recording to a capture file.
pub struct CaptureWriter {
    out: BufWriter<File>,
    call_graph: CallGraph,
    max_stack: u64,
    kernel_build_id: Option<Vec<u8>>,
    /// The layout of the first round, once the header is written.
    format: Option<SampleFormat>,
}

impl fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureWriter").finish_non_exhaustive()
    }
}

fn capture_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot write the capture file {}: {e}", path.display()),
    )
}

impl CaptureWriter {
    /// Creates (or truncates) the capture file at `path`.
    pub fn create(path: &Path, settings: &Settings, call_graph: CallGraph) -> io::Result<Self> {
        let file = File::create(path).map_err(|e| capture_error(path, e))?;
        Ok(CaptureWriter {
            out: BufWriter::new(file),
            call_graph,
            max_stack: settings.max_stack as u64,
            kernel_build_id: settings.kernel_build_id.clone(),
            format: None,
        })
    }

    fn header(
        &mut self,
        format: &SampleFormat,
        companion_ids: &[u64],
        wake_ids: &[u64],
    ) -> io::Result<()> {
        let build_id = self.kernel_build_id.as_deref().unwrap_or(&[]);
        let build_id = &build_id[..build_id.len().min(usize::from(u16::MAX))];
        let (kind, stack_size) = match self.call_graph {
            CallGraph::None => (0u8, 0u32),
            CallGraph::FramePointer => (1, 0),
            CallGraph::Dwarf { stack_size } => (2, stack_size),
        };
        let mut h = Vec::with_capacity(HEADER_FIXED + build_id.len());
        h.extend_from_slice(&format.sample_type.to_le_bytes());
        h.extend_from_slice(&format.regs_user_mask.to_le_bytes());
        h.extend_from_slice(&format.read_format.to_le_bytes());
        h.push(u8::from(format.sample_id_all));
        h.push(kind);
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&stack_size.to_le_bytes());
        h.extend_from_slice(&self.max_stack.to_le_bytes());
        h.extend_from_slice(&(build_id.len() as u16).to_le_bytes());
        h.extend_from_slice(build_id);
        let ids = &companion_ids[..companion_ids.len().min(usize::from(u16::MAX))];
        h.extend_from_slice(&(ids.len() as u16).to_le_bytes());
        for id in ids {
            h.extend_from_slice(&id.to_le_bytes());
        }
        let ids = &wake_ids[..wake_ids.len().min(usize::from(u16::MAX))];
        h.extend_from_slice(&(ids.len() as u16).to_le_bytes());
        for id in ids {
            h.extend_from_slice(&id.to_le_bytes());
        }
        self.out.write_all(MAGIC)?;
        self.out.write_all(&VERSION.to_le_bytes())?;
        self.out.write_all(&(h.len() as u32).to_le_bytes())?;
        self.out.write_all(&h)
    }

    /// Appends one round (the header first, on the first round, with the ids of the
    /// companion events: the off-CPU sampler's, see [`RecordSource::companion_ids`]).
    pub fn round(
        &mut self,
        format: &SampleFormat,
        companion_ids: &[u64],
        wake_ids: &[u64],
        buffers: &[BufferRecords<'_>],
    ) -> io::Result<()> {
        match self.format {
            None => {
                self.header(format, companion_ids, wake_ids)?;
                self.format = Some(*format);
            }
            Some(f) if f != *format => {
                return Err(io::Error::other(
                    "capture: the record layout changed during the recording",
                ))
            }
            Some(_) => {}
        }
        let out = &mut self.out;
        out.write_all(&(buffers.len() as u32).to_le_bytes())?;
        for buffer in buffers {
            out.write_all(&u32::from(buffer.ring_error).to_le_bytes())?;
            out.write_all(&(buffer.records.len() as u32).to_le_bytes())?;
            for record in &buffer.records {
                out.write_all(&(record.len() as u32).to_le_bytes())?;
                out.write_all(record)?;
            }
        }
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A capture file that could not be read.
#[derive(Debug)]
pub enum CaptureError {
    /// Reading the file failed.
    Io(io::Error),
    /// The bytes are not a capture rprof can replay.
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "cannot read the capture: {e}"),
            CaptureError::Malformed { offset, reason } => {
                write!(f, "malformed capture at byte {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for CaptureError {}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], CaptureError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(CaptureError::Malformed {
                offset: self.pos,
                reason: what,
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CaptureError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CaptureError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CaptureError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CaptureError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CaptureError> {
        self.array(what).map(u64::from_le_bytes)
    }
}

/// A capture read into memory and checked: every round and record lies inside the file.
#[derive(Debug)]
pub struct Capture {
    bytes: Vec<u8>,
    format: SampleFormat,
    call_graph: CallGraph,
    max_stack: u64,
    kernel_build_id: Option<Vec<u8>>,
    /// The companion events' ids (the off-CPU sampler of an `--off-cpu` recording).
    companion_ids: Vec<u64>,
    /// Of those, the wake-up sampler's (issue 17).
    wake_ids: Vec<u64>,
    /// Offset of each round.
    rounds: Vec<usize>,
}

impl Capture {
    /// Reads the capture at `path` (at most [`MAX_CAPTURE_BYTES`]).
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let file = File::open(path).map_err(CaptureError::Io)?;
        let mut bytes = Vec::new();
        file.take(MAX_CAPTURE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(CaptureError::Io)?;
        if bytes.len() as u64 > MAX_CAPTURE_BYTES {
            return Err(CaptureError::Malformed {
                offset: MAX_CAPTURE_BYTES as usize,
                reason: "larger than a capture may be",
            });
        }
        Capture::parse(bytes)
    }

    /// Checks the bytes of a capture.
    pub fn parse(bytes: Vec<u8>) -> Result<Capture, CaptureError> {
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        if c.take(MAGIC.len(), "not a capture (too short)")? != MAGIC {
            return Err(CaptureError::Malformed {
                offset: 0,
                reason: "not a capture (no RPROFCAP magic)",
            });
        }
        if c.u32("version")? != VERSION {
            return Err(CaptureError::Malformed {
                offset: 8,
                reason: "capture version not supported",
            });
        }
        let header_len = c.u32("header length")? as usize;
        let header_start = c.pos;
        let header = c.take(header_len, "header")?;
        let mut h = Cursor {
            bytes: header,
            pos: 0,
        };
        let at = |e: CaptureError| match e {
            CaptureError::Malformed { offset, reason } => CaptureError::Malformed {
                offset: header_start + offset,
                reason,
            },
            other => other,
        };
        let format = SampleFormat {
            sample_type: h.u64("header.sample_type").map_err(at)?,
            regs_user_mask: h.u64("header.regs_user_mask").map_err(at)?,
            read_format: h.u64("header.read_format").map_err(at)?,
            sample_id_all: h.u8("header.sample_id_all").map_err(at)? != 0,
        };
        let kind = h.u8("header.call_graph").map_err(at)?;
        h.u16("header.reserved").map_err(at)?;
        let stack_size = h.u32("header.stack_size").map_err(at)?;
        let call_graph = match kind {
            0 => CallGraph::None,
            1 => CallGraph::FramePointer,
            2 => CallGraph::Dwarf { stack_size },
            _ => {
                return Err(CaptureError::Malformed {
                    offset: header_start + 24 + 1,
                    reason: "unknown call-graph mode",
                })
            }
        };
        let max_stack = h.u64("header.max_stack").map_err(at)?;
        let id_len = h.u16("header.build_id_len").map_err(at)?;
        let id = h.take(usize::from(id_len), "header.build_id").map_err(at)?;
        let kernel_build_id = (!id.is_empty()).then(|| id.to_vec());
        // Added later: a header that ends here has no companion events.
        let mut companion_ids = Vec::new();
        if h.pos < header.len() {
            let count = h.u16("header.companions").map_err(at)?;
            for _ in 0..count {
                companion_ids.push(h.u64("header.companion_id").map_err(at)?);
            }
        }
        // Added later still: the wake-up sampler's ids.
        let mut wake_ids = Vec::new();
        if h.pos < header.len() {
            let count = h.u16("header.wakes").map_err(at)?;
            for _ in 0..count {
                wake_ids.push(h.u64("header.wake_id").map_err(at)?);
            }
        }
        let mut rounds = Vec::new();
        while c.pos < bytes.len() {
            rounds.push(c.pos);
            let buffers = c.u32("round.buffers")?;
            if buffers > MAX_BUFFERS {
                return Err(CaptureError::Malformed {
                    offset: c.pos - 4,
                    reason: "more buffers than CPUs can be",
                });
            }
            for _ in 0..buffers {
                c.u32("buffer.flags")?;
                let records = c.u32("buffer.records")?;
                for _ in 0..records {
                    let len = c.u32("record.len")?;
                    if len > MAX_RECORD {
                        return Err(CaptureError::Malformed {
                            offset: c.pos - 4,
                            reason: "record longer than a perf record can be",
                        });
                    }
                    c.take(len as usize, "record bytes")?;
                }
            }
        }
        Ok(Capture {
            format,
            call_graph,
            max_stack,
            kernel_build_id,
            companion_ids,
            wake_ids,
            rounds,
            bytes,
        })
    }

    /// How the records are laid out.
    pub fn format(&self) -> SampleFormat {
        self.format
    }

    /// The ids of the companion events (the off-CPU sampler of an `--off-cpu` recording):
    /// their samples are switch-out stacks. Empty for other recordings and older captures.
    pub fn companion_ids(&self) -> &[u64] {
        &self.companion_ids
    }

    /// The recording's call-graph mode.
    pub fn call_graph(&self) -> CallGraph {
        self.call_graph
    }

    /// What the recording took from its machine (`perf_event_max_stack`, the kernel's build id),
    /// for a recorder that replays it.
    pub fn settings(&self) -> Settings {
        Settings {
            max_stack: usize::try_from(self.max_stack).unwrap_or(usize::MAX),
            kernel_build_id: self.kernel_build_id.clone(),
            capture: None,
            live: false,
        }
    }

    /// Number of rounds.
    pub fn rounds(&self) -> usize {
        self.rounds.len()
    }

    /// The rounds, one [`RecordSource::read_round`] each.
    pub fn replay(&self) -> Replay<'_> {
        Replay {
            capture: self,
            next: 0,
        }
    }

    /// Every record of every round, in capture order (buffer by buffer within a round).
    pub fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.rounds.len()).flat_map(move |i| {
            self.round(i)
                .into_iter()
                .flat_map(|b| b.records.into_iter())
        })
    }

    /// The buffers of round `index` (checked by `parse`).
    fn round(&self, index: usize) -> Vec<BufferRecords<'_>> {
        let Some(&start) = self.rounds.get(index) else {
            return Vec::new();
        };
        let mut c = Cursor {
            bytes: &self.bytes,
            pos: start,
        };
        let mut buffers = Vec::new();
        // `parse` walked these bytes already; a failure here cannot happen and ends the round.
        let Ok(n) = c.u32("") else { return buffers };
        for _ in 0..n {
            let (Ok(flags), Ok(count)) = (c.u32(""), c.u32("")) else {
                break;
            };
            let mut records = Vec::with_capacity(count as usize);
            for _ in 0..count {
                match c.u32("").and_then(|len| c.take(len as usize, "")) {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            buffers.push(BufferRecords {
                records,
                ring_error: flags & 1 != 0,
            });
        }
        buffers
    }
}

/// A [`RecordSource`] that replays a [`Capture`] round by round.
#[derive(Debug)]
pub struct Replay<'a> {
    capture: &'a Capture,
    next: usize,
}

impl Replay<'_> {
    /// True when every round was handed out.
    pub fn is_done(&self) -> bool {
        self.next >= self.capture.rounds.len()
    }
}

impl RecordSource for Replay<'_> {
    fn format(&self) -> SampleFormat {
        self.capture.format
    }

    fn companion_ids(&self) -> &[u64] {
        &self.capture.companion_ids
    }

    fn wake_ids(&self) -> Vec<u64> {
        self.capture.wake_ids.clone()
    }

    fn read_round(
        &mut self,
        apply: &mut dyn FnMut(&[BufferRecords<'_>]) -> io::Result<()>,
    ) -> io::Result<()> {
        let buffers = self.capture.round(self.next);
        self.next = self.next.saturating_add(1);
        apply(&buffers)
    }
}

/// A recorder writing a profile on `out` (with `header`) set up as the recording of `capture`
/// was: its call-graph mode and settings. [`replay`] drains the capture's rounds through it; a
/// caller that looks between rounds drains [`Capture::replay`] itself.
pub fn recorder<W: Write>(capture: &Capture, out: W, header: &Header) -> io::Result<Recorder<W>> {
    Recorder::with_settings(out, header, capture.call_graph(), capture.settings())
}

/// Replays `capture` into a profile on `out` (with `header`), as the recording did: the same
/// rounds, call-graph mode and settings, no names appended. Returns the output and the counts.
pub fn replay<W: Write>(capture: &Capture, out: W, header: &Header) -> io::Result<(W, Stats)> {
    let mut recorder = recorder(capture, out, header)?;
    let mut source = capture.replay();
    while !source.is_done() {
        recorder.drain(&mut source)?;
    }
    recorder.finish(|_, _| Vec::new())
}
