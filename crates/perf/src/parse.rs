//! Parsing of the records the kernel writes into a perf ring buffer: bytes in, typed records out.
//! Also the counter values of `perf_event_attr.read_format` ([`parse_read_values`]), which the
//! kernel uses both for `read(2)` on a counter and inside READ records.
//!
//! Every read is bounds-checked; a record that is shorter than its fields say, or whose sample
//! layout we cannot decode, is an [`Err`], never a panic. Records borrow from the input bytes
//! (the ring buffer or a scratch copy of a record that wrapped around its end).

use std::fmt;

use perf_event_open_sys::bindings as sys;

/// Size of `struct perf_event_header`.
pub const HEADER_SIZE: usize = 8;

/// `misc` bit of an MMAP2 record: the record carries a build id instead of device/inode.
pub const MISC_MMAP_BUILD_ID: u16 = sys::PERF_RECORD_MISC_MMAP_BUILD_ID as u16;
/// `misc` bit of a COMM record: the name changed because of an `execve`.
pub const MISC_COMM_EXEC: u16 = sys::PERF_RECORD_MISC_COMM_EXEC as u16;
/// `misc` mask selecting the CPU mode of a sample.
pub const MISC_CPUMODE_MASK: u16 = sys::PERF_RECORD_MISC_CPUMODE_MASK as u16;
/// CPU mode: the sample was taken in the kernel.
pub const MISC_KERNEL: u16 = sys::PERF_RECORD_MISC_KERNEL as u16;
/// CPU mode: the sample was taken in user space.
pub const MISC_USER: u16 = sys::PERF_RECORD_MISC_USER as u16;

/// Sample-type bits this parser can decode (any other bit in `sample_type` is refused, because
/// the fields after it could not be located).
pub const SUPPORTED_SAMPLE_TYPE: u64 = (sys::PERF_SAMPLE_IDENTIFIER
    | sys::PERF_SAMPLE_IP
    | sys::PERF_SAMPLE_TID
    | sys::PERF_SAMPLE_TIME
    | sys::PERF_SAMPLE_ADDR
    | sys::PERF_SAMPLE_ID
    | sys::PERF_SAMPLE_STREAM_ID
    | sys::PERF_SAMPLE_CPU
    | sys::PERF_SAMPLE_PERIOD
    | sys::PERF_SAMPLE_CALLCHAIN
    | sys::PERF_SAMPLE_RAW
    | sys::PERF_SAMPLE_REGS_USER
    | sys::PERF_SAMPLE_STACK_USER) as u64;

/// `read_format` bits [`parse_read_values`] can decode (all the kernel defines today).
pub const SUPPORTED_READ_FORMAT: u64 = (sys::PERF_FORMAT_TOTAL_TIME_ENABLED
    | sys::PERF_FORMAT_TOTAL_TIME_RUNNING
    | sys::PERF_FORMAT_ID
    | sys::PERF_FORMAT_GROUP
    | sys::PERF_FORMAT_LOST) as u64;

/// What was wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The bytes end before a field does.
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// The header's size is smaller than a header, or larger than the bytes given.
    BadSize {
        /// The size the header claims.
        size: usize,
        /// The bytes available.
        available: usize,
    },
    /// A count inside the record (callchain length, stack size, ...) cannot be right.
    BadCount {
        /// The field holding the count.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The sample layout uses sample-type bits this parser does not decode.
    UnsupportedSampleType {
        /// The unsupported bits.
        bits: u64,
    },
    /// The counter values use read-format bits this parser does not decode.
    UnsupportedReadFormat {
        /// The unsupported bits.
        bits: u64,
    },
}

/// A record that could not be parsed: what was wrong, in which record type, at which offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The `type` of the record (0 when the header itself could not be read).
    pub record_type: u32,
    /// Offset inside the record where reading failed.
    pub offset: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed perf record (type {}) at byte {}: ",
            self.record_type, self.offset
        )?;
        match &self.kind {
            ParseErrorKind::Truncated { field, need, have } => {
                write!(f, "{field} needs {need} bytes, only {have} left")
            }
            ParseErrorKind::BadSize { size, available } => {
                write!(f, "header size {size} with {available} bytes available")
            }
            ParseErrorKind::BadCount { field, value } => write!(f, "impossible {field} {value}"),
            ParseErrorKind::UnsupportedSampleType { bits } => {
                write!(f, "sample_type bits {bits:#x} are not supported")
            }
            ParseErrorKind::UnsupportedReadFormat { bits } => {
                write!(f, "read_format bits {bits:#x} are not supported")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// How the samples, READ records and `sample_id` trailers of one event's records are laid
/// out: the `sample_type`, `sample_regs_user`, `read_format` and `sample_id_all` settings of its
/// `perf_event_attr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleFormat {
    /// `perf_event_attr.sample_type`.
    pub sample_type: u64,
    /// `perf_event_attr.sample_regs_user`: which registers a REGS_USER block holds.
    pub regs_user_mask: u64,
    /// `perf_event_attr.read_format`: the layout of the values in a READ record.
    pub read_format: u64,
    /// `perf_event_attr.sample_id_all`: non-sample records end with a `sample_id` trailer.
    pub sample_id_all: bool,
}

impl SampleFormat {
    /// The layout described by an attr.
    pub fn from_attr(attr: &sys::perf_event_attr) -> SampleFormat {
        SampleFormat {
            sample_type: attr.sample_type,
            regs_user_mask: attr.sample_regs_user,
            read_format: attr.read_format,
            sample_id_all: attr.sample_id_all() != 0,
        }
    }

    fn has(&self, bit: u32) -> bool {
        self.sample_type & u64::from(bit) != 0
    }

    /// Size in bytes of the `sample_id` trailer of non-sample records.
    pub fn sample_id_size(&self) -> usize {
        if !self.sample_id_all {
            return 0;
        }
        [
            sys::PERF_SAMPLE_TID,
            sys::PERF_SAMPLE_TIME,
            sys::PERF_SAMPLE_ID,
            sys::PERF_SAMPLE_STREAM_ID,
            sys::PERF_SAMPLE_CPU,
            sys::PERF_SAMPLE_IDENTIFIER,
        ]
        .iter()
        .filter(|&&bit| self.has(bit))
        .count()
            * 8
    }
}

/// The `sample_id` trailer of a non-sample record (all `None` without `sample_id_all`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleId {
    /// Process id.
    pub pid: Option<u32>,
    /// Thread id.
    pub tid: Option<u32>,
    /// Timestamp.
    pub time: Option<u64>,
    /// Event id (PERF_SAMPLE_ID).
    pub id: Option<u64>,
    /// Stream id.
    pub stream_id: Option<u64>,
    /// CPU.
    pub cpu: Option<u32>,
    /// Event id (PERF_SAMPLE_IDENTIFIER).
    pub identifier: Option<u64>,
}

/// The user registers of a sample (PERF_SAMPLE_REGS_USER).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Regs<'a> {
    /// `PERF_SAMPLE_REGS_ABI_*`: 0 (none) when the sample has no user context, e.g. a kernel thread.
    pub abi: u64,
    mask: u64,
    data: &'a [u8],
}

impl<'a> Regs<'a> {
    /// Registers from raw parts: `data` holds one u64 per bit set in `mask`, lowest bit first.
    pub fn new(abi: u64, mask: u64, data: &'a [u8]) -> Regs<'a> {
        Regs { abi, mask, data }
    }

    /// The value of register number `reg` (`PERF_REG_X86_*`), if it was sampled.
    pub fn get(&self, reg: u32) -> Option<u64> {
        if self.abi == u64::from(sys::PERF_SAMPLE_REGS_ABI_NONE) || reg >= 64 {
            return None;
        }
        if self.mask & (1u64 << reg) == 0 {
            return None;
        }
        let index = (self.mask & ((1u64 << reg) - 1)).count_ones() as usize;
        read_u64_at(self.data, index * 8)
    }
}

impl fmt::Debug for Regs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_map();
        for reg in 0..64 {
            if let Some(value) = self.get(reg) {
                list.entry(&reg, &format_args!("{value:#x}"));
            }
        }
        list.finish()
    }
}

