//! The data the page draws, as one compact JSON document that is safe inside a `<script>`
//! element.
//!
//! Layout (version 1; times are integer nanoseconds relative to [`Input::start`], clamped to
//! the axis):
//!
//! ```text
//! { "version": 1, "duration": NS, "sample_ns": NS, "off_cpu": BOOL,
//!   "frames": [STRING...],                      every distinct frame once
//!   "nodes": [PARENT+1, FRAME, ...],            stack prefix tree, flat pairs (0: a root)
//!   "processes": [{ "pid", "name", "threads": [{ "tid", "name", "start", "end",
//!       "spans": [START_DELTA, DURATION, STATE, STACK+1, ...],   sorted by start
//!       "samples": [TIME_DELTA, STACK+1, ...] }] }] }           sorted by time
//! ```
//!
//! A delta is the distance from the previous entry's start (time) in the same thread, the first
//! one from 0; `STACK+1` is 0 for no stack; `STATE` is an index into [`State::ALL`](crate::State::ALL).

use std::fmt::Write as _;

use crate::{Input, Span};

/// The JSON of `input` (see the module documentation).
pub(crate) fn encode(input: &Input) -> String {
    let duration = input.end.saturating_sub(input.start);
    let rel = |t: u64| t.saturating_sub(input.start).min(duration);
    let mut out = String::with_capacity(1 << 16);
    let _ = write!(
        out,
        "{{\"version\":1,\"duration\":{duration},\"sample_ns\":{},\"off_cpu\":{},\"frames\":[",
        input.sample_ns.max(1),
        input.off_cpu
    );
    for (i, frame) in input.stacks.frames.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, frame);
    }
    out.push_str("],\"nodes\":[");
    for (i, &(parent, frame)) in input.stacks.nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let parent = if parent == crate::NONE { 0 } else { parent + 1 };
        let _ = write!(out, "{parent},{frame}");
    }
    out.push_str("],\"processes\":[");
    for (p, process) in input.processes.iter().enumerate() {
        if p > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"pid\":{},\"name\":", process.pid);
        string(&mut out, &process.name);
        out.push_str(",\"threads\":[");
        for (t, thread) in process.threads.iter().enumerate() {
            if t > 0 {
                out.push(',');
            }
            let start = rel(thread.start);
            let end = rel(thread.end).max(start);
            let _ = write!(out, "{{\"tid\":{},\"name\":", thread.tid);
            string(&mut out, &thread.name);
            let _ = write!(out, ",\"start\":{start},\"end\":{end},\"spans\":[");
            let mut spans: Vec<(u64, u64, u8, u32)> = thread
                .spans
                .iter()
                .map(
                    |Span {
                         start,
                         end,
                         state,
                         stack,
                     }| {
                        let s = rel(*start);
                        (
                            s,
                            rel(*end).max(s),
                            state.code(),
                            stack.map_or(0, |r| r.0 + 1),
                        )
                    },
                )
                .collect();
            spans.sort_unstable();
            let mut previous = 0;
            for (i, (s, e, state, stack)) in spans.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{},{},{state},{stack}", s - previous, e - s);
                previous = s;
            }
            out.push_str("],\"samples\":[");
            let mut samples: Vec<(u64, u32)> = thread
                .samples
                .iter()
                .map(|s| (rel(s.time), s.stack.map_or(0, |r| r.0 + 1)))
                .collect();
            samples.sort_unstable();
            let mut previous = 0;
            for (i, (time, stack)) in samples.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{},{stack}", time - previous);
                previous = time;
            }
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// Appends `s` as a JSON string that can sit inside an HTML `<script>` element: besides `"`
/// and `\`, every control character (C0, DEL, C1), `<`, `>`, `&` (so that neither `</script>`
/// nor `<!--` can appear) and U+2028/U+2029 are written as `\uXXXX`.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
