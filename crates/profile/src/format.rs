//! The file format: a magic string, a version, then checksummed blocks.
//!
//! ```text
//! file    := magic[8] version:u32le flags:u32le block*
//! block   := len:u32le crc32:u32le kind:u8 payload[len - 1]
//! records := seq:varint raw_len:varint zstd(body)     (version 4; version 3: zstd(record*))
//!          | seq:varint record*                       (version 2; version 1: postcard Vec<Record>)
//! body    := size record*  size stacks  size times  size threads  size text   (sizes: varints)
//! record  := size:varint bytes[size]                  bytes = postcard(Record): tag varint, fields
//!                                                     (samples: see `compact`)
//! ```
//! `crc32` covers `kind` and `payload`. Kind 1 is the [`Header`] (always the first block), kind 2
//! a block of records. A recording appends blocks as it goes, so a profile cut short (rprof
//! killed, disk full) still reads up to its last complete block; a finished profile ends with a
//! block whose last record is a [`Record::Summary`].
//!
//! Version 2 numbers the records blocks (1, 2, 3, …) so that a block read twice (a file joined to
//! a copy of itself) or out of place is noticed, and frames every record with its size so that a
//! record of a kind this reader does not know (written by a newer rprof) is skipped and counted
//! instead of ending the read. Version 1 files (no numbers, no sizes) are still read; there a
//! block that repeats an earlier one byte for byte is taken as a repeat.
//!
//! Version 3 compresses the records of each block with zstd (a block still stands alone: it
//! decodes without any other) and stores samples compactly: a block's stacks as a tree, times as
//! jitter ([`crate::compact`]). `raw_len` is the size of the records once decompressed; a reader
//! refuses a block that claims more than [`MAX_RAW`] or decompresses to anything but `raw_len`
//! bytes, so that a small hostile block cannot expand without limit. Blocks that hold names are
//! compressed harder than the blocks written while recording.
//!
//! Version 4 moves the fields of a block's samples out of their records (which keep only their
//! kind) into three columns after the records: stacks, times, threads. The times are noise to
//! zstd; on their own they no longer break its matches of the stacks. Names (`Symbols`) are
//! stored in columns too, their strings in the block's text column ([`crate::compact`]).
//!
//! This module only frames, checks and decodes blocks; what the records mean, and the warnings a
//! reader shows, are `profile.rs`'s.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use crate::compact::{
    decode_symbols, encode_symbols, put_varint, take_varint, Columns, Fields, SampleDecoder,
    SampleEncoder, BLOCK_FRAMES, SAMPLE_TAG, SYMBOLS_TAG,
};
use crate::model::{Header, Record, Summary};

/// First bytes of every rprof profile. The CR LF catches text-mode mangling, as PNG's does.
pub const MAGIC: [u8; 8] = *b"RPROF\0\r\n";
/// The format version this crate writes and the newest it reads.
///
/// Version 2 (rprof 0.1, issue 9/10): records blocks carry a sequence number and every record
/// its size. A version-1 reader would take the new records blocks for damage, so the version
/// was bumped; version 1 files are still read.
///
/// Version 3 (issue 13): records blocks are zstd-compressed and samples stored compactly. A
/// version-2 reader would take them for damage, so the version was bumped; versions 1 and 2
/// are still read.
///
/// Version 4 (issue 13): the fields of a block's samples are stored after its records, as
/// columns (stacks, times, threads), so that zstd matches the stacks apart from the noisy
/// times. A version-3 reader would misread the samples, so the version was bumped; versions
/// 1-3 are still read.
pub const FORMAT_VERSION: u32 = 4;
/// Largest block a reader accepts; anything larger is taken as corruption.
pub const MAX_BLOCK: u32 = 256 << 20;
/// Largest decompressed records payload a reader accepts (version 3). A writer's blocks hold
/// about 1 MiB, more only for a single big record (the names of a module).
pub const MAX_RAW: u64 = 256 << 20;
/// zstd level of the blocks written while recording: cheap enough to keep up with sampling.
const RECORDS_LEVEL: i32 = 6;
/// zstd level of blocks that hold names (written once, when recording has ended). Level 19
/// made rg's profile 0.4 % smaller than 15 and took 3 times as long (24 ms against 7.5 ms, on
/// the recorder's critical path after the target exits; issue 13). On the names block of an rg
/// profile named from the cache (41.5 KB raw), `zstd -b` gives level 15 10,781 bytes at
/// 9.2 MB/s, 14 10,872 bytes at 16.4 MB/s, 12 11,111 bytes at 34.6 MB/s: 14 takes half the
/// time of 15 for a profile 0.5 % larger.
const NAMES_LEVEL: i32 = 14;