/// x86_64 register numbers of `sample_regs_user` (`arch/x86/include/uapi/asm/perf_regs.h`).
pub mod x86_64 {
    /// First argument register (a system call's first argument: a futex's address).
    pub const DI: u32 = 5;
    /// Second argument register (a system call's second argument: a futex's operation).
    pub const SI: u32 = 4;
    /// Third argument register (a system call's third argument).
    pub const DX: u32 = 3;
    /// Frame pointer.
    pub const BP: u32 = 6;
    /// Stack pointer.
    pub const SP: u32 = 7;
    /// Instruction pointer.
    pub const IP: u32 = 8;
}

/// A sample's callchain (PERF_SAMPLE_CALLCHAIN): instruction pointers and `PERF_CONTEXT_*`
/// markers, leaf first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Callchain<'a> {
    data: &'a [u8],
}

/// Which part of a callchain an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallchainContext {
    /// The kernel.
    Kernel,
    /// User space.
    User,
    /// Anything else (hypervisor, guest): not used by rprof.
    Other,
}

/// True for the `PERF_CONTEXT_*` markers that separate the parts of a callchain.
pub fn is_context_marker(value: u64) -> bool {
    value >= sys::PERF_CONTEXT_MAX
}

impl<'a> Callchain<'a> {
    /// Number of entries (addresses and markers).
    pub fn len(&self) -> usize {
        self.data.len() / 8
    }

    /// True when the callchain has no entries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The raw entries, markers included.
    pub fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        let data = self.data;
        (0..data.len() / 8).filter_map(move |i| read_u64_at(data, i * 8))
    }

    /// The addresses, each with the context its marker gave it (markers removed). Addresses
    /// before any marker count as [`CallchainContext::Other`].
    pub fn addresses(&self) -> impl Iterator<Item = (CallchainContext, u64)> + 'a {
        let mut context = CallchainContext::Other;
        self.iter().filter_map(move |value| {
            if is_context_marker(value) {
                context = match value {
                    sys::PERF_CONTEXT_KERNEL => CallchainContext::Kernel,
                    sys::PERF_CONTEXT_USER => CallchainContext::User,
                    _ => CallchainContext::Other,
                };
                None
            } else {
                Some((context, value))
            }
        })
    }

    /// Appends the kernel addresses to `kernel` and the user addresses to `user` (leaf first,
    /// markers and other contexts dropped).
    pub fn split_into(&self, kernel: &mut Vec<u64>, user: &mut Vec<u64>) {
        for (context, address) in self.addresses() {
            match context {
                CallchainContext::Kernel => kernel.push(address),
                CallchainContext::User => user.push(address),
                CallchainContext::Other => {}
            }
        }
    }
}

impl fmt::Debug for Callchain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|v| format!("{v:#x}")))
            .finish()
    }
}

/// A PERF_RECORD_SAMPLE. Fields are `None` when the sample type does not include them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// The header's `misc` (CPU mode, exact IP).
    pub misc: u16,
    /// PERF_SAMPLE_IDENTIFIER.
    pub identifier: Option<u64>,
    /// Instruction pointer.
    pub ip: Option<u64>,
    /// Process id.
    pub pid: Option<u32>,
    /// Thread id.
    pub tid: Option<u32>,
    /// Timestamp.
    pub time: Option<u64>,
    /// PERF_SAMPLE_ADDR.
    pub addr: Option<u64>,
    /// PERF_SAMPLE_ID.
    pub id: Option<u64>,
    /// Stream id.
    pub stream_id: Option<u64>,
    /// CPU.
    pub cpu: Option<u32>,
    /// Period (weight) of the sample.
    pub period: Option<u64>,
    /// Callchain.
    pub callchain: Option<Callchain<'a>>,
    /// PERF_SAMPLE_RAW payload.
    pub raw: Option<&'a [u8]>,
    /// User registers.
    pub regs_user: Option<Regs<'a>>,
    /// The valid part (`dyn_size` bytes) of the user stack copy, starting at the user SP.
    pub stack_user: Option<&'a [u8]>,
}

/// A PERF_RECORD_MMAP2 (or an old PERF_RECORD_MMAP, which has no file identity or protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mmap<'a> {
    /// The header's `misc`.
    pub misc: u16,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Start address of the mapping.
    pub addr: u64,
    /// Length of the mapping.
    pub len: u64,
    /// File offset of the mapping's start.
    pub pgoff: u64,
    /// Which file is mapped (None for an old MMAP record).
    pub file_id: Option<FileId<'a>>,
    /// `PROT_*` bits (0 for an old MMAP record).
    pub prot: u32,
    /// `MAP_*` bits (0 for an old MMAP record).
    pub flags: u32,
    /// File name as the kernel wrote it (`[vdso]`, `//anon`, a path, ...), without its NUL.
    pub filename: &'a [u8],
    /// The sample_id trailer.
    pub sample_id: SampleId,
}

impl Mmap<'_> {
    /// True when the mapping is executable (old MMAP records only reported executable maps).
    pub fn is_executable(&self) -> bool {
        self.file_id.is_none() || self.prot & (libc::PROT_EXEC as u32) != 0
    }
}

/// How an MMAP2 record identifies the mapped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileId<'a> {
    /// Device and inode (the classic MMAP2 layout).
    Inode {
        /// Device major number.
        maj: u32,
        /// Device minor number.
        min: u32,
        /// Inode number.
        ino: u64,
        /// Inode generation.
        ino_generation: u64,
    },
    /// The ELF build id (PERF_RECORD_MISC_MMAP_BUILD_ID).
    BuildId(&'a [u8]),
}

/// A PERF_RECORD_COMM: a thread's name changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comm<'a> {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The new name, without its NUL.
    pub name: &'a [u8],
    /// The name changed because the process called `execve`.
    pub exec: bool,
    /// The sample_id trailer.
    pub sample_id: SampleId,
}

/// A PERF_RECORD_FORK or PERF_RECORD_EXIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent thread id.
    pub ptid: u32,
    /// Timestamp.
    pub time: u64,
    /// The sample_id trailer.
    pub sample_id: SampleId,
}

/// A PERF_RECORD_SWITCH (or SWITCH_CPU_WIDE): the task in `sample_id` left or entered a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// The task is leaving the CPU (false: it is being switched in).
    pub out: bool,
    /// Leaving while still runnable: preempted (PERF_RECORD_MISC_SWITCH_OUT_PREEMPT).
    pub preempt: bool,
    /// SWITCH_CPU_WIDE only: the (pid, tid) of the task switched to (out) or from (in).
    pub other: Option<(u32, u32)>,
    /// The trailer: whose switch it is, when, on which CPU.
    pub sample_id: SampleId,
}

/// A PERF_RECORD_LOST: the ring buffer was full and `lost` records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// The event id.
    pub id: u64,
    /// How many records were lost.
    pub lost: u64,
    /// The sample_id trailer.
    pub sample_id: SampleId,
}

/// A PERF_RECORD_THROTTLE or PERF_RECORD_UNTHROTTLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// True for THROTTLE, false for UNTHROTTLE.
    pub throttled: bool,
    /// Timestamp.
    pub time: u64,
    /// Event id.
    pub id: u64,
    /// Stream id.
    pub stream_id: u64,
    /// The sample_id trailer.
    pub sample_id: SampleId,
}

/// A PERF_RECORD_LOST_SAMPLES: samples dropped before they reached the ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostSamples {
    /// How many samples were lost.
    pub lost: u64,
    /// The sample_id trailer.
    pub sample_id: SampleId,
}

