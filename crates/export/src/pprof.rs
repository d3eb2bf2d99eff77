//! pprof: the gzipped `profile.proto` that `go tool pprof`, Grafana Pyroscope and Parca read.
//!
//! Each distinct (stack, thread) becomes one pprof sample whose values are the [`measures`]
//! (`samples/count`, then `cpu/nanoseconds` for the clock events, then `off_cpu/nanoseconds` for
//! a profile recorded with `--off-cpu`), labelled with the thread's
//! name (`thread`), `tid` and `pid`. A location is one non-inlined function with the functions
//! inlined into it: pprof's `Line`s, innermost first, the caller last. Functions carry their
//! file; modules become mappings with their path and build id (hex). Locations have no
//! addresses (a profile's frames are already named), so every mapping says it has functions,
//! file names, line numbers and inline frames, and no reader tries to symbolize it again.
//!
//! Off-CPU blocks are pprof samples of their own: their stack is the block's stack with the
//! reason (`[lock]`, `[sleep]`, ...) as leaf frame, as `rprof flame --off-cpu` draws it; their
//! value is the blocks' length in `off_cpu/nanoseconds` and 0 in the on-CPU types, and on-CPU
//! samples are 0 in `off_cpu`. The on-CPU weight stays the default type
//! (`default_sample_type`); `go tool pprof -sample_index=off_cpu` shows the waits.
//!
//! The message types below are those of pprof's `proto/profile.proto`, written out for prost's
//! derive (no `protoc` at build time); prost writes the protobuf wire format, flate2 the gzip.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use prost::Message;
use rprof_profile::{FrameId, ModuleId, ModuleKind, Profile, StackId};
use rprof_report::ThreadSpan;

use crate::{
    duration_ns, interval_ns, measures, period_is_time, selected_blocks, selected_samples,
    ExportError, ExportOptions, MAIN_MEASURE,
};

/// The messages of pprof's `profile.proto` (package `perftools.profiles`), field numbers as
/// there. Strings are indexes into `Profile::string_table`, whose entry 0 is `""`.
pub(crate) mod proto {
    /// A profile.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        /// What each value of a sample means.
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        /// The samples.
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        /// The mapped binaries; `id` 1.. .
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        /// Code locations; `id` 1.. .
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        /// Functions; `id` 1.. .
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        /// Every string; `[0]` is `""`.
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        /// Regex of frames to drop (a string index).
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        /// Regex of frames to keep (a string index).
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        /// When the profile was taken, nanoseconds since the Unix epoch.
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        /// Length of the profile in nanoseconds.
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        /// What `period` counts.
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        /// Events between samples.
        #[prost(int64, tag = "12")]
        pub period: i64,
        /// Free-form comments (string indexes).
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        /// The sample type shown by default (a string index of a type).
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    /// A type and unit, as string indexes.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// e.g. `cpu`.
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        /// e.g. `nanoseconds`.
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// A stack and its values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Locations, leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One value per `sample_type`.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        /// Labels.
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    /// A sample label: a string or a number.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        /// The key (string index).
        #[prost(int64, tag = "1")]
        pub key: i64,
        /// A string value (string index), or 0.
        #[prost(int64, tag = "2")]
        pub str: i64,
        /// A numeric value.
        #[prost(int64, tag = "3")]
        pub num: i64,
        /// The unit of `num` (string index).
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    /// A mapped binary.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        /// Its id, from 1.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Start of the mapping in memory.
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        /// End of the mapping in memory.
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        /// File offset of the mapping.
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        /// The binary's path (string index).
        #[prost(int64, tag = "5")]
        pub filename: i64,
        /// Its build id (string index).
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        /// Locations have function names.
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        /// Locations have file names.
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        /// Locations have line numbers.
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        /// Locations have inline frames.
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    /// A code location: a function and those inlined into it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        /// Its id, from 1.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Its mapping (0: none).
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        /// Its address (0: none).
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Innermost first; the last is the function the others were inlined into.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        /// Frames were folded into this one.
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    /// A function and line within a location.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        /// The function.
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        /// The source line (0: unknown).
        #[prost(int64, tag = "2")]
        pub line: i64,
        /// The source column (0: unknown).
        #[prost(int64, tag = "3")]
        pub column: i64,
    }

    /// A function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        /// Its id, from 1.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Its name (string index).
        #[prost(int64, tag = "2")]
        pub name: i64,
        /// Its name as the system knows it (string index).
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        /// Its source file (string index).
        #[prost(int64, tag = "4")]
        pub filename: i64,
        /// Its first line (0: unknown).
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// Writes `profile` as a gzipped pprof profile into `out`.
pub fn render(
    profile: &Profile,
    options: &ExportOptions,
    out: impl Write,
) -> Result<(), ExportError> {
    let message = build(profile, options)?;
    let mut gz = GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&message.encode_to_vec())?;
    gz.finish()?.flush()?;
    Ok(())
}

