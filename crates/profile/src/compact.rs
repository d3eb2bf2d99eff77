//! The compact encoding of samples inside a records block (format versions 3 and 4).
//!
//! Most samples of a block share most of their stack with an earlier one: the same callers,
//! another leaf. Version 3 therefore stores each block's stacks as a tree of *nodes*, built as
//! the block goes: a node is one frame (its module, its address, user or kernel) under a parent
//! node (0: the root, above the outermost frame). A sample names the deepest node it shares with
//! the stacks written before it in the block, then the frames below that node that are new,
//! which become nodes in turn. A stack seen before costs two bytes. Times are stored as the
//! difference from when the sample was due (the thread's previous sample plus the period), so
//! that only the jitter is left; periods as the change from the previous sample's.
//!
//! ```text
//! sample := tag=4 time:zigzag pid tid cpu period:zigzag flags:u8 base:varint count:varint
//!           frame[count]
//! frame  := module_kernel:varint address:zigzag     (module + 1, 0: none) * 2 + kernel;
//!                                                   address - the parent node's address
//! ```
//! `flags` bit 0 is `truncated`. The chain from the root runs through the user stack from its
//! outermost frame to the instruction pointer, then through the kernel stack likewise.
//!
//! Version 4 stores the same fields, in the same order, as three columns of the block
//! ([`Columns`]): `time` in *times*; `pid tid cpu period` in *threads*; `flags base count
//! frame[count]` in *stacks*. A sample's record then holds only its tag. A frame's address is
//! stored against an anchor chosen by [`Anchors`] (a sibling, the parent, or the module's last
//! frame) rather than always its parent, and a time is due after the same CPU's previous sample
//! rather than the same thread's. Version 4 also stores `Symbols` records compactly
//! ([`encode_symbols`]), their strings in the block's text column.
//!
//! The tree starts empty in every block, so that blocks stay independent: a block read twice,
//! out of order or alone decodes the same. A reader bounds the depth of a node and the frames a
//! block may expand to ([`MAX_DEPTH`], [`MAX_BLOCK_FRAMES`]): a hostile block of a few bytes
//! cannot make it build stacks without end.
//!
//! This module leaves the block framing, the columns' place in a block and compression to
//! `format`.

use std::collections::HashMap;

use crate::model::{Address, ModuleId, Sample, StoredFrame, Symbols};

/// Deepest stack (user and kernel frames together) a reader accepts: rprof-unwind stops at 4,096
/// user frames and the kernel's callchains are shorter still.
pub(crate) const MAX_DEPTH: u32 = 16_384;
/// Most frames the samples of one block may expand to; a writer ends its block well before.
pub(crate) const MAX_BLOCK_FRAMES: u64 = 1 << 26;
/// A writer ends a block once its samples hold this many frames.
pub(crate) const BLOCK_FRAMES: u64 = 1 << 22;

/// The tag of a `Sample` record (its variant index in [`crate::Record`]).
pub(crate) const SAMPLE_TAG: u64 = 4;

/// Appends `value` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 varint from the front of `bytes`: the value and the rest, or `None` when it
/// runs off the end or past 64 bits.
pub(crate) fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn zigzag(value: u64) -> u64 {
    let value = value as i64;
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    ((value >> 1) as i64 ^ -((value & 1) as i64)) as u64
}

/// One node of a block's stack tree, as a reader holds it.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    kernel: bool,
    address: Address,
    depth: u32,
}

/// What identifies a node while writing: its parent, user or kernel, module + 1, address.
type NodeKey = (u32, bool, u32, u64);

/// The time and period a block's next sample is compared with.
#[derive(Debug, Default)]
struct Clock {
    /// Per thread (version 3) or CPU (version 4), the time of its last sample in the block.
    last: HashMap<u32, u64>,
    /// The time of the block's last sample.
    previous_time: u64,
    /// The period of the block's last sample.
    previous_period: u64,
}

impl Clock {
    fn due(&self, key: u32, period: u64) -> u64 {
        self.last
            .get(&key)
            .map_or(self.previous_time, |&t| t.wrapping_add(period))
    }

    fn saw(&mut self, key: u32, time: u64, period: u64) {
        self.last.insert(key, time);
        self.previous_time = time;
        self.previous_period = period;
    }
}