/// The values of one counter in a [`ReadValues`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterValue {
    /// The count.
    pub value: u64,
    /// The counter's kernel id (`PERF_FORMAT_ID`).
    pub id: Option<u64>,
    /// Samples the counter lost (`PERF_FORMAT_LOST`).
    pub lost: Option<u64>,
}

/// Counter values laid out as `perf_event_attr.read_format` says: what `read(2)` on a counter
/// returns, and the body of a READ record. With `PERF_FORMAT_GROUP` one value per group member
/// (leader first), else the one counter's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReadValues<'a> {
    /// `time_enabled` (`PERF_FORMAT_TOTAL_TIME_ENABLED`), in ns.
    pub enabled: Option<u64>,
    /// `time_running` (`PERF_FORMAT_TOTAL_TIME_RUNNING`), in ns.
    pub running: Option<u64>,
    values: Values<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Values<'a> {
    /// Group members: `stride`-byte entries of value, then id and lost when present.
    Group { data: &'a [u8], read_format: u64 },
    /// A single counter (its value, id and lost are not contiguous in the layout).
    Single(CounterValue),
}

impl<'a> ReadValues<'a> {
    /// Number of counters.
    pub fn len(&self) -> usize {
        match self.values {
            Values::Group { data, read_format } => data.len() / group_stride(read_format),
            Values::Single(_) => 1,
        }
    }

    /// True when there is no counter (a group of none).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters' values, leader first.
    pub fn iter(&self) -> impl Iterator<Item = CounterValue> + 'a {
        let values = self.values;
        let n = self.len();
        (0..n).filter_map(move |i| match values {
            Values::Single(v) => Some(v),
            Values::Group { data, read_format } => {
                let stride = group_stride(read_format);
                let mut r = Reader::new(data.get(i * stride..(i + 1) * stride)?, 0);
                Some(CounterValue {
                    value: r.u64("value").ok()?,
                    id: if read_format & u64::from(sys::PERF_FORMAT_ID) != 0 {
                        Some(r.u64("id").ok()?)
                    } else {
                        None
                    },
                    lost: if read_format & u64::from(sys::PERF_FORMAT_LOST) != 0 {
                        Some(r.u64("lost").ok()?)
                    } else {
                        None
                    },
                })
            }
        })
    }
}

impl fmt::Debug for ReadValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadValues")
            .field("enabled", &self.enabled)
            .field("running", &self.running)
            .field("values", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// Bytes per member in a group read.
fn group_stride(read_format: u64) -> usize {
    let mut words = 1;
    for bit in [sys::PERF_FORMAT_ID, sys::PERF_FORMAT_LOST] {
        if read_format & u64::from(bit) != 0 {
            words += 1;
        }
    }
    words * 8
}

/// Parses counter values laid out as `read_format` says (the bytes `read(2)` returned, or the
/// values of a READ record). Returns them and the number of bytes they took; bytes after them
/// are left alone.
pub fn parse_read_values(
    read_format: u64,
    bytes: &[u8],
) -> Result<(ReadValues<'_>, usize), ParseError> {
    let unsupported = read_format & !SUPPORTED_READ_FORMAT;
    if unsupported != 0 {
        return Err(ParseError {
            record_type: 0,
            offset: 0,
            kind: ParseErrorKind::UnsupportedReadFormat { bits: unsupported },
        });
    }
    read_values(read_format, &mut Reader::new(bytes, 0))
}

fn read_values<'a>(
    read_format: u64,
    r: &mut Reader<'a>,
) -> Result<(ReadValues<'a>, usize), ParseError> {
    let start = r.pos;
    let has = |bit: u32| read_format & u64::from(bit) != 0;
    let group = has(sys::PERF_FORMAT_GROUP);
    let nr = if group { r.u64("read.nr")? } else { 0 };
    let single_value = if group { 0 } else { r.u64("read.value")? };
    let enabled = if has(sys::PERF_FORMAT_TOTAL_TIME_ENABLED) {
        Some(r.u64("read.time_enabled")?)
    } else {
        None
    };
    let running = if has(sys::PERF_FORMAT_TOTAL_TIME_RUNNING) {
        Some(r.u64("read.time_running")?)
    } else {
        None
    };
    let values = if group {
        let len = r.count_bytes("read.nr", nr, group_stride(read_format) as u64)?;
        Values::Group {
            data: r.bytes("read.values", len)?,
            read_format,
        }
    } else {
        Values::Single(CounterValue {
            value: single_value,
            id: if has(sys::PERF_FORMAT_ID) {
                Some(r.u64("read.id")?)
            } else {
                None
            },
            lost: if has(sys::PERF_FORMAT_LOST) {
                Some(r.u64("read.lost")?)
            } else {
                None
            },
        })
    };
    Ok((
        ReadValues {
            enabled,
            running,
            values,
        },
        r.pos - start,
    ))
}

/// A PERF_RECORD_READ: a counter's values for one thread, written when an inherited thread
/// exits (with `inherit_stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read<'a> {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The values, laid out as the event's `read_format` says.
    pub values: ReadValues<'a>,
    /// The sample_id trailer (its identifier names the counter that wrote the record).
    pub sample_id: SampleId,
}

/// One record of a perf ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PerfRecord<'a> {
    /// PERF_RECORD_SAMPLE.
    Sample(Sample<'a>),
    /// PERF_RECORD_MMAP2 or PERF_RECORD_MMAP.
    Mmap(Mmap<'a>),
    /// PERF_RECORD_COMM.
    Comm(Comm<'a>),
    /// PERF_RECORD_FORK.
    Fork(Task),
    /// PERF_RECORD_EXIT.
    Exit(Task),
    /// PERF_RECORD_LOST.
    Lost(Lost),
    /// PERF_RECORD_THROTTLE / PERF_RECORD_UNTHROTTLE.
    Throttle(Throttle),
    /// PERF_RECORD_LOST_SAMPLES.
    LostSamples(LostSamples),
    /// PERF_RECORD_READ.
    Read(Read<'a>),
    /// PERF_RECORD_SWITCH or PERF_RECORD_SWITCH_CPU_WIDE (`attr.context_switch`).
    Switch(Switch),
    /// A record type rprof does not use (its header, kept so that callers can count them).
    Other {
        /// The record type.
        record_type: u32,
        /// The header's `misc`.
        misc: u16,
    },
}

impl PerfRecord<'_> {
    /// The record's timestamp, when the layout carries one.
    pub fn time(&self) -> Option<u64> {
        match self {
            PerfRecord::Sample(s) => s.time,
            PerfRecord::Mmap(m) => m.sample_id.time,
            PerfRecord::Comm(c) => c.sample_id.time,
            PerfRecord::Fork(t) | PerfRecord::Exit(t) => Some(t.time),
            PerfRecord::Lost(l) => l.sample_id.time,
            PerfRecord::Throttle(t) => Some(t.time),
            PerfRecord::LostSamples(l) => l.sample_id.time,
            PerfRecord::Read(r) => r.sample_id.time,
            PerfRecord::Switch(s) => s.sample_id.time,
            PerfRecord::Other { .. } => None,
        }
    }
}

/// The header of a record: `(type, misc, size)`.
pub fn parse_header(bytes: &[u8]) -> Result<(u32, u16, usize), ParseError> {
    let mut r = Reader::new(bytes, 0);
    let record_type = r.u32("header.type")?;
    let misc = r.u16("header.misc")?;
    let size = r.u16("header.size")? as usize;
    Ok((record_type, misc, size))
}

/// Parses one record. `bytes` must start with the record's header and hold at least
/// `header.size` bytes (extra bytes after the record are ignored).
pub fn parse_record<'a>(
    format: &SampleFormat,
    bytes: &'a [u8],
) -> Result<PerfRecord<'a>, ParseError> {
    let (record_type, misc, size) = parse_header(bytes)?;
    if size < HEADER_SIZE || size > bytes.len() {
        return Err(ParseError {
            record_type,
            offset: 0,
            kind: ParseErrorKind::BadSize {
                size,
                available: bytes.len(),
            },
        });
    }
    let record = &bytes[..size];
    let body = &record[HEADER_SIZE..];
    let err_type = |mut e: ParseError| {
        e.record_type = record_type;
        e
    };
    match record_type {
        sys::PERF_RECORD_SAMPLE => parse_sample(format, misc, body)
            .map(PerfRecord::Sample)
            .map_err(err_type),
        sys::PERF_RECORD_MMAP | sys::PERF_RECORD_MMAP2 | sys::PERF_RECORD_COMM => {
            let (body, sample_id) = split_sample_id(format, body).map_err(err_type)?;
            let parsed = match record_type {
                sys::PERF_RECORD_COMM => parse_comm(misc, body, sample_id).map(PerfRecord::Comm),
                sys::PERF_RECORD_MMAP => parse_mmap(misc, body, sample_id).map(PerfRecord::Mmap),
                _ => parse_mmap2(misc, body, sample_id).map(PerfRecord::Mmap),
            };
            parsed.map_err(err_type)
        }
        sys::PERF_RECORD_FORK
        | sys::PERF_RECORD_EXIT
        | sys::PERF_RECORD_LOST
        | sys::PERF_RECORD_THROTTLE
        | sys::PERF_RECORD_UNTHROTTLE
        | sys::PERF_RECORD_LOST_SAMPLES => parse_fixed(format, record_type, body).map_err(err_type),
        sys::PERF_RECORD_READ => parse_read(format, body)
            .map(PerfRecord::Read)
            .map_err(err_type),
        sys::PERF_RECORD_SWITCH | sys::PERF_RECORD_SWITCH_CPU_WIDE => {
            parse_switch(format, record_type, misc, body)
                .map(PerfRecord::Switch)
                .map_err(err_type)
        }
        _ => Ok(PerfRecord::Other { record_type, misc }),
    }
}