/// Strings of the profile, interned; index 0 is `""` as pprof requires.
struct Strings {
    list: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        Strings {
            list: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The pprof message for `profile`.
pub(crate) fn build(
    profile: &Profile,
    options: &ExportOptions,
) -> Result<proto::Profile, ExportError> {
    let selected = selected_samples(profile, &options.selection);
    let blocks = selected_blocks(profile, &options.selection);
    if selected.is_empty() && blocks.is_empty() {
        return Err(ExportError::NoSamples);
    }
    let measures = measures(profile);
    let mut strings = Strings::new();
    let mut message = proto::Profile {
        sample_type: measures
            .iter()
            .map(|m| proto::ValueType {
                r#type: strings.get(&m.name),
                unit: strings.get(m.unit),
            })
            .collect(),
        time_nanos: i64::try_from(profile.header.start_unix_ns).unwrap_or(i64::MAX),
        duration_nanos: i64::try_from(duration_ns(profile)).unwrap_or(i64::MAX),
        ..proto::Profile::default()
    };
    // The period: what one sample stands for, in the main (last) measure.
    message.period_type = measures.get(MAIN_MEASURE).map(|m| proto::ValueType {
        r#type: strings.get(&m.name),
        unit: strings.get(m.unit),
    });
    if let Some(main) = measures.get(MAIN_MEASURE) {
        message.default_sample_type = strings.get(&main.name);
    }
    message.period = match (interval_ns(profile), profile.header.period) {
        (Some(ns), _) if period_is_time(profile) => ns as i64,
        (_, Some(period)) => i64::try_from(period).unwrap_or(i64::MAX),
        _ => 0,
    };
    let mut comment = format!(
        "rprof {}: event {}",
        profile.header.rprof_version, profile.header.event
    );
    if !profile.header.hostname.is_empty() {
        comment.push_str(&format!(", host {}", profile.header.hostname));
    }
    message.comment.push(strings.get(&comment));

    // Values by (stack, thread).
    let mut values: HashMap<(StackId, ThreadSpan), Vec<i64>> = HashMap::new();
    let mut order: Vec<(StackId, ThreadSpan)> = Vec::new();
    for &(index, sample, who) in &selected {
        let key = (profile.sample_stack(index), who);
        let entry = values.entry(key).or_insert_with(|| {
            order.push(key);
            vec![0; measures.len()]
        });
        for (value, measure) in entry.iter_mut().zip(&measures) {
            *value = value.saturating_add(i64::try_from(measure.value(sample)).unwrap_or(0));
        }
    }
    for &(index, block, who) in &blocks {
        let key = (profile.off_cpu_stack(index), who);
        let entry = values.entry(key).or_insert_with(|| {
            order.push(key);
            vec![0; measures.len()]
        });
        for (value, measure) in entry.iter_mut().zip(&measures) {
            *value = value.saturating_add(i64::try_from(measure.block_value(block)).unwrap_or(0));
        }
    }

    let mut tables = Tables::default();
    // The main binary is the first mapping: pprof names the profile after it (`File:`).
    if let Some(main) = main_module(profile) {
        tables.mapping(profile, main, &mut strings);
    }
    let thread_key = strings.get("thread");
    let tid_key = strings.get("tid");
    let pid_key = strings.get("pid");
    for key in order {
        let (stack, who) = key;
        let location_id = tables.locations(profile, stack, &mut strings);
        let mut label = Vec::new();
        let name = who.name(profile);
        if !name.is_empty() {
            label.push(proto::Label {
                key: thread_key,
                str: strings.get(name),
                ..proto::Label::default()
            });
        }
        label.push(proto::Label {
            key: tid_key,
            num: i64::from(who.tid),
            ..proto::Label::default()
        });
        label.push(proto::Label {
            key: pid_key,
            num: i64::from(who.pid),
            ..proto::Label::default()
        });
        message.sample.push(proto::Sample {
            location_id,
            value: values.remove(&key).unwrap_or_default(),
            label,
        });
    }
    message.mapping = tables.mapping;
    message.location = tables.location;
    message.function = tables.function;
    message.string_table = strings.list;
    Ok(message)
}

/// The recorded program's module: the ELF file named like the command (or, for an attached
/// process, like its main thread, which the kernel cuts to 15 bytes).
fn main_module(profile: &Profile) -> Option<ModuleId> {
    let program = match profile.header.command.first() {
        Some(command) => command.rsplit('/').next().unwrap_or(command).to_string(),
        None => profile
            .header
            .target_pid
            .and_then(|pid| profile.processes.get(&pid))
            .map(|p| p.name.clone())?,
    };
    if program.is_empty() {
        return None;
    }
    profile
        .modules
        .values()
        .filter(|m| m.kind == ModuleKind::Elf)
        .find(|m| m.name() == program || (program.len() >= 15 && m.name().starts_with(&program)))
        .map(|m| m.id)
}

/// Mappings, locations and functions, each made once.
#[derive(Default)]
struct Tables {
    mapping: Vec<proto::Mapping>,
    mapping_ids: HashMap<ModuleId, u64>,
    location: Vec<proto::Location>,
    location_ids: HashMap<Vec<FrameId>, u64>,
    function: Vec<proto::Function>,
    function_ids: HashMap<(String, Option<String>), u64>,
    /// Location ids of every stack already turned into locations.
    stacks: HashMap<StackId, Vec<u64>>,
}

impl Tables {
    /// The location ids of `stack`, leaf first: each location is a run of inlined frames ended
    /// by the frame they were inlined into.
    fn locations(&mut self, profile: &Profile, stack: StackId, strings: &mut Strings) -> Vec<u64> {
        if let Some(ids) = self.stacks.get(&stack) {
            return ids.clone();
        }
        let mut ids = Vec::new();
        let mut run: Vec<FrameId> = Vec::new();
        for &frame in profile.stack(stack) {
            run.push(frame);
            if profile.frame(frame).inlined {
                continue;
            }
            ids.push(self.location(profile, std::mem::take(&mut run), strings));
        }
        // A run of inlined frames with nothing below it (should not happen) still shows.
        if !run.is_empty() {
            ids.push(self.location(profile, run, strings));
        }
        self.stacks.insert(stack, ids.clone());
        ids
    }

    fn location(&mut self, profile: &Profile, run: Vec<FrameId>, strings: &mut Strings) -> u64 {
        if let Some(&id) = self.location_ids.get(&run) {
            return id;
        }
        let outer = run.last().map(|&f| profile.frame(f));
        let mapping_id = match outer.and_then(|f| f.module) {
            Some(module) => self.mapping(profile, module, strings),
            None => 0,
        };
        let line = run
            .iter()
            .map(|&f| {
                let info = profile.frame(f);
                let function_id = self.function(&info.function, info.file.as_deref(), strings);
                proto::Line {
                    function_id,
                    line: info.line.map_or(0, i64::from),
                    column: 0,
                }
            })
            .collect();
        let id = self.location.len() as u64 + 1;
        self.location.push(proto::Location {
            id,
            mapping_id,
            address: 0,
            line,
            is_folded: false,
        });
        self.location_ids.insert(run, id);
        id
    }

    fn function(&mut self, name: &str, file: Option<&str>, strings: &mut Strings) -> u64 {
        let key = (name.to_string(), file.map(str::to_string));
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.function.len() as u64 + 1;
        let name = strings.get(name);
        self.function.push(proto::Function {
            id,
            name,
            system_name: name,
            filename: file.map_or(0, |f| strings.get(f)),
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }

    fn mapping(&mut self, profile: &Profile, module: ModuleId, strings: &mut Strings) -> u64 {
        if let Some(&id) = self.mapping_ids.get(&module) {
            return id;
        }
        let id = self.mapping.len() as u64 + 1;
        let (filename, build_id) = match profile.modules.get(&module) {
            Some(m) => (
                strings.get(&m.path),
                match &m.build_id {
                    Some(bytes) if !bytes.is_empty() => strings.get(&hex(bytes)),
                    _ => 0,
                },
            ),
            None => (strings.get(profile.module_name(module)), 0),
        };
        self.mapping.push(proto::Mapping {
            id,
            filename,
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
            ..proto::Mapping::default()
        });
        self.mapping_ids.insert(module, id);
        id
    }
}

/// Lower-case hex, as build ids are written.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
