//! The file format: a magic string, a version, then checksummed blocks.
//!
//! ```text
//! file   := magic[8] version:u32le flags:u32le block*
//! block  := len:u32le crc32:u32le kind:u8 payload[len - 1]
//! ```
//! `crc32` covers `kind` and `payload`. Kind 1 is the [`Header`] (always the first block), kind 2 a
//! postcard-encoded `Vec<Record>`. A recording appends blocks as it goes, so a profile cut short
//! (rprof killed, disk full) still reads up to its last complete block; a finished profile ends
//! with a block whose last record is a [`Record::Summary`].

use std::io::{self, Read, Write};

use crate::model::{Header, Record, Summary};

/// First bytes of every rprof profile. The CR LF catches text-mode mangling, as PNG's does.
pub const MAGIC: [u8; 8] = *b"RPROF\0\r\n";
/// The format version this crate writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest block a reader accepts; anything larger is taken as corruption.
pub const MAX_BLOCK: u32 = 256 << 20;

const KIND_HEADER: u8 = 1;
const KIND_RECORDS: u8 = 2;
/// A writer ends a block once it holds this many encoded bytes.
const BLOCK_TARGET: usize = 1 << 20;

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The profile's path.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with rprof's magic bytes.
    #[error("{path} is not an rprof profile (it does not start with rprof's magic bytes)")]
    NotAProfile {
        /// The profile's path.
        path: String,
    },
    /// The profile was written by a newer rprof.
    #[error(
        "{path} uses profile format version {found}, newer than this rprof reads ({supported}); \
         upgrade rprof to read it"
    )]
    NewerVersion {
        /// The profile's path.
        path: String,
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The header block is missing or damaged: nothing in the file can be trusted.
    #[error("{path} has a damaged header ({reason}); it cannot be read")]
    BadHeader {
        /// The profile's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Writes a profile as a stream of blocks.
///
/// Records are buffered and written as one block by [`flush`](Writer::flush) (and automatically
/// once a block reaches about 1 MiB). Call `flush` regularly while recording: whatever was
/// flushed survives a crash of the writer.
pub struct Writer<W: Write> {
    out: W,
    pending: Vec<Record>,
    pending_estimate: usize,
    scratch: Vec<u8>,
    bytes_written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a profile on `out` with `header`, writing the magic, version and header block.
    pub fn new(mut out: W, header: &Header) -> io::Result<Self> {
        let mut start = Vec::with_capacity(16);
        start.extend_from_slice(&MAGIC);
        start.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        start.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&start)?;
        let mut writer = Writer {
            out,
            pending: Vec::new(),
            pending_estimate: 0,
            scratch: Vec::new(),
            bytes_written: start.len() as u64,
        };
        let payload = postcard::to_stdvec(header).map_err(io::Error::other)?;
        writer.write_block(KIND_HEADER, &payload)?;
        writer.out.flush()?;
        Ok(writer)
    }

    /// Adds a record to the current block.
    pub fn push(&mut self, record: Record) -> io::Result<()> {
        self.pending_estimate += estimate(&record);
        self.pending.push(record);
        if self.pending_estimate >= BLOCK_TARGET {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Ends the current block and flushes it to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }

    /// Bytes written so far (flushed blocks only).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Appends the summary, flushes, and returns the underlying writer.
    pub fn finish(mut self, summary: Summary) -> io::Result<W> {
        self.pending.push(Record::Summary(summary));
        self.flush()?;
        Ok(self.out)
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.scratch.clear();
        let records = std::mem::take(&mut self.pending);
        let payload = postcard::to_extend(&records, std::mem::take(&mut self.scratch))
            .map_err(io::Error::other)?;
        self.write_block(KIND_RECORDS, &payload)?;
        self.scratch = payload;
        self.pending = records;
        self.pending.clear();
        self.pending_estimate = 0;
        Ok(())
    }

    fn write_block(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len() + 1)
            .ok()
            .filter(|&len| len <= MAX_BLOCK)
            .ok_or_else(|| io::Error::other("profile block too large"))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(payload);
        let mut head = [0u8; 9];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        head[8] = kind;
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.bytes_written += head.len() as u64 + payload.len() as u64;
        Ok(())
    }
}

/// A rough size of a record once encoded, to decide when a block is full.
fn estimate(record: &Record) -> usize {
    match record {
        Record::Sample(s) => 24 + 6 * (s.user.len() + s.kernel.len()),
        Record::Symbols(s) => {
            s.strings.iter().map(|x| x.len() + 2).sum::<usize>() + 16 * s.entries.len()
        }
        Record::Module(m) => 32 + m.path.len(),
        Record::Comm { name, .. } => 24 + name.len(),
        _ => 24,
    }
}

/// How a stream of blocks ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The file ended after a complete block.
    Clean,
    /// The file ends in the middle of a block starting at this offset.
    Truncated {
        /// Offset of the incomplete block.
        offset: u64,
    },
    /// The block at this offset is damaged; nothing after it was read.
    Corrupt {
        /// Offset of the damaged block.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads the blocks of a profile one at a time.
pub struct BlockReader<R: Read> {
    input: R,
    offset: u64,
    end: Option<End>,
    path: String,
}

impl<R: Read> BlockReader<R> {
    /// Checks the magic and version, reads the header, and returns it with a reader positioned
    /// at the first record block. `path` is only used in messages.
    pub fn new(mut input: R, path: &str) -> Result<(Header, Self), ReadError> {
        let mut start = [0u8; 16];
        let got = read_full(&mut input, &mut start).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        if got < MAGIC.len() || start[..8] != MAGIC {
            return Err(ReadError::NotAProfile {
                path: path.to_owned(),
            });
        }
        if got < start.len() {
            return Err(ReadError::BadHeader {
                path: path.to_owned(),
                reason: "the file ends inside its first 16 bytes".into(),
            });
        }
        let version = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
        if version > FORMAT_VERSION {
            return Err(ReadError::NewerVersion {
                path: path.to_owned(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(ReadError::BadHeader {
                path: path.to_owned(),
                reason: "format version 0 does not exist".into(),
            });
        }
        let mut reader = BlockReader {
            input,
            offset: start.len() as u64,
            end: None,
            path: path.to_owned(),
        };
        let bad = |reason: String| ReadError::BadHeader {
            path: path.to_owned(),
            reason,
        };
        let header = match reader.next_block() {
            Ok(Some((KIND_HEADER, payload))) => postcard::from_bytes::<Header>(&payload)
                .map_err(|e| bad(format!("header does not decode: {e}")))?,
            Ok(Some((kind, _))) => return Err(bad(format!("first block has kind {kind}"))),
            Ok(None) => {
                let reason = match &reader.end {
                    Some(End::Corrupt { reason, .. }) => reason.clone(),
                    _ => "the file ends before the header is complete".into(),
                };
                return Err(bad(reason));
            }
            Err(source) => {
                return Err(ReadError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Ok((header, reader))
    }

    /// The next block of records, or `None` at the end of the readable part (see [`end`]).
    ///
    /// [`end`]: BlockReader::end
    pub fn next_records(&mut self) -> io::Result<Option<Vec<Record>>> {
        loop {
            let start = self.offset;
            match self.next_block()? {
                None => return Ok(None),
                Some((KIND_RECORDS, payload)) => {
                    match postcard::from_bytes::<Vec<Record>>(&payload) {
                        Ok(records) => return Ok(Some(records)),
                        Err(e) => {
                            self.end = Some(End::Corrupt {
                                offset: start,
                                reason: format!("records do not decode: {e}"),
                            });
                            return Ok(None);
                        }
                    }
                }
                // Unknown block kinds of this version are skipped: room for additions that
                // older readers may ignore.
                Some(_) => continue,
            }
        }
    }

    /// How the stream ended; `None` until [`next_records`](Self::next_records) returned `None`.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The path given to [`new`](Self::new).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn next_block(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let start = self.offset;
        let mut head = [0u8; 9];
        let got = read_full(&mut self.input, &mut head)?;
        if got == 0 {
            self.end = Some(End::Clean);
            return Ok(None);
        }
        if got < head.len() {
            self.end = Some(End::Truncated { offset: start });
            return Ok(None);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let kind = head[8];
        if len == 0 || len > MAX_BLOCK {
            self.end = Some(End::Corrupt {
                offset: start,
                reason: format!("block length {len} is out of range"),
            });
            return Ok(None);
        }
        let body_len = (len - 1) as usize;
        let mut payload = Vec::new();
        let got = (&mut self.input)
            .take(body_len as u64)
            .read_to_end(&mut payload)?;
        if got < body_len {
            self.end = Some(End::Truncated { offset: start });
            return Ok(None);
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            self.end = Some(End::Corrupt {
                offset: start,
                reason: "checksum mismatch".into(),
            });
            return Ok(None);
        }
        self.offset = start + head.len() as u64 + body_len as u64;
        Ok(Some((kind, payload)))
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