fn parse_fixed<'a>(
    format: &SampleFormat,
    record_type: u32,
    body: &'a [u8],
) -> Result<PerfRecord<'a>, ParseError> {
    let (fields, sample_id) = split_sample_id(format, body)?;
    let mut r = Reader::new(fields, HEADER_SIZE);
    Ok(match record_type {
        sys::PERF_RECORD_FORK | sys::PERF_RECORD_EXIT => {
            let task = Task {
                pid: r.u32("pid")?,
                ppid: r.u32("ppid")?,
                tid: r.u32("tid")?,
                ptid: r.u32("ptid")?,
                time: r.u64("time")?,
                sample_id,
            };
            if record_type == sys::PERF_RECORD_FORK {
                PerfRecord::Fork(task)
            } else {
                PerfRecord::Exit(task)
            }
        }
        sys::PERF_RECORD_LOST => PerfRecord::Lost(Lost {
            id: r.u64("id")?,
            lost: r.u64("lost")?,
            sample_id,
        }),
        sys::PERF_RECORD_LOST_SAMPLES => PerfRecord::LostSamples(LostSamples {
            lost: r.u64("lost")?,
            sample_id,
        }),
        _ => PerfRecord::Throttle(Throttle {
            throttled: record_type == sys::PERF_RECORD_THROTTLE,
            time: r.u64("time")?,
            id: r.u64("id")?,
            stream_id: r.u64("stream_id")?,
            sample_id,
        }),
    })
}

/// `misc` bit of a switch record: the task is leaving the CPU (else: arriving).
pub const MISC_SWITCH_OUT: u16 = sys::PERF_RECORD_MISC_SWITCH_OUT as u16;
/// `misc` bit of a switch-out record: the task was preempted while runnable (an involuntary
/// switch), rather than blocking.
pub const MISC_SWITCH_OUT_PREEMPT: u16 = sys::PERF_RECORD_MISC_SWITCH_OUT_PREEMPT as u16;

fn parse_switch(
    format: &SampleFormat,
    record_type: u32,
    misc: u16,
    body: &[u8],
) -> Result<Switch, ParseError> {
    let (fields, sample_id) = split_sample_id(format, body)?;
    let other = if record_type == sys::PERF_RECORD_SWITCH_CPU_WIDE {
        let mut r = Reader::new(fields, HEADER_SIZE);
        Some((r.u32("next_prev_pid")?, r.u32("next_prev_tid")?))
    } else {
        None
    };
    let out = misc & MISC_SWITCH_OUT != 0;
    Ok(Switch {
        out,
        preempt: out && misc & MISC_SWITCH_OUT_PREEMPT != 0,
        other,
        sample_id,
    })
}

/// Splits a non-sample record's body into its own fields and its parsed `sample_id` trailer.
fn split_sample_id<'a>(
    format: &SampleFormat,
    body: &'a [u8],
) -> Result<(&'a [u8], SampleId), ParseError> {
    let trailer = format.sample_id_size();
    if trailer > body.len() {
        return Err(ParseError {
            record_type: 0,
            offset: HEADER_SIZE,
            kind: ParseErrorKind::Truncated {
                field: "sample_id",
                need: trailer,
                have: body.len(),
            },
        });
    }
    let split = body.len() - trailer;
    let (fields, tail) = body.split_at(split);
    if !format.sample_id_all {
        return Ok((fields, SampleId::default()));
    }
    let mut r = Reader::new(tail, HEADER_SIZE + split);
    let mut id = SampleId::default();
    if format.has(sys::PERF_SAMPLE_TID) {
        id.pid = Some(r.u32("sample_id.pid")?);
        id.tid = Some(r.u32("sample_id.tid")?);
    }
    if format.has(sys::PERF_SAMPLE_TIME) {
        id.time = Some(r.u64("sample_id.time")?);
    }
    if format.has(sys::PERF_SAMPLE_ID) {
        id.id = Some(r.u64("sample_id.id")?);
    }
    if format.has(sys::PERF_SAMPLE_STREAM_ID) {
        id.stream_id = Some(r.u64("sample_id.stream_id")?);
    }
    if format.has(sys::PERF_SAMPLE_CPU) {
        id.cpu = Some(r.u32("sample_id.cpu")?);
        r.u32("sample_id.res")?;
    }
    if format.has(sys::PERF_SAMPLE_IDENTIFIER) {
        id.identifier = Some(r.u64("sample_id.identifier")?);
    }
    Ok((fields, id))
}

fn parse_read<'a>(format: &SampleFormat, body: &'a [u8]) -> Result<Read<'a>, ParseError> {
    let unsupported = format.read_format & !SUPPORTED_READ_FORMAT;
    if unsupported != 0 {
        return Err(ParseError {
            record_type: sys::PERF_RECORD_READ,
            offset: HEADER_SIZE,
            kind: ParseErrorKind::UnsupportedReadFormat { bits: unsupported },
        });
    }
    let (fields, sample_id) = split_sample_id(format, body)?;
    let mut r = Reader::new(fields, HEADER_SIZE);
    let pid = r.u32("pid")?;
    let tid = r.u32("tid")?;
    let (values, _) = read_values(format.read_format, &mut r)?;
    Ok(Read {
        pid,
        tid,
        values,
        sample_id,
    })
}

fn parse_comm(misc: u16, body: &[u8], sample_id: SampleId) -> Result<Comm<'_>, ParseError> {
    let mut r = Reader::new(body, HEADER_SIZE);
    let pid = r.u32("pid")?;
    let tid = r.u32("tid")?;
    let name = until_nul(r.rest());
    Ok(Comm {
        pid,
        tid,
        name,
        exec: misc & MISC_COMM_EXEC != 0,
        sample_id,
    })
}

fn parse_mmap(misc: u16, body: &[u8], sample_id: SampleId) -> Result<Mmap<'_>, ParseError> {
    let mut r = Reader::new(body, HEADER_SIZE);
    Ok(Mmap {
        misc,
        pid: r.u32("pid")?,
        tid: r.u32("tid")?,
        addr: r.u64("addr")?,
        len: r.u64("len")?,
        pgoff: r.u64("pgoff")?,
        file_id: None,
        prot: 0,
        flags: 0,
        filename: until_nul(r.rest()),
        sample_id,
    })
}