/// What a new node's address is stored against, as the block's tree grows. Version 3: the
/// parent node's address. Version 4, the first that applies:
/// 1. the parent's most recent child, if it is in the same module and on the same side (user
///    or kernel): another instruction in the same function, most often;
/// 2. the parent, if it is in the same module and on the same side;
/// 3. the block's last new node in that module and side (0 if none): the first kernel frame
///    under a user frame then costs a few bytes, not the nine of a kernel address.
#[derive(Debug)]
struct Anchors {
    version3: bool,
    /// Per node (index 0: the root): module + 1, kernel, address.
    nodes: Vec<(u32, bool, u64)>,
    /// Per node: its most recent child (0: none yet).
    last_child: Vec<u32>,
    /// Per (module + 1, kernel): the address of the block's last new node there.
    last: HashMap<(u32, bool), u64>,
}

impl Anchors {
    fn new(version3: bool) -> Anchors {
        Anchors {
            version3,
            nodes: vec![(0, false, 0)],
            last_child: vec![0],
            last: HashMap::new(),
        }
    }

    /// Whose previous sample a sample's time is due after: its thread's (version 3) or its
    /// CPU's (version 4: a thread's timer stops while it is off the CPU, so that its own
    /// previous sample predicts worse; on the benchmarks the times take 3-11 % fewer bytes).
    fn clock_key(&self, tid: u32, cpu: u32) -> u32 {
        if self.version3 {
            tid
        } else {
            cpu
        }
    }

    /// The address a new node under `parent` (a node defined before) is stored against.
    fn reference(&self, parent: u32, module: u32, kernel: bool) -> u64 {
        let parent = parent as usize;
        let (parent_module, parent_kernel, parent_address) = self.nodes[parent];
        if self.version3 {
            return parent_address;
        }
        let child = self.last_child[parent] as usize;
        let (child_module, child_kernel, child_address) = self.nodes[child];
        if child != 0 && child_module == module && child_kernel == kernel {
            child_address
        } else if parent != 0 && parent_module == module && parent_kernel == kernel {
            parent_address
        } else {
            self.last.get(&(module, kernel)).copied().unwrap_or(0)
        }
    }

    /// Adds a node under `parent`; returns its id.
    fn add(&mut self, parent: u32, module: u32, kernel: bool, address: u64) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push((module, kernel, address));
        self.last_child.push(0);
        self.last_child[parent as usize] = id;
        self.last.insert((module, kernel), address);
        id
    }
}

/// Encodes the samples of one block; [`reset`](Self::reset) at every new block.
#[derive(Debug)]
pub(crate) struct SampleEncoder {
    nodes: HashMap<NodeKey, u32>,
    anchors: Anchors,
    clock: Clock,
    /// Frames the block's samples hold.
    pub frames: u64,
}

impl Default for SampleEncoder {
    /// An encoder of version 4.
    fn default() -> SampleEncoder {
        SampleEncoder::new(false)
    }
}

impl SampleEncoder {
    fn new(version3: bool) -> SampleEncoder {
        SampleEncoder {
            nodes: HashMap::new(),
            anchors: Anchors::new(version3),
            clock: Clock::default(),
            frames: 0,
        }
    }

    /// Forgets the tree and the clock: the next sample starts a block.
    pub fn reset(&mut self) {
        *self = SampleEncoder::new(self.anchors.version3);
    }

    /// Appends `sample`'s fields to `out`: its time to `times`; pid, tid, cpu and period to
    /// `threads`; flags and stack to `stacks`.
    pub fn encode(&mut self, sample: &Sample, out: &mut Columns) {
        let key = self.anchors.clock_key(sample.tid, sample.cpu);
        let due = self.clock.due(key, sample.period);
        put_varint(&mut out.times, zigzag(sample.time.wrapping_sub(due)));
        let threads = &mut out.threads;
        put_varint(threads, u64::from(sample.pid));
        put_varint(threads, u64::from(sample.tid));
        put_varint(threads, u64::from(sample.cpu));
        put_varint(
            threads,
            zigzag(sample.period.wrapping_sub(self.clock.previous_period)),
        );
        self.clock.saw(key, sample.time, sample.period);
        let out = &mut out.stacks;
        out.push(u8::from(sample.truncated));
        let chain = sample
            .user
            .iter()
            .rev()
            .map(|a| (false, a))
            .chain(sample.kernel.iter().rev().map(|a| (true, a)));
        let key = |parent: u32, (kernel, a): (bool, &Address)| {
            (parent, kernel, a.module.map_or(0, |m| m.0 + 1), a.address)
        };
        let mut base = 0u32;
        let mut shared = 0usize;
        for frame in chain.clone() {
            match self.nodes.get(&key(base, frame)) {
                Some(&node) => {
                    base = node;
                    shared += 1;
                }
                None => break,
            }
        }
        let depth = sample.user.len() + sample.kernel.len();
        put_varint(out, u64::from(base));
        put_varint(out, (depth - shared) as u64);
        let mut parent = base;
        for frame in chain.skip(shared) {
            let (kernel, address) = frame;
            let module = address.module.map_or(0, |m| m.0 + 1);
            put_varint(out, u64::from(module) * 2 + u64::from(kernel));
            let above = self.anchors.reference(parent, module, kernel);
            put_varint(out, zigzag(address.address.wrapping_sub(above)));
            let node = self.anchors.add(parent, module, kernel, address.address);
            self.nodes.insert(key(parent, frame), node);
            parent = node;
        }
        self.frames += depth as u64;
    }
}

