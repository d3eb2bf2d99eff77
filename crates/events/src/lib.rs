//! rprof-events: event names as `perf` spells them, turned into `perf_event_attr`s; the
//! `perf_event_open` syscall and errors that say what failed, why, and how to fix it.
//!
//! What it understands (the syntax of `perf stat -e` / `perf record -e`):
//! - the generic hardware events (`cycles`, `instructions`, `cache-misses`, `branch-misses`, ...),
//! - the software events and perf's aliases (`task-clock`, `cs`, `migrations`, `faults`, ...),
//! - the hardware cache events with perf's names (`L1-dcache-load-misses`, `LLC-loads`,
//!   `dTLB-load-misses`, ...),
//! - raw PMU events `rNNNN` (hexadecimal config),
//! - tracepoints `subsystem:name`, whose id is read from tracefs,
//! - the privilege-level modifiers `:u`, `:k`, `:h` and their combinations (`:uk`).
//!
//! What it leaves to others: which events to open together, sampling settings (period, frequency,
//! sample type), reading counters and ring buffers. [`Event::attr`] fills in only what the event
//! name decides (type, config, excludes); the caller sets the rest.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod names;
mod open;
mod sys;
mod tracefs;

use perf_event_open_sys::bindings as sys_bindings;
use perf_event_open_sys::bindings::perf_event_attr;

pub use names::{known_names, suggest};
pub use open::{perf_event_open, OpenError, Tasks};
pub use sys::{max_sample_rate, max_stack, mlock_kb, online_cpus, paranoid};
pub use tracefs::{tracefs_events_dir, tracepoint_id};

/// What kind of event an [`Event`] is; decides `perf_event_attr.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A generic hardware event (`PERF_TYPE_HARDWARE`): needs a PMU.
    Hardware,
    /// A software event counted by the kernel (`PERF_TYPE_SOFTWARE`).
    Software,
    /// A generic hardware cache event (`PERF_TYPE_HW_CACHE`): needs a PMU.
    HardwareCache,
    /// A raw PMU event (`PERF_TYPE_RAW`): needs a PMU.
    Raw,
    /// A kernel tracepoint (`PERF_TYPE_TRACEPOINT`).
    Tracepoint,
}

impl EventKind {
    /// True for the kinds that are counted by a hardware PMU (and so are missing in many VMs).
    pub fn needs_pmu(self) -> bool {
        matches!(
            self,
            EventKind::Hardware | EventKind::HardwareCache | EventKind::Raw
        )
    }
}

/// One event, ready to be turned into a `perf_event_attr`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The canonical name as perf spells it, including the modifier (`cycles:u`,
    /// `context-switches` for `cs`, `L1-dcache-load-misses`, `r1a8`, `sched:sched_switch`).
    pub name: String,
    /// What kind of event it is.
    pub kind: EventKind,
    /// `perf_event_attr.type`.
    pub type_: u32,
    /// `perf_event_attr.config`.
    pub config: u64,
    /// Do not count in user space (set by `:k`/`:h` without `u`).
    pub exclude_user: bool,
    /// Do not count in the kernel (set by `:u`/`:h` without `k`).
    pub exclude_kernel: bool,
    /// Do not count in the hypervisor (set by any modifier without `h`).
    pub exclude_hv: bool,
}

impl Event {
    /// A `perf_event_attr` with `size`, `type`, `config` and the exclude bits set; every other
    /// field is zero.
    pub fn attr(&self) -> perf_event_attr {
        // SAFETY: perf_event_attr is a plain C struct of integers, unions of integers and
        // bitfields; all-zero bytes are a valid value (and the documented "nothing set" value).
        let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
        attr.size = std::mem::size_of::<perf_event_attr>() as u32;
        attr.type_ = self.type_;
        attr.config = self.config;
        attr.set_exclude_user(u64::from(self.exclude_user));
        attr.set_exclude_kernel(u64::from(self.exclude_kernel));
        attr.set_exclude_hv(u64::from(self.exclude_hv));
        attr
    }