const KIND_HEADER: u8 = 1;
const KIND_RECORDS: u8 = 2;
/// A writer ends a block once it holds this many encoded bytes.
const BLOCK_TARGET: usize = 1 << 20;
/// Variant index of the last [`Record`] variant this reader knows (`AllocSummary`, kind 12).
const LAST_KNOWN_TAG: u64 = 12;
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
    /// The path is not something to read a profile from: a FIFO, a device, a directory (opening
    /// a FIFO would block until a writer comes, so it is refused without waiting).
    #[error("cannot read {path}: {reason}")]
    Refused {
        /// The profile's path.
        path: String,
        /// Why, e.g. "not a regular file (a FIFO)".
        reason: String,
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
/// Records are encoded as they are pushed and written as one block by [`flush`](Writer::flush)
/// (and automatically once a block reaches about 1 MiB). Call `flush` regularly while
/// recording: whatever was flushed survives a crash of the writer.
pub struct Writer<W: Write> {
    out: W,
    /// The encoded records of the current block, each with its size.
    pending: Vec<u8>,
    pending_records: usize,
    /// The current block holds names: it is compressed harder.
    pending_names: bool,
    /// zstd level of blocks that hold names ([`NAMES_LEVEL`] unless set).
    names_level: i32,
    /// The stack tree and clock of the current block's samples.
    samples: SampleEncoder,
    /// The fields of the current block's samples (their records hold only their kind).
    columns: Columns,
    /// Sequence number of the next records block (the first is 1).
    next_seq: u64,
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
            pending_records: 0,
            pending_names: false,
            names_level: NAMES_LEVEL,
            samples: SampleEncoder::default(),
            columns: Columns::default(),
            next_seq: 1,
            scratch: Vec::new(),
            bytes_written: start.len() as u64,
        };
        let payload = postcard::to_stdvec(header).map_err(io::Error::other)?;
        writer.write_block(KIND_HEADER, &payload)?;
        writer.out.flush()?;
        Ok(writer)
    }

    /// Compresses blocks holding names at zstd `level` instead of the default (15, for a small
    /// profile): for files written often and kept locally, such as rprof's name cache.
    pub fn set_names_level(&mut self, level: i32) {
        self.names_level = level;
    }

    /// Adds a record to the current block.
    pub fn push(&mut self, record: Record) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let encoded = match &record {
            Record::Sample(sample) => {
                self.samples.encode(sample, &mut self.columns);
                put_varint(&mut scratch, SAMPLE_TAG);
                scratch
            }
            Record::Symbols(symbols) => {
                self.pending_names = true;
                put_varint(&mut scratch, SYMBOLS_TAG);
                encode_symbols(symbols, &mut scratch, &mut self.columns.text);
                scratch
            }
            other => postcard::to_extend(other, scratch).map_err(io::Error::other)?,
        };
        self.push_encoded(&encoded);
        self.scratch = encoded;
        if self.pending.len() + self.columns.len() >= BLOCK_TARGET
            || self.samples.frames >= BLOCK_FRAMES
        {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Adds an already encoded record (its tag varint and fields) to the current block. Tests
    /// use it to write records of kinds a later rprof may add. Not for a `Sample`, whose fields
    /// go to the block's columns: use [`push`](Self::push).
    #[doc(hidden)]
    pub fn push_encoded(&mut self, encoded: &[u8]) {
        put_varint(&mut self.pending, encoded.len() as u64);
        self.pending.extend_from_slice(encoded);
        self.pending_records += 1;
    }

    /// Ends the current block and writes a block of `kind` with `payload` as it is. Tests use
    /// it to write block kinds a later rprof may add.
    #[doc(hidden)]
    pub fn push_block(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        self.write_pending()?;
        self.write_block(kind, payload)
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
        self.push(Record::Summary(summary))?;
        self.flush()?;
        Ok(self.out)
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending_records == 0 {
            return Ok(());
        }
        let level = if self.pending_names {
            self.names_level
        } else {
            RECORDS_LEVEL
        };
        let body = block_body(&self.pending, &self.columns);
        let payload = compressed_payload(self.next_seq, &body, level)?;
        self.write_block(KIND_RECORDS, &payload)?;
        self.pending.clear();
        self.columns.clear();
        self.pending_records = 0;
        self.pending_names = false;
        self.samples.reset();
        self.next_seq += 1;
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

/// The payload of a records block numbered `seq` of a file of `version` 3 or 4 (4: any other
/// number) that holds `records` (each framed by its size, postcard-encoded; no samples or
/// names, so the columns of version 4 are empty), compressed at zstd `level`. Tests and the
/// fuzz target use it to build blocks.
#[doc(hidden)]
pub fn records_payload(version: u32, seq: u64, records: &[u8], level: i32) -> io::Result<Vec<u8>> {
    if version == 3 {
        compressed_payload(seq, records, level)
    } else {
        compressed_payload(seq, &block_body(records, &Columns::default()), level)
    }
}

/// A version 4 block before compression: the records, then the samples' columns, each after
/// its size.
fn block_body(records: &[u8], columns: &Columns) -> Vec<u8> {
    let mut body = Vec::with_capacity(records.len() + columns.len() + 16);
    for part in [
        records,
        &columns.stacks,
        &columns.times,
        &columns.threads,
        &columns.text,
    ] {
        put_varint(&mut body, part.len() as u64);
        body.extend_from_slice(part);
    }
    body
}

/// `seq raw_len zstd(body)`: a records payload of version 3 or 4.
fn compressed_payload(seq: u64, body: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(body.len() / 4 + 16);
    put_varint(&mut payload, seq);
    put_varint(&mut payload, body.len() as u64);
    let compressed = zstd::bulk::compress(body, level)?;
    payload.extend_from_slice(&compressed);
    Ok(payload)
}

/// Splits a version 4 block body into its records and its samples' columns; bytes after the
/// last column are ignored (room for columns a newer rprof adds).
fn split_body(body: &[u8]) -> Result<(&[u8], Fields<'_>), String> {
    let mut rest = body;
    let mut parts = [&body[..0]; 5];
    for (part, what) in
        parts
            .iter_mut()
            .zip(["records", "stacks", "times", "threads", "names' text"])
    {
        let (size, after) = take_varint(rest)
            .ok_or_else(|| format!("the size of the block's {what} does not decode"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= after.len())
            .ok_or_else(|| format!("the block's {what} run past its end"))?;
        (*part, rest) = after.split_at(size);
    }
    let [records, stacks, times, threads, text] = parts;
    Ok((
        records,
        Fields::Columns {
            stacks,
            times,
            threads,
            text,
        },
    ))
}

/// Decompresses a version 3 records payload (after `seq`) to exactly the size it states, never
/// more than [`MAX_RAW`].
fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let (raw_len, compressed) =
        take_varint(payload).ok_or("the block's decompressed size does not decode")?;
    if raw_len > MAX_RAW {
        return Err(format!(
            "the block claims {raw_len} bytes once decompressed, more than the {MAX_RAW} \
             a reader accepts"
        ));
    }
    let records = zstd::bulk::decompress(compressed, raw_len as usize)
        .map_err(|e| format!("the block does not decompress: {e}"))?;
    if records.len() as u64 != raw_len {
        return Err(format!(
            "the block decompresses to {} bytes, not the {raw_len} it states",
            records.len()
        ));
    }
    Ok(records)
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
    /// A second header block starts at this offset: another profile was appended to this one.
    /// Nothing after it was read.
    SecondHeader {
        /// Offset of the second header block.
        offset: u64,
    },
}

/// What a reader met besides records: repeated, misplaced or missing blocks and kinds it does
/// not know. All zero for a sound file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadNotes {
    /// Blocks skipped because they repeat a block read before: the same sequence number and
    /// checksum (version 2), or the same length and checksum (version 1).
    pub repeated_blocks: u64,
    /// Blocks skipped because they reuse the sequence number of a block read before with other
    /// contents (the first one read is kept).
    pub conflicting_blocks: u64,
    /// Blocks read after a block with a higher sequence number.
    pub out_of_order_blocks: u64,
    /// Records blocks that were never seen although a higher number was (version 2).
    pub missing_blocks: u64,
    /// Records of kinds this reader does not know (written by a newer rprof), skipped.
    pub unknown_records: u64,
    /// Blocks of kinds this reader does not know, skipped.
    pub unknown_blocks: u64,
}

/// Reads the blocks of a profile one at a time.
pub struct BlockReader<R: Read> {
    input: R,
    offset: u64,
    end: Option<End>,
    path: String,
    version: u32,
    /// Version 2: checksum of every records block read, by sequence number.
    seen_seq: HashMap<u64, u32>,
    /// Highest sequence number read.
    max_seq: u64,
    /// Version 1: (length, checksum) of every records block read.
    seen_blocks: HashMap<(u32, u32), ()>,
    notes: ReadNotes,
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
            version,
            seen_seq: HashMap::new(),
            max_seq: 0,
            seen_blocks: HashMap::new(),
            notes: ReadNotes::default(),
        };
        let bad = |reason: String| ReadError::BadHeader {
            path: path.to_owned(),
            reason,
        };
        let header = match reader.next_block() {
            Ok(Some((KIND_HEADER, _, payload))) => postcard::from_bytes::<Header>(&payload)
                .map_err(|e| bad(format!("header does not decode: {e}")))?,
            Ok(Some((kind, _, _))) => return Err(bad(format!("first block has kind {kind}"))),
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

    /// The format version of the file.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The next block of records, or `None` at the end of the readable part (see [`end`]).
    /// Repeated blocks and records or blocks of unknown kinds are skipped and counted in
    /// [`notes`](Self::notes).
    ///
    /// [`end`]: BlockReader::end
    pub fn next_records(&mut self) -> io::Result<Option<Vec<Record>>> {
        loop {
            let start = self.offset;
            let (kind, crc, payload) = match self.next_block()? {
                None => return Ok(None),
                Some(block) => block,
            };
            let decoded = match kind {
                KIND_RECORDS if self.version == 1 => self.records_v1(crc, &payload),
                KIND_RECORDS => self.records_numbered(crc, &payload),
                KIND_HEADER => {
                    self.end = Some(End::SecondHeader { offset: start });
                    return Ok(None);
                }
                // Unknown block kinds are skipped: room for additions that older readers may
                // ignore.
                _ => {
                    self.notes.unknown_blocks += 1;
                    continue;
                }
            };
            match decoded {
                Ok(Some(records)) => return Ok(Some(records)),
                Ok(None) => continue,
                Err(reason) => {
                    self.end = Some(End::Corrupt {
                        offset: start,
                        reason,
                    });
                    return Ok(None);
                }
            }
        }
    }

    /// Version 1: the payload is a postcard `Vec<Record>`; a block equal to one read before
    /// (same length and checksum) is a repeat.
    fn records_v1(&mut self, crc: u32, payload: &[u8]) -> Result<Option<Vec<Record>>, String> {
        let key = (payload.len() as u32, crc);
        if self.seen_blocks.insert(key, ()).is_some() {
            self.notes.repeated_blocks += 1;
            return Ok(None);
        }
        postcard::from_bytes::<Vec<Record>>(payload)
            .map(Some)
            .map_err(|e| format!("records do not decode: {e}"))
    }

    /// Versions 2 and 3: a sequence number, then records each framed by its size (version 3:
    /// compressed, samples in their compact form).
    fn records_numbered(
        &mut self,
        crc: u32,
        payload: &[u8],
    ) -> Result<Option<Vec<Record>>, String> {
        let (seq, rest) =
            take_varint(payload).ok_or("the block's sequence number does not decode")?;
        match self.seen_seq.get(&seq) {
            Some(&seen) if seen == crc => {
                self.notes.repeated_blocks += 1;
                return Ok(None);
            }
            Some(_) => {
                self.notes.conflicting_blocks += 1;
                return Ok(None);
            }
            None => {}
        }
        let compact = self.version >= 3;
        let decompressed;
        let mut columns = None;
        let mut rest = if compact {
            decompressed = decompress(rest)?;
            if self.version >= 4 {
                let (records, fields) = split_body(&decompressed)?;
                columns = Some(fields);
                records
            } else {
                &decompressed[..]
            }
        } else {
            rest
        };
        let mut samples = SampleDecoder::new(self.version);
        let mut records = Vec::new();
        let mut unknown = 0u64;
        while !rest.is_empty() {
            let (size, after) = take_varint(rest).ok_or("a record's size does not decode")?;
            let size = usize::try_from(size)
                .ok()
                .filter(|&size| size <= after.len())
                .ok_or("a record runs past the end of its block")?;
            let (bytes, after) = after.split_at(size);
            rest = after;
            let (tag, _) = take_varint(bytes).ok_or("a record has no kind")?;
            if tag > LAST_KNOWN_TAG {
                unknown += 1;
                continue;
            }
            if compact && tag == SAMPLE_TAG {
                // Version 4: the fields are in the columns, and bytes after the kind (a newer
                // rprof's additions) are ignored.
                let sample = match &mut columns {
                    Some(fields) => samples.decode(fields)?,
                    None => {
                        let (_, fields) = take_varint(bytes).ok_or("a record has no kind")?;
                        samples.decode(&mut Fields::Record(fields))?
                    }
                };
                records.push(Record::Sample(sample));
                continue;
            }
            if let (Some(Fields::Columns { text, .. }), SYMBOLS_TAG) = (&mut columns, tag) {
                let (_, fields) = take_varint(bytes).ok_or("a record has no kind")?;
                records.push(Record::Symbols(decode_symbols(fields, text)?));
                continue;
            }
            // Bytes after the fields this reader knows are ignored: a newer rprof may append
            // fields to a record.
            let (record, _) = postcard::take_from_bytes::<Record>(bytes)
                .map_err(|e| format!("a record of kind {tag} does not decode: {e}"))?;
            records.push(record);
        }
        if columns.as_ref().is_some_and(|fields| !fields.all_read()) {
            return Err("the block's columns hold more than its samples and names use".into());
        }
        if seq < self.max_seq {
            self.notes.out_of_order_blocks += 1;
        }
        self.max_seq = self.max_seq.max(seq);
        self.seen_seq.insert(seq, crc);
        self.notes.missing_blocks = self.max_seq.saturating_sub(self.seen_seq.len() as u64);
        self.notes.unknown_records = self.notes.unknown_records.saturating_add(unknown);
        Ok(Some(records))
    }

    /// What was skipped or out of place so far.
    pub fn notes(&self) -> &ReadNotes {
        &self.notes
    }

    /// How the stream ended; `None` until [`next_records`](Self::next_records) returned `None`.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The path given to [`new`](Self::new).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The next block's kind, checksum and payload, after checking its length and checksum.
    fn next_block(&mut self) -> io::Result<Option<(u8, u32, Vec<u8>)>> {
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
        Ok(Some((kind, crc, payload)))
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