/// The fields of a block's samples, in three columns: in version 4 each column is stored on
/// its own after the block's records, so that the noisy times do not break the matches zstd
/// finds in the stacks; in version 3 a sample's record holds its part of each column, times
/// first, then threads, then stacks.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    /// Per sample: `flags base count frame[count]`.
    pub stacks: Vec<u8>,
    /// Per sample: `time` (zigzag, against when it was due).
    pub times: Vec<u8>,
    /// Per sample: `pid tid cpu period` (period zigzag, against the previous sample's).
    pub threads: Vec<u8>,
    /// The strings of the block's `Symbols` records, back to back (version 4).
    pub text: Vec<u8>,
}

impl Columns {
    pub fn clear(&mut self) {
        self.stacks.clear();
        self.times.clear();
        self.threads.clear();
        self.text.clear();
    }

    /// Bytes the columns hold.
    pub fn len(&self) -> usize {
        self.stacks.len() + self.times.len() + self.threads.len() + self.text.len()
    }
}

/// Where a decoder reads a sample's fields from: one record (version 3) or a block's columns
/// (version 4, in the order `stacks`, `times`, `threads`).
pub(crate) enum Fields<'a> {
    /// Version 3: the record's bytes after its tag.
    Record(&'a [u8]),
    /// Version 4: what is left of each column.
    Columns {
        stacks: &'a [u8],
        times: &'a [u8],
        threads: &'a [u8],
        /// The strings of the block's names.
        text: &'a [u8],
    },
}

#[derive(Clone, Copy)]
enum Column {
    Stacks,
    Times,
    Threads,
}

impl Fields<'_> {
    fn next(&mut self, column: Column, what: &str) -> Result<u64, String> {
        let rest = match self {
            Fields::Record(rest) => rest,
            Fields::Columns { stacks, .. } if matches!(column, Column::Stacks) => stacks,
            Fields::Columns { times, .. } if matches!(column, Column::Times) => times,
            Fields::Columns { threads, .. } => threads,
        };
        let (value, after) =
            take_varint(rest).ok_or_else(|| format!("a sample's {what} does not decode"))?;
        *rest = after;
        Ok(value)
    }

    /// Version 4: every column was read to its end.
    pub fn all_read(&self) -> bool {
        match self {
            Fields::Record(_) => true,
            Fields::Columns {
                stacks,
                times,
                threads,
                text,
            } => stacks.is_empty() && times.is_empty() && threads.is_empty() && text.is_empty(),
        }
    }
}

/// Decodes the samples of one block: the tree of the samples read so far.
#[derive(Debug)]
pub(crate) struct SampleDecoder {
    /// Index 0: the root.
    nodes: Vec<Node>,
    anchors: Anchors,
    clock: Clock,
    /// Frames the block's samples expanded to so far.
    frames: u64,
}

impl SampleDecoder {
    /// A decoder of a block of format `version` (3 or 4).
    pub fn new(version: u32) -> SampleDecoder {
        SampleDecoder {
            anchors: Anchors::new(version < 4),
            nodes: vec![Node {
                parent: 0,
                kernel: false,
                address: Address {
                    module: None,
                    address: 0,
                },
                depth: 0,
            }],
            clock: Clock::default(),
            frames: 0,
        }
    }