    /// The name without its modifier (`cycles` for `cycles:u`).
    pub fn base_name(&self) -> &str {
        match self.modifier_start() {
            Some(i) => &self.name[..i],
            None => &self.name,
        }
    }

    /// The same event with `exclude_kernel` and `exclude_hv` set and `:u` as its modifier: what
    /// callers fall back to when the kernel refuses to count kernel space.
    pub fn user_only(&self) -> Event {
        let mut event = self.clone();
        event.exclude_user = false;
        event.exclude_kernel = true;
        event.exclude_hv = true;
        event.name = format!("{}:u", self.base_name());
        event
    }

    /// Opens this event with [`perf_event_open`]; the error names the event.
    pub fn open(
        &self,
        attr: &perf_event_attr,
        tasks: Tasks,
        cpu: Option<u32>,
        group: Option<std::os::fd::BorrowedFd<'_>>,
        flags: u64,
    ) -> Result<std::os::fd::OwnedFd, OpenError> {
        perf_event_open(attr, tasks, cpu, group, flags).map_err(|e| e.with_event(&self.name))
    }

    fn modifier_start(&self) -> Option<usize> {
        // A tracepoint has one ':' of its own; a modifier is the colon after that.
        let skip = usize::from(self.kind == EventKind::Tracepoint);
        self.name.match_indices(':').nth(skip).map(|(i, _)| i)
    }
}

/// Why an event specification could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Not an event name at all.
    #[error("unknown event '{name}'{}", did_you_mean(.suggestions))]
    Unknown {
        /// The name as given.
        name: String,
        /// Known events with a similar name, best first (may be empty).
        suggestions: Vec<String>,
    },
    /// Empty event name (e.g. `cycles,,instructions`).
    #[error("empty event name in '{spec}'")]
    Empty {
        /// The whole specification.
        spec: String,
    },
    /// A modifier letter rprof does not support.
    #[error("unknown modifier '{modifier}' in event '{spec}' (supported: u = user, k = kernel, h = hypervisor, e.g. 'cycles:u')")]
    BadModifier {
        /// The event as given.
        spec: String,
        /// The modifier part after the colon.
        modifier: String,
    },
    /// `rNNNN` with something that is not a 64-bit hexadecimal number.
    #[error(
        "bad raw event '{spec}': expected 'r' followed by up to 16 hexadecimal digits, e.g. r01c2"
    )]
    BadRaw {
        /// The event as given.
        spec: String,
    },
    /// The tracepoint exists in principle but tracefs cannot be found or read.
    #[error("cannot look up tracepoint '{name}': {reason}")]
    Tracefs {
        /// The tracepoint as given.
        name: String,
        /// What went wrong and how to fix it.
        reason: String,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean: {}?)", suggestions.join(", "))
    }
}

/// Modifier bits parsed from `:ukh`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Modifier {
    user: bool,
    kernel: bool,
    hv: bool,
}

impl Modifier {
    fn parse(spec: &str, text: &str) -> Result<Modifier, EventError> {
        let bad = || EventError::BadModifier {
            spec: spec.to_string(),
            modifier: text.to_string(),
        };
        if text.is_empty() {
            return Err(bad());
        }
        let mut m = Modifier::default();
        for c in text.chars() {
            let slot = match c {
                'u' => &mut m.user,
                'k' => &mut m.kernel,
                'h' => &mut m.hv,
                _ => return Err(bad()),
            };
            if *slot {
                return Err(bad());
            }
            *slot = true;
        }
        Ok(m)
    }

    /// Canonical spelling (`:uk`), empty when nothing is set.
    fn suffix(self) -> String {
        let mut s = String::new();
        if self.user || self.kernel || self.hv {
            s.push(':');
        }
        for (set, c) in [(self.user, 'u'), (self.kernel, 'k'), (self.hv, 'h')] {
            if set {
                s.push(c);
            }
        }
        s
    }