fn parse_mmap2(misc: u16, body: &[u8], sample_id: SampleId) -> Result<Mmap<'_>, ParseError> {
    let mut r = Reader::new(body, HEADER_SIZE);
    let pid = r.u32("pid")?;
    let tid = r.u32("tid")?;
    let addr = r.u64("addr")?;
    let len = r.u64("len")?;
    let pgoff = r.u64("pgoff")?;
    let file_id = if misc & MISC_MMAP_BUILD_ID != 0 {
        let size = r.u8("build_id_size")? as usize;
        r.bytes("reserved", 3)?;
        let id = r.bytes("build_id", 20)?;
        if size > id.len() {
            return Err(r.error(ParseErrorKind::BadCount {
                field: "build_id_size",
                value: size as u64,
            }));
        }
        FileId::BuildId(&id[..size])
    } else {
        FileId::Inode {
            maj: r.u32("maj")?,
            min: r.u32("min")?,
            ino: r.u64("ino")?,
            ino_generation: r.u64("ino_generation")?,
        }
    };
    let prot = r.u32("prot")?;
    let flags = r.u32("flags")?;
    Ok(Mmap {
        misc,
        pid,
        tid,
        addr,
        len,
        pgoff,
        file_id: Some(file_id),
        prot,
        flags,
        filename: until_nul(r.rest()),
        sample_id,
    })
}

fn parse_sample<'a>(
    format: &SampleFormat,
    misc: u16,
    body: &'a [u8],
) -> Result<Sample<'a>, ParseError> {
    let unsupported = format.sample_type & !SUPPORTED_SAMPLE_TYPE;
    if unsupported != 0 {
        return Err(ParseError {
            record_type: sys::PERF_RECORD_SAMPLE,
            offset: 0,
            kind: ParseErrorKind::UnsupportedSampleType { bits: unsupported },
        });
    }
    let mut r = Reader::new(body, HEADER_SIZE);
    let mut s = Sample {
        misc,
        identifier: None,
        ip: None,
        pid: None,
        tid: None,
        time: None,
        addr: None,
        id: None,
        stream_id: None,
        cpu: None,
        period: None,
        callchain: None,
        raw: None,
        regs_user: None,
        stack_user: None,
    };
    if format.has(sys::PERF_SAMPLE_IDENTIFIER) {
        s.identifier = Some(r.u64("identifier")?);
    }
    if format.has(sys::PERF_SAMPLE_IP) {
        s.ip = Some(r.u64("ip")?);
    }
    if format.has(sys::PERF_SAMPLE_TID) {
        s.pid = Some(r.u32("pid")?);
        s.tid = Some(r.u32("tid")?);
    }
    if format.has(sys::PERF_SAMPLE_TIME) {
        s.time = Some(r.u64("time")?);
    }
    if format.has(sys::PERF_SAMPLE_ADDR) {
        s.addr = Some(r.u64("addr")?);
    }
    if format.has(sys::PERF_SAMPLE_ID) {
        s.id = Some(r.u64("id")?);
    }
    if format.has(sys::PERF_SAMPLE_STREAM_ID) {
        s.stream_id = Some(r.u64("stream_id")?);
    }
    if format.has(sys::PERF_SAMPLE_CPU) {
        s.cpu = Some(r.u32("cpu")?);
        r.u32("cpu.res")?;
    }
    if format.has(sys::PERF_SAMPLE_PERIOD) {
        s.period = Some(r.u64("period")?);
    }
    if format.has(sys::PERF_SAMPLE_CALLCHAIN) {
        let nr = r.u64("callchain.nr")?;
        let len = r.count_bytes("callchain.nr", nr, 8)?;
        s.callchain = Some(Callchain {
            data: r.bytes("callchain.ips", len)?,
        });
    }
    if format.has(sys::PERF_SAMPLE_RAW) {
        let size = r.u32("raw.size")?;
        // The kernel counts its padding (to 8 bytes, with the size field) in `size`.
        s.raw = Some(r.bytes("raw.data", size as usize)?);
    }
    if format.has(sys::PERF_SAMPLE_REGS_USER) {
        let abi = r.u64("regs_user.abi")?;
        let data = if abi == u64::from(sys::PERF_SAMPLE_REGS_ABI_NONE) {
            &[][..]
        } else {
            let n = u64::from(format.regs_user_mask.count_ones());
            let len = r.count_bytes("regs_user", n, 8)?;
            r.bytes("regs_user.regs", len)?
        };
        s.regs_user = Some(Regs::new(abi, format.regs_user_mask, data));
    }
    if format.has(sys::PERF_SAMPLE_STACK_USER) {
        let size = r.u64("stack_user.size")?;
        let len = r.count_bytes("stack_user.size", size, 1)?;
        let data = r.bytes("stack_user.data", len)?;
        if size == 0 {
            s.stack_user = Some(&[]);
        } else {
            let dyn_size = r.u64("stack_user.dyn_size")?;
            if dyn_size > size {
                return Err(r.error(ParseErrorKind::BadCount {
                    field: "stack_user.dyn_size",
                    value: dyn_size,
                }));
            }
            s.stack_user = Some(&data[..dyn_size as usize]);
        }
    }
    Ok(s)
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