    /// Decodes the next sample from `fields`. In version 3, bytes after the fields (a newer
    /// rprof's additions) are ignored.
    pub fn decode(&mut self, fields: &mut Fields) -> Result<Sample, String> {
        let mut next = |column: Column, what: &str| fields.next(column, what);
        let time_offset = unzigzag(next(Column::Times, "time")?);
        let small = |value: u64, what: &str| {
            u32::try_from(value).map_err(|_| format!("a sample's {what} is out of range"))
        };
        let pid = small(next(Column::Threads, "pid")?, "pid")?;
        let tid = small(next(Column::Threads, "tid")?, "tid")?;
        let cpu = small(next(Column::Threads, "cpu")?, "cpu")?;
        let period = self
            .clock
            .previous_period
            .wrapping_add(unzigzag(next(Column::Threads, "period")?));
        let key = self.anchors.clock_key(tid, cpu);
        let time = self.clock.due(key, period).wrapping_add(time_offset);
        self.clock.saw(key, time, period);
        let flags = next(Column::Stacks, "flags")?;
        let base = next(Column::Stacks, "stack")?;
        let count = next(Column::Stacks, "frame count")?;
        let mut parent = u32::try_from(base)
            .ok()
            .filter(|&b| (b as usize) < self.nodes.len())
            .ok_or("a sample refers to a stack frame not defined before it")?;
        for _ in 0..count {
            let module_kernel = next(Column::Stacks, "frame")?;
            let delta = unzigzag(next(Column::Stacks, "frame address")?);
            let above = self.nodes[parent as usize];
            if above.depth >= MAX_DEPTH {
                return Err(format!(
                    "a sample's stack is deeper than {MAX_DEPTH} frames"
                ));
            }
            let module = u32::try_from(module_kernel / 2)
                .map_err(|_| "a frame's module is out of range".to_string())?;
            let kernel = module_kernel & 1 == 1;
            let address = self
                .anchors
                .reference(parent, module, kernel)
                .wrapping_add(delta);
            self.nodes.push(Node {
                parent,
                kernel,
                address: Address {
                    module: module.checked_sub(1).map(ModuleId),
                    address,
                },
                depth: above.depth + 1,
            });
            parent = self.anchors.add(parent, module, kernel, address);
        }
        let leaf = self.nodes[parent as usize];
        self.frames = self.frames.saturating_add(u64::from(leaf.depth));
        if self.frames > MAX_BLOCK_FRAMES {
            return Err(format!(
                "the block's samples expand to more than {MAX_BLOCK_FRAMES} frames"
            ));
        }
        let mut user = Vec::new();
        let mut kernel = Vec::new();
        let mut node = leaf;
        let mut at = parent;
        while at != 0 {
            if node.kernel {
                kernel.push(node.address);
            } else {
                user.push(node.address);
            }
            at = node.parent;
            node = self.nodes[at as usize];
        }
        Ok(Sample {
            time,
            pid,
            tid,
            cpu,
            period,
            user,
            kernel,
            truncated: flags & 1 == 1,
        })
    }
}

/// The tag of a `Symbols` record (its variant index in [`crate::Record`]).
pub(crate) const SYMBOLS_TAG: u64 = 7;