    /// perf's rule: naming any level excludes the levels not named.
    fn apply(self, event: &mut Event) {
        if self.user || self.kernel || self.hv {
            event.exclude_user = !self.user;
            event.exclude_kernel = !self.kernel;
            event.exclude_hv = !self.hv;
        }
    }
}

/// Parses one event specification: `cycles`, `cycles:u`, `cs`, `L1-dcache-load-misses`,
/// `r01c2`, `sched:sched_switch`, `sched:sched_switch:k`.
///
/// A tracepoint's id is read from tracefs (see [`tracepoint_id`]).
pub fn parse(spec: &str) -> Result<Event, EventError> {
    let spec_trimmed = spec.trim();
    if spec_trimmed.is_empty() {
        return Err(EventError::Empty {
            spec: spec.to_string(),
        });
    }
    let parts: Vec<&str> = spec_trimmed.split(':').collect();
    // Named (non-tracepoint) events: NAME or NAME:MOD.
    if let Some((kind, type_, config, canonical)) = names::lookup(parts[0]) {
        if parts.len() > 2 {
            return Err(EventError::BadModifier {
                spec: spec_trimmed.to_string(),
                modifier: parts[1..].join(":"),
            });
        }
        let modifier = match parts.get(1) {
            Some(m) => Modifier::parse(spec_trimmed, m)?,
            None => Modifier::default(),
        };
        let mut event = Event {
            name: format!("{canonical}{}", modifier.suffix()),
            kind,
            type_,
            config,
            exclude_user: false,
            exclude_kernel: false,
            exclude_hv: false,
        };
        modifier.apply(&mut event);
        return Ok(event);
    }
    if let Some(config) = parse_raw(spec_trimmed, parts[0])? {
        let modifier = match parts.len() {
            1 => Modifier::default(),
            2 => Modifier::parse(spec_trimmed, parts[1])?,
            _ => {
                return Err(EventError::BadModifier {
                    spec: spec_trimmed.to_string(),
                    modifier: parts[1..].join(":"),
                })
            }
        };
        let mut event = Event {
            name: format!("r{config:x}{}", modifier.suffix()),
            kind: EventKind::Raw,
            type_: sys_bindings::PERF_TYPE_RAW,
            config,
            exclude_user: false,
            exclude_kernel: false,
            exclude_hv: false,
        };
        modifier.apply(&mut event);
        return Ok(event);
    }
    if parts.len() == 2 || parts.len() == 3 {
        let (subsystem, name) = (parts[0], parts[1]);
        if is_tracepoint_word(subsystem) && is_tracepoint_word(name) {
            let modifier = match parts.get(2) {
                Some(m) => Modifier::parse(spec_trimmed, m)?,
                None => Modifier::default(),
            };
            let id = tracepoint_id(subsystem, name)?;
            let mut event = Event {
                name: format!("{subsystem}:{name}{}", modifier.suffix()),
                kind: EventKind::Tracepoint,
                type_: sys_bindings::PERF_TYPE_TRACEPOINT,
                config: id,
                exclude_user: false,
                exclude_kernel: false,
                exclude_hv: false,
            };
            modifier.apply(&mut event);
            return Ok(event);
        }
    }
    Err(EventError::Unknown {
        name: spec_trimmed.to_string(),
        suggestions: suggest(parts[0]),
    })
}

/// Parses a comma-separated list of event specifications (`cycles,instructions:u,cs`).
pub fn parse_list(spec: &str) -> Result<Vec<Event>, EventError> {
    spec.split(',')
        .map(|one| {
            if one.trim().is_empty() {
                Err(EventError::Empty {
                    spec: spec.to_string(),
                })
            } else {
                parse(one)
            }
        })
        .collect()
}