fn read_u64_at(data: &[u8], offset: usize) -> Option<u64> {
    let bytes = data.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

/// A bounds-checked cursor over a record's bytes; `base` is the offset of `buf` in the record,
/// for error messages.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, pos: 0, base }
    }

    fn error(&self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            record_type: 0,
            offset: self.base + self.pos,
            kind,
        }
    }

    fn bytes(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], ParseError> {
        let have = self.buf.len() - self.pos;
        if len > have {
            return Err(self.error(ParseErrorKind::Truncated {
                field,
                need: len,
                have,
            }));
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ParseError> {
        let bytes = self.bytes(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ParseError> {
        self.array(field).map(u16::from_ne_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ParseError> {
        self.array(field).map(u32::from_ne_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ParseError> {
        self.array(field).map(u64::from_ne_bytes)
    }

    /// `count` items of `item` bytes, as a byte length that fits in what is left.
    fn count_bytes(&self, field: &'static str, count: u64, item: u64) -> Result<usize, ParseError> {
        let have = (self.buf.len() - self.pos) as u64;
        match count.checked_mul(item) {
            Some(len) if len <= have => Ok(len as usize),
            _ => Err(self.error(ParseErrorKind::BadCount {
                field,
                value: count,
            })),
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a record byte by byte; `finish` fills in the header's size.
    struct Builder(Vec<u8>);

    impl Builder {
        fn new(record_type: u32, misc: u16) -> Builder {
            let mut b = Builder(Vec::new());
            b.u32(record_type).u16(misc).u16(0);
            b
        }
        fn u8(&mut self, v: u8) -> &mut Self {
            self.0.push(v);
            self
        }
        fn u16(&mut self, v: u16) -> &mut Self {
            self.0.extend_from_slice(&v.to_ne_bytes());
            self
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.0.extend_from_slice(&v.to_ne_bytes());
            self
        }
        fn bytes(&mut self, v: &[u8]) -> &mut Self {
            self.0.extend_from_slice(v);
            self
        }
        /// A NUL-terminated string padded to 8 bytes, as the kernel writes names.
        fn name(&mut self, s: &str) -> &mut Self {
            self.0.extend_from_slice(s.as_bytes());
            let padded = (s.len() + 1).div_ceil(8) * 8;
            self.0.resize(self.0.len() + padded - s.len(), 0);
            self
        }
        /// The sample_id trailer of `format()`: pid, tid, time, cpu, identifier.
        fn sample_id(&mut self, pid: u32, tid: u32, time: u64, cpu: u32) -> &mut Self {
            self.u32(pid).u32(tid).u64(time).u32(cpu).u32(0).u64(77)
        }
        fn finish(&mut self) -> Vec<u8> {
            let size = self.0.len() as u16;
            self.0[6..8].copy_from_slice(&size.to_ne_bytes());
            self.0.clone()
        }
    }

    fn format() -> SampleFormat {
        SampleFormat {
            sample_type: crate::attr::sample_type(crate::attr::CallGraph::Dwarf { stack_size: 0 }),
            regs_user_mask: crate::attr::REGS_USER_MASK,
            read_format: 0,
            sample_id_all: true,
        }
    }

    /// Issue 11: switch records, per task and CPU-wide, with the direction and preemption
    /// taken from `misc`; a short one is an error, not a panic.
    #[test]
    fn switch_records_parse() {
        let mut b = Builder::new(
            sys::PERF_RECORD_SWITCH,
            MISC_SWITCH_OUT | MISC_SWITCH_OUT_PREEMPT,
        );
        b.sample_id(10, 11, 1_000, 1);
        let PerfRecord::Switch(s) = parse_record(&format(), &b.finish()).unwrap() else {
            panic!("not a switch")
        };
        assert!(s.out && s.preempt);
        assert_eq!(s.other, None);
        assert_eq!((s.sample_id.tid, s.sample_id.time), (Some(11), Some(1_000)));
        let mut b = Builder::new(sys::PERF_RECORD_SWITCH, MISC_SWITCH_OUT_PREEMPT);
        b.sample_id(10, 11, 2_000, 1);
        let bytes = b.finish();
        let record = parse_record(&format(), &bytes).unwrap();
        assert_eq!(record.time(), Some(2_000));
        let PerfRecord::Switch(s) = record else {
            panic!("not a switch")
        };
        // Switching in is never a preemption, whatever misc says.
        assert!(!s.out && !s.preempt);
        let mut b = Builder::new(sys::PERF_RECORD_SWITCH_CPU_WIDE, MISC_SWITCH_OUT);
        b.u32(20).u32(21).sample_id(10, 11, 3_000, 0);
        let PerfRecord::Switch(s) = parse_record(&format(), &b.finish()).unwrap() else {
            panic!("not a switch")
        };
        assert_eq!(s.other, Some((20, 21)));
        let mut b = Builder::new(sys::PERF_RECORD_SWITCH_CPU_WIDE, MISC_SWITCH_OUT);
        b.u32(20);
        assert!(parse_record(&format(), &b.finish()).is_err());
    }

    fn dwarf_sample(stack: &[u8], dyn_size: u64) -> Vec<u8> {
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, MISC_USER);
        b.u64(77) // identifier
            .u64(0x401000) // ip
            .u32(100)
            .u32(101) // pid, tid
            .u64(5_000) // time
            .u32(1)
            .u32(0) // cpu, res
            .u64(1_001_001) // period
            .u64(3) // callchain nr
            .u64(sys::PERF_CONTEXT_KERNEL)
            .u64(0xffff_ffff_8100_0010)
            .u64(0xffff_ffff_8100_0020)
            .u64(2) // regs abi: 64-bit
            .u64(0x7ff0) // bp (reg 6)
            .u64(0x7f00) // sp (reg 7)
            .u64(0x401000) // ip (reg 8)
            .u64(stack.len() as u64)
            .bytes(stack);
        if !stack.is_empty() {
            b.u64(dyn_size);
        }
        b.finish()
    }

    #[test]
    fn sample_with_registers_stack_and_kernel_callchain() {
        let stack: Vec<u8> = (0..64).collect();
        let bytes = dwarf_sample(&stack, 40);
        let PerfRecord::Sample(s) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not a sample");
        };
        assert_eq!(s.identifier, Some(77));
        assert_eq!(s.ip, Some(0x401000));
        assert_eq!((s.pid, s.tid), (Some(100), Some(101)));
        assert_eq!(s.time, Some(5_000));
        assert_eq!(s.cpu, Some(1));
        assert_eq!(s.period, Some(1_001_001));
        assert_eq!(s.misc & MISC_CPUMODE_MASK, MISC_USER);
        let chain = s.callchain.unwrap();
        assert_eq!(chain.len(), 3);
        let (mut kernel, mut user) = (Vec::new(), Vec::new());
        chain.split_into(&mut kernel, &mut user);
        assert_eq!(kernel, [0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020]);
        assert!(user.is_empty());
        let regs = s.regs_user.unwrap();
        assert_eq!(regs.get(x86_64::IP), Some(0x401000));
        assert_eq!(regs.get(x86_64::SP), Some(0x7f00));
        assert_eq!(regs.get(x86_64::BP), Some(0x7ff0));
        assert_eq!(regs.get(0), None);
        assert_eq!(regs.get(200), None);
        assert_eq!(s.stack_user.unwrap(), &stack[..40]);
        assert_eq!(parse_record(&format(), &bytes).unwrap().time(), Some(5_000));
    }

    #[test]
    fn sample_without_user_context() {
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, MISC_KERNEL);
        b.u64(1)
            .u64(0xffff_ffff_8100_0000)
            .u32(1)
            .u32(1)
            .u64(9)
            .u32(0)
            .u32(0)
            .u64(1);
        b.u64(0); // empty callchain
        b.u64(0); // regs abi none: no registers follow
        b.u64(0); // stack size 0: no data, no dyn_size
        let bytes = b.finish();
        let PerfRecord::Sample(s) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not a sample");
        };
        assert!(s.callchain.unwrap().is_empty());
        assert_eq!(s.regs_user.unwrap().get(x86_64::IP), None);
        assert_eq!(s.stack_user, Some(&[][..]));
    }

    #[test]
    fn frame_pointer_callchain_splits_kernel_and_user() {
        let format = SampleFormat {
            sample_type: crate::attr::sample_type(crate::attr::CallGraph::FramePointer),
            regs_user_mask: 0,
            read_format: 0,
            sample_id_all: true,
        };
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, MISC_KERNEL);
        b.u64(1)
            .u64(0xffff_ffff_8100_0000)
            .u32(1)
            .u32(1)
            .u64(9)
            .u32(0)
            .u32(0)
            .u64(1);
        b.u64(6)
            .u64(sys::PERF_CONTEXT_KERNEL)
            .u64(0xffff_ffff_8100_0000)
            .u64(sys::PERF_CONTEXT_USER)
            .u64(0x401000)
            .u64(0x401100)
            .u64(0x401200);
        let bytes = b.finish();
        let PerfRecord::Sample(s) = parse_record(&format, &bytes).unwrap() else {
            panic!("not a sample");
        };
        let (mut kernel, mut user) = (Vec::new(), Vec::new());
        s.callchain.unwrap().split_into(&mut kernel, &mut user);
        assert_eq!(kernel, [0xffff_ffff_8100_0000]);
        assert_eq!(user, [0x401000, 0x401100, 0x401200]);
        assert!(is_context_marker(sys::PERF_CONTEXT_USER));
        assert!(!is_context_marker(0xffff_ffff_8100_0000));
    }

    #[test]
    fn every_truncation_of_a_sample_is_an_error() {
        let stack: Vec<u8> = (0..64).collect();
        let mut bytes = dwarf_sample(&stack, 64);
        for len in 0..bytes.len() {
            // The header claims the full size: too few bytes given.
            assert!(parse_record(&format(), &bytes[..len]).is_err(), "len {len}");
        }
        // A header that claims less than the fields need.
        for size in (8..bytes.len()).step_by(8) {
            bytes[6..8].copy_from_slice(&(size as u16).to_ne_bytes());
            let err = parse_record(&format(), &bytes).unwrap_err();
            assert_eq!(err.record_type, sys::PERF_RECORD_SAMPLE, "size {size}");
            assert!(err.to_string().contains("malformed perf record"), "{err}");
        }
    }

    #[test]
    fn impossible_counts_are_errors() {
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, MISC_USER);
        b.u64(1).u64(2).u32(1).u32(1).u64(9).u32(0).u32(0).u64(1);
        b.u64(u64::MAX / 4); // callchain nr overflowing the record
        let bytes = b.finish();
        let err = parse_record(&format(), &bytes).unwrap_err();
        assert!(
            matches!(
                err.kind,
                ParseErrorKind::BadCount {
                    field: "callchain.nr",
                    ..
                }
            ),
            "{err}"
        );

        // dyn_size larger than the copy.
        let stack = [0u8; 16];
        let bytes = dwarf_sample(&stack, 17);
        let err = parse_record(&format(), &bytes).unwrap_err();
        assert!(matches!(err.kind, ParseErrorKind::BadCount { .. }), "{err}");

        // A stack size beyond the record.
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, MISC_USER);
        b.u64(1)
            .u64(2)
            .u32(1)
            .u32(1)
            .u64(9)
            .u32(0)
            .u32(0)
            .u64(1)
            .u64(0)
            .u64(2);
        b.u64(1).u64(2).u64(3).u64(1 << 40);
        let bytes = b.finish();
        assert!(parse_record(&format(), &bytes).is_err());
    }

    #[test]
    fn bad_header_sizes() {
        let mut b = Builder::new(sys::PERF_RECORD_LOST, 0);
        b.u64(1).u64(2).sample_id(1, 1, 3, 0);
        let mut bytes = b.finish();
        bytes[6..8].copy_from_slice(&4u16.to_ne_bytes());
        assert!(matches!(
            parse_record(&format(), &bytes).unwrap_err().kind,
            ParseErrorKind::BadSize { size: 4, .. }
        ));
        bytes[6..8].copy_from_slice(&1000u16.to_ne_bytes());
        assert!(parse_record(&format(), &bytes).is_err());
        assert!(parse_header(&bytes[..7]).is_err());
    }

    #[test]
    fn unsupported_sample_type_is_refused() {
        let format = SampleFormat {
            sample_type: u64::from(sys::PERF_SAMPLE_IP | sys::PERF_SAMPLE_READ),
            regs_user_mask: 0,
            read_format: 0,
            sample_id_all: false,
        };
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, 0);
        b.u64(1).u64(2);
        let err = parse_record(&format, &b.finish()).unwrap_err();
        assert!(matches!(
            err.kind,
            ParseErrorKind::UnsupportedSampleType { .. }
        ));
    }

    #[test]
    fn raw_samples() {
        let format = SampleFormat {
            sample_type: u64::from(
                sys::PERF_SAMPLE_IP | sys::PERF_SAMPLE_RAW | sys::PERF_SAMPLE_REGS_USER,
            ),
            regs_user_mask: 1 << x86_64::IP,
            read_format: 0,
            sample_id_all: false,
        };
        let mut b = Builder::new(sys::PERF_RECORD_SAMPLE, 0);
        b.u64(0x1234)
            .u32(12)
            .bytes(b"abcdef\0\0\0\0\0\0")
            .u64(2)
            .u64(0x1234);
        let bytes = b.finish();
        let PerfRecord::Sample(s) = parse_record(&format, &bytes).unwrap() else {
            panic!("not a sample");
        };
        assert_eq!(s.raw, Some(&b"abcdef\0\0\0\0\0\0"[..]));
        assert_eq!(s.regs_user.unwrap().get(x86_64::IP), Some(0x1234));
    }

    #[test]
    fn mmap2_with_inode() {
        let mut b = Builder::new(sys::PERF_RECORD_MMAP2, MISC_USER);
        b.u32(100).u32(100).u64(0x400000).u64(0x2000).u64(0x1000);
        b.u32(8).u32(1).u64(123456).u64(7);
        b.u32((libc::PROT_READ | libc::PROT_EXEC) as u32)
            .u32(libc::MAP_PRIVATE as u32);
        b.name("/usr/bin/true").sample_id(100, 100, 42, 1);
        let bytes = b.finish();
        let PerfRecord::Mmap(m) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not an mmap");
        };
        assert_eq!(
            (m.pid, m.tid, m.addr, m.len, m.pgoff),
            (100, 100, 0x400000, 0x2000, 0x1000)
        );
        assert_eq!(
            m.file_id,
            Some(FileId::Inode {
                maj: 8,
                min: 1,
                ino: 123456,
                ino_generation: 7
            })
        );
        assert!(m.is_executable());
        assert_eq!(m.filename, b"/usr/bin/true");
        assert_eq!(m.sample_id.time, Some(42));
        assert_eq!(m.sample_id.cpu, Some(1));
        assert_eq!(m.sample_id.identifier, Some(77));
    }

    #[test]
    fn mmap2_with_build_id() {
        let id: Vec<u8> = (1..=20).collect();
        let mut b = Builder::new(sys::PERF_RECORD_MMAP2, MISC_USER | MISC_MMAP_BUILD_ID);
        b.u32(5).u32(6).u64(0x7f00_0000_0000).u64(0x1000).u64(0);
        b.u8(20).u8(0).u16(0).bytes(&id);
        b.u32(libc::PROT_READ as u32).u32(0);
        b.name("/lib/libc.so.6").sample_id(5, 6, 9, 0);
        let bytes = b.finish();
        let PerfRecord::Mmap(m) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not an mmap");
        };
        assert_eq!(m.file_id, Some(FileId::BuildId(&id[..])));
        assert!(!m.is_executable());
        assert_eq!(m.filename, b"/lib/libc.so.6");

        // A build id size beyond its 20 bytes is malformed.
        let mut bad = bytes.clone();
        bad[40] = 21;
        assert!(parse_record(&format(), &bad).is_err());
        // Cut inside the fixed fields (header size adjusted): an error, not a panic.
        let mut cut = bytes[..48].to_vec();
        cut[6..8].copy_from_slice(&48u16.to_ne_bytes());
        assert!(parse_record(&format(), &cut).is_err());
    }

    #[test]
    fn old_mmap_record() {
        let format = SampleFormat {
            sample_type: u64::from(sys::PERF_SAMPLE_IP),
            regs_user_mask: 0,
            read_format: 0,
            sample_id_all: false,
        };
        let mut b = Builder::new(sys::PERF_RECORD_MMAP, 0);
        b.u32(1)
            .u32(1)
            .u64(0x1000)
            .u64(0x1000)
            .u64(0)
            .name("[vdso]");
        let bytes = b.finish();
        let PerfRecord::Mmap(m) = parse_record(&format, &bytes).unwrap() else {
            panic!("not an mmap");
        };
        assert_eq!(m.filename, b"[vdso]");
        assert!(m.is_executable());
        assert_eq!(m.file_id, None);
    }

    #[test]
    fn comm_exec_and_rename() {
        let mut b = Builder::new(sys::PERF_RECORD_COMM, MISC_COMM_EXEC);
        b.u32(10).u32(10).name("worker").sample_id(10, 10, 99, 0);
        let bytes = b.finish();
        let PerfRecord::Comm(c) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not a comm");
        };
        assert_eq!(
            (c.pid, c.tid, c.name, c.exec),
            (10, 10, &b"worker"[..], true)
        );
        assert_eq!(c.sample_id.time, Some(99));

        let mut b = Builder::new(sys::PERF_RECORD_COMM, 0);
        b.u32(10)
            .u32(11)
            .name("a-fifteen-chars")
            .sample_id(10, 11, 100, 1);
        let bytes = b.finish();
        let PerfRecord::Comm(c) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not a comm");
        };
        assert_eq!(c.name, b"a-fifteen-chars");
        assert!(!c.exec);

        // Without room for its sample_id trailer.
        let mut b = Builder::new(sys::PERF_RECORD_COMM, 0);
        b.u32(10).u32(11);
        assert!(parse_record(&format(), &b.finish()).is_err());
    }

    #[test]
    fn fork_exit_lost_throttle() {
        let mut b = Builder::new(sys::PERF_RECORD_FORK, 0);
        b.u32(20)
            .u32(10)
            .u32(21)
            .u32(10)
            .u64(1234)
            .sample_id(20, 21, 1234, 0);
        let bytes = b.finish();
        let PerfRecord::Fork(t) = parse_record(&format(), &bytes).unwrap() else {
            panic!("not a fork");
        };
        assert_eq!(
            (t.pid, t.ppid, t.tid, t.ptid, t.time),
            (20, 10, 21, 10, 1234)
        );

        let mut b = Builder::new(sys::PERF_RECORD_EXIT, 0);
        b.u32(20)
            .u32(10)
            .u32(21)
            .u32(10)
            .u64(2000)
            .sample_id(20, 21, 2000, 0);
        let bytes = b.finish();
        let record = parse_record(&format(), &bytes).unwrap();
        assert!(matches!(
            record,
            PerfRecord::Exit(Task {
                pid: 20,
                time: 2000,
                ..
            })
        ));
        assert_eq!(record.time(), Some(2000));

        let mut b = Builder::new(sys::PERF_RECORD_LOST, 0);
        b.u64(77).u64(12).sample_id(0, 0, 3000, 1);
        let bytes = b.finish();
        let record = parse_record(&format(), &bytes).unwrap();
        assert!(matches!(
            record,
            PerfRecord::Lost(Lost {
                id: 77,
                lost: 12,
                ..
            })
        ));
        assert_eq!(record.time(), Some(3000));

        for (kind, throttled) in [
            (sys::PERF_RECORD_THROTTLE, true),
            (sys::PERF_RECORD_UNTHROTTLE, false),
        ] {
            let mut b = Builder::new(kind, 0);
            b.u64(4000).u64(77).u64(78).sample_id(1, 1, 4000, 0);
            let bytes = b.finish();
            let PerfRecord::Throttle(t) = parse_record(&format(), &bytes).unwrap() else {
                panic!("not a throttle");
            };
            assert_eq!(
                (t.throttled, t.time, t.id, t.stream_id),
                (throttled, 4000, 77, 78)
            );
        }

        let mut b = Builder::new(sys::PERF_RECORD_LOST_SAMPLES, 0);
        b.u64(5).sample_id(1, 1, 5000, 0);
        let bytes = b.finish();
        let record = parse_record(&format(), &bytes).unwrap();
        assert!(matches!(
            record,
            PerfRecord::LostSamples(LostSamples { lost: 5, .. })
        ));

        // Truncated fixed fields.
        let mut b = Builder::new(sys::PERF_RECORD_FORK, 0);
        b.u32(20).u32(10).sample_id(20, 21, 1234, 0);
        assert!(parse_record(&format(), &b.finish()).is_err());
    }

    /// The read format of `rprof stat`'s counting groups.
    const GROUP_FORMAT: u64 = (sys::PERF_FORMAT_GROUP
        | sys::PERF_FORMAT_TOTAL_TIME_ENABLED
        | sys::PERF_FORMAT_TOTAL_TIME_RUNNING
        | sys::PERF_FORMAT_ID) as u64;

    fn words(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn group_read_values() {
        let bytes = words(&[2, 1000, 500, 77, 11, 88, 12]);
        let (v, used) = parse_read_values(GROUP_FORMAT, &bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!((v.enabled, v.running), (Some(1000), Some(500)));
        assert_eq!(v.len(), 2);
        let values: Vec<(u64, Option<u64>)> = v.iter().map(|c| (c.value, c.id)).collect();
        assert_eq!(values, [(77, Some(11)), (88, Some(12))]);
        // Trailing bytes are left alone.
        let mut more = bytes.clone();
        more.extend_from_slice(&[0; 5]);
        assert_eq!(
            parse_read_values(GROUP_FORMAT, &more).unwrap().1,
            bytes.len()
        );
        // Every truncation and an absurd member count are errors.
        for len in 0..bytes.len() {
            assert!(
                parse_read_values(GROUP_FORMAT, &bytes[..len]).is_err(),
                "len {len}"
            );
        }
        assert!(parse_read_values(GROUP_FORMAT, &words(&[u64::MAX, 1, 1])).is_err());
        // With PERF_FORMAT_LOST each member has three words.
        let lost = GROUP_FORMAT | u64::from(sys::PERF_FORMAT_LOST);
        let one = words(&[1, 5, 4, 9, 3, 2]);
        let (v, _) = parse_read_values(lost, &one).unwrap();
        assert_eq!(
            v.iter().collect::<Vec<_>>(),
            [CounterValue {
                value: 9,
                id: Some(3),
                lost: Some(2)
            }]
        );
        // Bits from the future are refused rather than misread.
        assert!(matches!(
            parse_read_values(1 << 40, &bytes).unwrap_err().kind,
            ParseErrorKind::UnsupportedReadFormat { .. }
        ));
    }

    #[test]
    fn single_counter_read_values() {
        let format = (sys::PERF_FORMAT_TOTAL_TIME_ENABLED | sys::PERF_FORMAT_ID) as u64;
        let single = words(&[42, 100, 7]);
        let (v, used) = parse_read_values(format, &single).unwrap();
        assert_eq!(used, 24);
        assert_eq!((v.enabled, v.running), (Some(100), None));
        assert_eq!(
            v.iter().collect::<Vec<_>>(),
            [CounterValue {
                value: 42,
                id: Some(7),
                lost: None
            }]
        );
        assert!(parse_read_values(format, &words(&[42, 100])).is_err());
    }

    #[test]
    fn read_record_with_identifier_trailer() {
        // rprof stat --per-thread: sample_id_all with only PERF_SAMPLE_IDENTIFIER.
        let format = SampleFormat {
            sample_type: u64::from(sys::PERF_SAMPLE_IDENTIFIER),
            regs_user_mask: 0,
            read_format: GROUP_FORMAT,
            sample_id_all: true,
        };
        let mut b = Builder::new(sys::PERF_RECORD_READ, 0);
        b.u32(10).u32(11);
        for w in [1, 500, 400, 42, 7] {
            b.u64(w);
        }
        b.u64(7); // identifier
        let bytes = b.finish();
        let record = parse_record(&format, &bytes).unwrap();
        let PerfRecord::Read(r) = record else {
            panic!("not a read: {record:?}");
        };
        assert_eq!((r.pid, r.tid), (10, 11));
        assert_eq!(r.sample_id.identifier, Some(7));
        assert_eq!((r.values.enabled, r.values.running), (Some(500), Some(400)));
        assert_eq!(
            r.values.iter().map(|c| (c.id, c.value)).collect::<Vec<_>>(),
            [(Some(7), 42)]
        );
        // Every shorter record (header size adjusted) is an error, never a panic.
        for len in 8..bytes.len() {
            let mut cut = bytes[..len].to_vec();
            cut[6..8].copy_from_slice(&(len as u16).to_ne_bytes());
            assert!(parse_record(&format, &cut).is_err(), "len {len}");
        }
    }

    #[test]
    fn unknown_records_are_kept_as_other() {
        let mut b = Builder::new(sys::PERF_RECORD_NAMESPACES, 3);
        b.sample_id(1, 1, 1, 0);
        let bytes = b.finish();
        let record = parse_record(&format(), &bytes).unwrap();
        assert_eq!(
            record,
            PerfRecord::Other {
                record_type: sys::PERF_RECORD_NAMESPACES,
                misc: 3
            }
        );
        assert_eq!(record.time(), None);
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator: every record type with random bodies and sizes.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if bytes.len() >= 8 {
                let kind = (next() % 24) as u32;
                bytes[0..4].copy_from_slice(&kind.to_ne_bytes());
                let size = (next() % (len as u64 + 16)) as u16;
                bytes[6..8].copy_from_slice(&size.to_ne_bytes());
            }
            let _ = parse_record(&format(), &bytes);
        }
    }
}