/// Appends the fields of a version 4 `Symbols` record (after its tag) to `out`: each kind of
/// value in a column of its own, small numbers for what repeats.
///
/// ```text
/// symbols := module:varint (id + 1, 0: none)
///            strings:varint                               (their text: in the block's text column)
///            entries:varint address:zigzag[entries]       (difference from the previous entry's)
///            frames:varint[entries]                       (how many frames each entry has)
///            function:zigzag[F] file:varint[F] line:varint[F] inlined:u8[F]
/// ```
/// The strings go to the block's *text* column, each as its UTF-8 bytes followed by a 0 byte
/// (a 0 byte inside a string is written 1 2, a 1 byte 1 1): text apart from numbers compresses
/// better, and no lengths are needed. `F` is the entries' frames in all. `file` is the string index plus one, wrapping (unknown,
/// `u32::MAX`, is 0); `function` the same, stored as the zigzag difference (as a 32-bit
/// signed number) from the previous frame's (the first frame's from 0): string tables list a
/// module's names in the order its frames use them.
pub(crate) fn encode_symbols(symbols: &Symbols, out: &mut Vec<u8>, text: &mut Vec<u8>) {
    put_varint(out, symbols.module.map_or(0, |m| u64::from(m.0) + 1));
    put_varint(out, symbols.strings.len() as u64);
    for string in &symbols.strings {
        for &byte in string.as_bytes() {
            match byte {
                0 => text.extend_from_slice(&[1, 2]),
                1 => text.extend_from_slice(&[1, 1]),
                other => text.push(other),
            }
        }
        text.push(0);
    }
    put_varint(out, symbols.entries.len() as u64);
    let mut previous = 0u64;
    for (address, _) in &symbols.entries {
        put_varint(out, zigzag(address.wrapping_sub(previous)));
        previous = *address;
    }
    for (_, frames) in &symbols.entries {
        put_varint(out, frames.len() as u64);
    }
    let frames = || symbols.entries.iter().flat_map(|(_, frames)| frames);
    let mut previous = 0u32;
    for f in frames() {
        let value = f.function.wrapping_add(1);
        put_varint(
            out,
            zigzag(i64::from(value.wrapping_sub(previous) as i32) as u64),
        );
        previous = value;
    }
    for f in frames() {
        put_varint(out, u64::from(f.file.wrapping_add(1)));
    }
    for f in frames() {
        put_varint(out, u64::from(f.line));
    }
    out.extend(frames().map(|f| u8::from(f.inlined)));
}