/// `Some(config)` when `word` is `r` followed by hex digits; an error when it looks like a raw
/// event but the number does not fit.
fn parse_raw(spec: &str, word: &str) -> Result<Option<u64>, EventError> {
    let Some(hex) = word.strip_prefix('r') else {
        return Ok(None);
    };
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    match u64::from_str_radix(hex, 16) {
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(EventError::BadRaw {
            spec: spec.to_string(),
        }),
    }
}

fn is_tracepoint_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use sys_bindings::*;

    #[test]
    fn generic_hardware_and_aliases() {
        let e = parse("cycles").unwrap();
        assert_eq!(e.kind, EventKind::Hardware);
        assert_eq!((e.type_, e.config), (PERF_TYPE_HARDWARE, 0));
        assert_eq!(e.name, "cycles");
        assert_eq!(parse("cpu-cycles").unwrap().name, "cycles");
        assert_eq!(parse("branches").unwrap().config, 4);
        assert_eq!(parse("branch-instructions").unwrap().name, "branches");
        assert_eq!(parse("ref-cycles").unwrap().config, 9);
        assert_eq!(parse("idle-cycles-backend").unwrap().config, 8);
        assert_eq!(parse("stalled-cycles-frontend").unwrap().config, 7);
        assert!(!e.exclude_user && !e.exclude_kernel && !e.exclude_hv);
    }

    #[test]
    fn software_aliases_are_canonical() {
        for (alias, canonical, config) in [
            ("cs", "context-switches", PERF_COUNT_SW_CONTEXT_SWITCHES),
            ("migrations", "cpu-migrations", PERF_COUNT_SW_CPU_MIGRATIONS),
            ("faults", "page-faults", PERF_COUNT_SW_PAGE_FAULTS),
            ("task-clock", "task-clock", PERF_COUNT_SW_TASK_CLOCK),
            ("cpu-clock", "cpu-clock", PERF_COUNT_SW_CPU_CLOCK),
            (
                "minor-faults",
                "minor-faults",
                PERF_COUNT_SW_PAGE_FAULTS_MIN,
            ),
            (
                "major-faults",
                "major-faults",
                PERF_COUNT_SW_PAGE_FAULTS_MAJ,
            ),
        ] {
            let e = parse(alias).unwrap();
            assert_eq!(e.kind, EventKind::Software, "{alias}");
            assert_eq!(e.name, canonical);
            assert_eq!(e.config, u64::from(config));
        }
    }

    #[test]
    fn cache_events_use_perf_names_and_encoding() {
        let e = parse("L1-dcache-load-misses").unwrap();
        assert_eq!(e.kind, EventKind::HardwareCache);
        assert_eq!(e.type_, PERF_TYPE_HW_CACHE);
        assert_eq!(e.config, 1 << 16); // L1D (0) | read (0) << 8 | miss (1) << 16
        let e = parse("LLC-loads").unwrap();
        assert_eq!(e.config, 2);
        let e = parse("dTLB-store-misses").unwrap();
        assert_eq!(e.config, 3 | (1 << 8) | (1 << 16));
        let e = parse("iTLB-load-misses").unwrap();
        assert_eq!(e.config, 4 | (1 << 16));
        // perf's alternative spellings are accepted and canonicalized.
        assert_eq!(parse("l1d-loads").unwrap().name, "L1-dcache-loads");
        assert_eq!(
            parse("L1-dcache-load-miss").unwrap().name,
            "L1-dcache-load-misses"
        );
        assert_eq!(parse("branch-load-misses").unwrap().config, 5 | (1 << 16));
        assert_eq!(parse("LLC-prefetches").unwrap().config, 2 | (2 << 8));
    }

    #[test]
    fn modifiers_follow_perf_rules() {
        let u = parse("cycles:u").unwrap();
        assert_eq!(u.name, "cycles:u");
        assert!(!u.exclude_user && u.exclude_kernel && u.exclude_hv);
        let k = parse("instructions:k").unwrap();
        assert!(k.exclude_user && !k.exclude_kernel && k.exclude_hv);
        let ku = parse("cs:ku").unwrap();
        assert_eq!(ku.name, "context-switches:uk");
        assert!(!ku.exclude_user && !ku.exclude_kernel && ku.exclude_hv);
        assert_eq!(ku.base_name(), "context-switches");
        assert!(matches!(
            parse("cycles:x"),
            Err(EventError::BadModifier { .. })
        ));
        assert!(matches!(
            parse("cycles:uu"),
            Err(EventError::BadModifier { .. })
        ));
        assert!(matches!(
            parse("cycles:"),
            Err(EventError::BadModifier { .. })
        ));
        assert!(matches!(
            parse("cycles:u:k"),
            Err(EventError::BadModifier { .. })
        ));
    }

    #[test]
    fn user_only_fallback() {
        let e = parse("cycles").unwrap().user_only();
        assert_eq!(e.name, "cycles:u");
        assert!(e.exclude_kernel && !e.exclude_user);
        let e = parse("cycles:k").unwrap().user_only();
        assert_eq!(e.name, "cycles:u");
    }

    #[test]
    fn raw_events() {
        let e = parse("r01c2").unwrap();
        assert_eq!(e.kind, EventKind::Raw);
        assert_eq!((e.type_, e.config), (PERF_TYPE_RAW, 0x1c2));
        assert_eq!(e.name, "r1c2");
        let e = parse("rFFFF:u").unwrap();
        assert_eq!(e.config, 0xffff);
        assert!(e.exclude_kernel);
        assert!(matches!(
            parse("r11112222333344445"),
            Err(EventError::BadRaw { .. })
        ));
        // Not hex: not a raw event, so unknown.
        assert!(matches!(parse("rxyz"), Err(EventError::Unknown { .. })));
    }

    #[test]
    fn attr_carries_name_decisions_only() {
        let attr = parse("page-faults:u").unwrap().attr();
        assert_eq!(attr.type_, PERF_TYPE_SOFTWARE);
        assert_eq!(attr.config, u64::from(PERF_COUNT_SW_PAGE_FAULTS));
        assert_eq!(attr.size as usize, std::mem::size_of::<perf_event_attr>());
        assert_eq!(attr.exclude_kernel(), 1);
        assert_eq!(attr.exclude_user(), 0);
        assert_eq!(attr.disabled(), 0);
        assert_eq!(attr.inherit(), 0);
        assert_eq!(attr.read_format, 0);
    }

    #[test]
    fn unknown_names_get_suggestions() {
        let err = parse("cyclse").unwrap_err();
        match &err {
            EventError::Unknown { name, suggestions } => {
                assert_eq!(name, "cyclse");
                assert_eq!(suggestions.first().map(String::as_str), Some("cycles"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with("unknown event 'cyclse' (did you mean: cycles"),
            "{text}"
        );
        assert!(text.ends_with("?)"), "{text}");
        let err = parse("contex-switch").unwrap_err();
        assert!(err.to_string().contains("context-switches"), "{err}");
        let err = parse("zzzzzzzzzzzzzzzzzz").unwrap_err();
        assert_eq!(err.to_string(), "unknown event 'zzzzzzzzzzzzzzzzzz'");
    }

    #[test]
    fn lists() {
        let events = parse_list("cycles,instructions:u,cs").unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["cycles", "instructions:u", "context-switches"]);
        assert!(matches!(
            parse_list("cycles,,cs"),
            Err(EventError::Empty { .. })
        ));
        assert!(matches!(parse_list(""), Err(EventError::Empty { .. })));
        assert!(matches!(
            parse_list("cycles,bogus"),
            Err(EventError::Unknown { .. })
        ));
    }

    #[test]
    fn tracepoint_syntax_errors_are_not_panics() {
        for spec in [
            "a:b:c:d",
            ":",
            "::",
            "sched:",
            ":sched_switch",
            "sched:../../x",
        ] {
            assert!(parse(spec).is_err(), "{spec}");
        }
    }
}