/// Decodes what [`encode_symbols`] wrote; bytes after it (a newer rprof's additions) are
/// ignored. Every count is checked against the bytes left before anything is allocated.
pub(crate) fn decode_symbols(bytes: &[u8], text: &mut &[u8]) -> Result<Symbols, String> {
    let mut rest = bytes;
    let mut next = |what: &str| -> Result<u64, String> {
        let (value, after) =
            take_varint(rest).ok_or_else(|| format!("the names' {what} do not decode"))?;
        rest = after;
        Ok(value)
    };
    let module = next("module")?;
    let module = match module.checked_sub(1) {
        None => None,
        Some(id) => {
            Some(ModuleId(u32::try_from(id).map_err(|_| {
                "the names' module is out of range".to_string()
            })?))
        }
    };
    // Each value takes at least a byte: a count larger than the bytes left is damage.
    let count = |value: u64, left: usize, what: &str| {
        usize::try_from(value)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| format!("the names claim more {what} than their record holds"))
    };
    let small = |value: u64, what: &str| {
        u32::try_from(value).map_err(|_| format!("a name's {what} is out of range"))
    };
    let strings = next("string count")?;
    // Each string takes at least its end in the text.
    let strings = count(strings, text.len(), "strings")?;
    let mut texts = Vec::with_capacity(strings);
    for _ in 0..strings {
        let end = text
            .iter()
            .position(|&b| b == 0)
            .ok_or("the names' text runs past the block's")?;
        let (escaped, after) = text.split_at(end);
        *text = &after[1..];
        let mut string = Vec::with_capacity(escaped.len());
        let mut bytes = escaped.iter().copied();
        while let Some(byte) = bytes.next() {
            if byte != 1 {
                string.push(byte);
                continue;
            }
            match bytes.next() {
                Some(1) => string.push(1),
                Some(2) => string.push(0),
                _ => return Err("the names' text has a bad escape".into()),
            }
        }
        texts.push(String::from_utf8(string).map_err(|_| "a name is not valid UTF-8".to_string())?);
    }
    let mut take = |what: &str| -> Result<u64, String> {
        let (value, after) =
            take_varint(rest).ok_or_else(|| format!("the names' {what} do not decode"))?;
        rest = after;
        Ok(value)
    };
    let entries = take("entry count")?;
    let mut addresses = Vec::new();
    let mut previous = 0u64;
    let entries = {
        let left = bytes.len();
        count(entries, left, "entries")?
    };
    for _ in 0..entries {
        previous = previous.wrapping_add(unzigzag(take("addresses")?));
        addresses.push(previous);
    }
    let mut sizes = Vec::with_capacity(entries);
    let mut total = 0usize;
    for _ in 0..entries {
        let size = count(take("frame counts")?, bytes.len(), "frames")?;
        total = total.saturating_add(size);
        sizes.push(size);
    }
    if total > bytes.len() {
        return Err("the names claim more frames than their record holds".into());
    }
    let mut functions = Vec::with_capacity(total);
    let mut previous = 0u32;
    for _ in 0..total {
        let delta = unzigzag(take("functions")?) as i64;
        let delta = i32::try_from(delta).map_err(|_| "a name's function is out of range")?;
        previous = previous.wrapping_add(delta as u32);
        functions.push(previous.wrapping_sub(1));
    }
    let mut files = Vec::with_capacity(total);
    for _ in 0..total {
        files.push(small(take("files")?, "file")?.wrapping_sub(1));
    }
    let mut lines = Vec::with_capacity(total);
    for _ in 0..total {
        lines.push(small(take("lines")?, "line")?);
    }
    if rest.len() < total {
        return Err("the names' inlined flags run past their record".into());
    }
    let inlined = &rest[..total];
    let mut at = 0;
    let entries = addresses
        .into_iter()
        .zip(sizes)
        .map(|(address, size)| {
            let frames = (at..at + size)
                .map(|i| StoredFrame {
                    function: functions[i],
                    file: files[i],
                    line: lines[i],
                    inlined: inlined[i] & 1 == 1,
                })
                .collect();
            at += size;
            (address, frames)
        })
        .collect();
    Ok(Symbols {
        module,
        strings: texts,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(module: u32, address: u64) -> Address {
        Address {
            module: Some(ModuleId(module)),
            address,
        }
    }

    fn sample(time: u64, tid: u32, user: Vec<Address>, kernel: Vec<Address>) -> Sample {
        Sample {
            time,
            pid: 7,
            tid,
            cpu: tid % 2,
            period: 1_001_001,
            user,
            kernel,
            truncated: time.is_multiple_of(3),
        }
    }

    /// Encodes `samples` as one block and decodes them both ways: as version 3 records (each
    /// sample's part of every column) and as version 4 columns. Returns the version 4 columns.
    fn round_trip(samples: &[Sample]) -> Columns {
        let mut encoder = SampleEncoder::new(true);
        let mut decoder = SampleDecoder::new(3);
        for s in samples {
            let mut one = Columns::default();
            encoder.encode(s, &mut one);
            let mut record = Vec::new();
            for column in [&one.times, &one.threads, &one.stacks] {
                record.extend_from_slice(column);
            }
            assert_eq!(&decoder.decode(&mut Fields::Record(&record)).unwrap(), s);
        }
        let mut encoder = SampleEncoder::default();
        let mut block = Columns::default();
        for s in samples {
            encoder.encode(s, &mut block);
        }
        let mut decoder = SampleDecoder::new(4);
        let mut fields = Fields::Columns {
            stacks: &block.stacks,
            times: &block.times,
            threads: &block.threads,
            text: &[],
        };
        for s in samples {
            assert_eq!(&decoder.decode(&mut fields).unwrap(), s);
        }
        assert!(fields.all_read());
        block
    }

    /// Issue 13: stacks that share callers are stored once; every field comes back as written.
    #[test]
    fn samples_round_trip_and_shared_stacks_cost_a_few_bytes() {
        let callers = vec![at(0, 0x1200), at(0, 0x1100), at(0, 0x1000)];
        let kernel = vec![at(1, 0xffff_ffff_8100_0010), at(1, 0xffff_ffff_8100_2000)];
        let mut samples = Vec::new();
        for i in 0..100u64 {
            let mut user = vec![at(0, 0x2000 + i % 4)];
            user.extend_from_slice(&callers);
            let k = if i % 2 == 0 {
                kernel.clone()
            } else {
                Vec::new()
            };
            samples.push(sample(
                1_000_000_000 + i * 1_001_003,
                (i % 3) as u32 + 10,
                user,
                k,
            ));
        }
        // No module, a truncated stack, an empty stack, time going backwards.
        samples.push(sample(
            5,
            99,
            vec![Address {
                module: None,
                address: u64::MAX,
            }],
            vec![],
        ));
        samples.push(sample(3, 99, vec![], vec![]));
        let block = round_trip(&samples);
        assert!(block.len() < 100 * 16, "{} bytes", block.len());
    }

    /// Issue 13: a hostile block cannot make the reader build stacks without end.
    #[test]
    fn deep_and_expanding_stacks_are_refused() {
        let mut decoder = SampleDecoder::new(3);
        let mut bytes = vec![0, 1, 1, 0, 0, 0, 0];
        put_varint(&mut bytes, u64::from(MAX_DEPTH) + 1);
        for _ in 0..=MAX_DEPTH {
            bytes.extend_from_slice(&[2, 2]);
        }
        let error = decoder.decode(&mut Fields::Record(&bytes)).unwrap_err();
        assert!(error.contains("deeper than"), "{error}");

        let mut decoder = SampleDecoder::new(3);
        let mut deep = vec![0, 1, 1, 0, 0, 0, 0];
        put_varint(&mut deep, u64::from(MAX_DEPTH) - 1);
        for _ in 1..MAX_DEPTH {
            deep.extend_from_slice(&[2, 2]);
        }
        decoder.decode(&mut Fields::Record(&deep)).unwrap();
        let mut again = vec![0, 1, 1, 0, 0, 0];
        put_varint(&mut again, u64::from(MAX_DEPTH) - 1);
        again.push(0);
        let mut error = None;
        for _ in 0..(MAX_BLOCK_FRAMES / u64::from(MAX_DEPTH) + 2) {
            if let Err(e) = decoder.decode(&mut Fields::Record(&again)) {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("the block's frames are bounded");
        assert!(error.contains("expand to more than"), "{error}");
    }

    #[test]
    fn references_to_undefined_nodes_and_cut_samples_are_errors() {
        let mut decoder = SampleDecoder::new(3);
        assert!(decoder
            .decode(&mut Fields::Record(&[0, 1, 1, 0, 0, 0, 5, 0]))
            .is_err());
        assert!(decoder
            .decode(&mut Fields::Record(&[0, 1, 1, 0, 0, 0, 0, 2, 2]))
            .is_err());
        assert!(decoder.decode(&mut Fields::Record(&[0, 1])).is_err());
    }

    /// Issue 13 (version 4): names stored in columns come back exactly: unknown functions
    /// and files, addresses going down, an entry with no frames, no module, text that is not
    /// ASCII; a record cut anywhere is an error, never a panic.
    #[test]
    fn symbols_come_back_exactly() {
        let frame = |function, file, line, inlined| StoredFrame {
            function,
            file,
            line,
            inlined,
        };
        let symbols = Symbols {
            module: Some(ModuleId(3)),
            strings: vec![
                "f".into(),
                "a.c".into(),
                "ünï\0cö\u{1}dé".into(),
                String::new(),
            ],
            entries: vec![
                (0xffff_ffff_8100_0010, vec![frame(0, u32::MAX, 0, false)]),
                (
                    0xffff_ffff_8100_0200,
                    vec![frame(0, 1, 7, true), frame(u32::MAX, u32::MAX, 0, false)],
                ),
                (5, vec![]),
                (u64::MAX, vec![frame(2, 0, u32::MAX, false)]),
            ],
        };
        let mut bytes = Vec::new();
        let mut text = Vec::new();
        encode_symbols(&symbols, &mut bytes, &mut text);
        assert_eq!(decode_symbols(&bytes, &mut &text[..]).unwrap(), symbols);
        for cut in 0..bytes.len() {
            assert!(
                decode_symbols(&bytes[..cut], &mut &text[..]).is_err(),
                "cut at {cut}"
            );
        }
        for cut in 0..text.len() {
            let error = decode_symbols(&bytes, &mut &text[..cut]).unwrap_err();
            assert!(
                error.contains("past the block's") || error.contains("more strings"),
                "{error}"
            );
        }
        assert!(text.starts_with(b"f\0a.c\0"));
        let mut bad = text.clone();
        bad[0] = 1;
        let error = decode_symbols(&bytes, &mut &bad[..]).unwrap_err();
        assert!(error.contains("bad escape"), "{error}");
        let error = decode_symbols(&bytes, &mut &[0xff, 0, 0, 0, 0][..]).unwrap_err();
        assert!(error.contains("UTF-8"), "{error}");
        let none = Symbols {
            module: None,
            strings: vec![],
            entries: vec![],
        };
        let mut bytes = Vec::new();
        encode_symbols(&none, &mut bytes, &mut text);
        assert_eq!(bytes, [0, 0, 0]);
        assert_eq!(decode_symbols(&bytes, &mut &[][..]).unwrap(), none);
        // Counts larger than the record are refused before anything is allocated.
        assert!(decode_symbols(&[1, 0x80, 0x80, 0x80, 0x80, 0x0f], &mut &[][..]).is_err());
        assert!(decode_symbols(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f], &mut &[][..]).is_err());
    }
}
