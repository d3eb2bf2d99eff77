//! Flame graph SVGs, drawn by inferno from the profile's folded stacks.
//!
//! Colors are a function of the frame's name, so the same profile always gives the same SVG:
//! user code in warm colors, inlined functions in aqua, kernel code in orange, the
//! `[truncated]` marker grey, thread roots in light purple; the frames of off-CPU stacks
//! (`--off-cpu`, `--wall`) in blues, with their reason (`[lock]`, `[io]`, ...) as the top frame
//! in a color of its own. Off-CPU and wall graphs count microseconds.
//!
//! Every string drawn (title, subtitle, thread and frame names, and so the tooltips made of
//! them) goes through [`visible`] before inferno sees it: a control character, which XML 1.0
//! forbids, would make the SVG unreadable. inferno's XML writer escapes the markup characters
//! (`&`, `<`, `>`, `'`, `"`) itself, so they are left to it and not escaped twice.

use std::collections::BTreeSet;
use std::io::{self, Write};

use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self, Direction};
use rprof_profile::Profile;

use crate::folded::{self, thread_label, FoldedOptions};
use crate::format::{command_line, duration, thousands};
use crate::overview::Overview;
use crate::select::{Selection, StackCounts, ThreadSpan, Weight};
use crate::visible::visible;

/// Why no flame graph was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlameError {
    /// The selection has no samples: there is nothing to draw.
    #[error("no samples to draw")]
    NoSamples,
    /// Writing the SVG failed.
    #[error("cannot write the flame graph")]
    Io(#[from] io::Error),
}

/// How the flame graph looks.
#[derive(Debug, Clone, PartialEq)]
pub struct FlameOptions {
    /// Which samples count. Default: all; inline frames kept as frames of their own, colored
    /// apart (`merge_inline` merges them into their callers).
    pub selection: Selection,
    /// Title. Default `None`: `rprof: COMMAND (N samples)`. Shown through [`visible`].
    pub title: Option<String>,
    /// Line under the title. Default `None`: the event, frequency and duration. Shown through
    /// [`visible`].
    pub subtitle: Option<String>,
    /// Width of the image in pixels. Default `None`: fluid, fills the browser window.
    pub width: Option<usize>,
    /// Frames narrower than this percentage of the whole are left out. Default `0.01`.
    pub min_width: f64,
    /// Reverse each stack, so that leaf functions form the base. Default `false`.
    pub reverse: bool,
    /// Draw top-down (an icicle graph). Default `false`: bottom-up.
    pub inverted: bool,
    /// Indent the XML (for readable diffs in tests). Default `false`.
    pub pretty_xml: bool,
}

impl Default for FlameOptions {
    fn default() -> Self {
        FlameOptions {
            selection: Selection::default(),
            title: None,
            subtitle: None,
            width: None,
            min_width: 0.01,
            reverse: false,
            inverted: false,
            pretty_xml: false,
        }
    }
}

/// FNV-1a of `name`, as three numbers in `[0, 1]`.
fn hash3(name: &str) -> (f32, f32, f32) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let part = |shift: u32| ((hash >> shift) & 0xffff) as f32 / 65535.0;
    (part(0), part(16), part(32))
}

fn scale(base: u8, range: f32, v: f32) -> u8 {
    (f32::from(base) + range * v).clamp(0.0, 255.0) as u8
}

/// The color of a frame, from its (annotated) name.
fn color_for(name: &str, thread_root: bool) -> Color {
    let (v1, v2, v3) = hash3(name);
    if thread_root {
        Color {
            r: scale(190, 40.0, v1),
            g: scale(170, 40.0, v1),
            b: scale(230, 25.0, v2),
        }
    } else if let Some(color) = reason_color(name) {
        color
    } else if name.ends_with("_[w]") {
        Color {
            r: scale(40, 60.0, v1),
            g: scale(90, 80.0, v2),
            b: scale(190, 60.0, v1),
        }
    } else if name == "[truncated]" {
        Color {
            r: 180,
            g: 180,
            b: 180,
        }
    } else if name.ends_with("_[i]") {
        Color {
            r: scale(50, 60.0, v1),
            g: scale(165, 55.0, v1),
            b: scale(165, 55.0, v1),
        }
    } else if name.ends_with("_[k]") {
        Color {
            r: scale(190, 65.0, v1),
            g: scale(90, 65.0, v1),
            b: 0,
        }
    } else {
        Color {
            r: scale(205, 50.0, v3),
            g: scale(0, 230.0, v1),
            b: scale(0, 55.0, v2),
        }
    }
}

/// The fixed color of an off-CPU reason frame.
fn reason_color(name: &str) -> Option<Color> {
    let (r, g, b) = match name {
        "[cpu]" => (230, 70, 70),
        "[lock]" => (160, 60, 200),
        "[sleep]" => (120, 120, 120),
        "[io]" => (30, 160, 90),
        "[other]" => (200, 180, 60),
        _ => return None,
    };
    Some(Color { r, g, b })
}

/// The default title: `rprof: COMMAND (N samples)`, the command as it was recorded (unescaped).
pub fn default_title(profile: &Profile, samples: u64) -> String {
    let h = &profile.header;
    let what = match (h.command.is_empty(), h.target_pid) {
        (false, _) => command_line(&h.command),
        (true, Some(pid)) => format!("process {pid}"),
        (true, None) => "profile".to_string(),
    };
    format!("rprof: {what} ({} samples)", thousands(samples))
}

/// The title of an off-CPU or wall-clock graph: `rprof: COMMAND (off-CPU 1.23 s)`.
fn time_title(profile: &Profile, what: &str, micros: u64) -> String {
    let h = &profile.header;
    let command = match (h.command.is_empty(), h.target_pid) {
        (false, _) => command_line(&h.command),
        (true, Some(pid)) => format!("process {pid}"),
        (true, None) => "profile".to_string(),
    };
    format!(
        "rprof: {command} ({what} {})",
        duration(micros.saturating_mul(1000))
    )
}

/// Writes the flame graph of `profile` as SVG.
pub fn render(
    profile: &Profile,
    options: &FlameOptions,
    out: impl Write,
) -> Result<(), FlameError> {
    let folded_options = FoldedOptions {
        selection: options.selection.clone(),
        annotate: true,
        thread_root: true,
    };
    let lines = folded::lines(profile, &folded_options);
    let samples: u64 = lines
        .iter()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    let weight = options.selection.weight;
    if samples == 0 {
        return Err(FlameError::NoSamples);
    }
    // Every name a thread had is a root (the one it had when each sample was taken).
    let roots: BTreeSet<String> = profile
        .threads
        .values()
        .flat_map(|t| {
            (0..t.names.len().max(1)).map(|i| thread_label(profile, ThreadSpan::named(t, i)))
        })
        .collect();
    let mut palette = PaletteMap::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for line in &lines {
        let stack = line.rsplit_once(' ').map_or(line.as_str(), |(s, _)| s);
        let mut parts = stack.split(';');
        if let Some(root) = parts.next() {
            if seen.insert(root) {
                palette.insert(root, color_for(root, roots.contains(root)));
            }
        }
        for frame in parts {
            if seen.insert(frame) {
                palette.insert(frame, color_for(frame, false));
            }
        }
    }
    let subtitle = options.subtitle.clone().unwrap_or_else(|| {
        let counts = StackCounts::new(profile, &options.selection);
        let o = Overview::new(profile, &options.selection, &counts);
        let h = &profile.header;
        let mut s = h.event.clone();
        if let Some(f) = h.frequency {
            s.push_str(&format!(" at {} Hz", thousands(f)));
        }
        s.push_str(&format!(", {}", duration(o.duration_ns)));
        if o.truncated > 0 {
            s.push_str(&format!(", {} truncated stacks", thousands(o.truncated)));
        }
        s
    });
    let mut inferno_options = flamegraph::Options::default();
    let title = options.title.clone().unwrap_or_else(|| match weight {
        Weight::Samples => default_title(profile, samples),
        Weight::OffCpu => time_title(profile, "off-CPU", samples),
        Weight::Wall => time_title(profile, "wall-clock", samples),
    });
    inferno_options.title = visible(&title).into_owned();
    inferno_options.subtitle = Some(visible(&subtitle).into_owned());
    inferno_options.image_width = options.width;
    inferno_options.min_width = options.min_width;
    inferno_options.reverse_stack_order = options.reverse;
    inferno_options.direction = if options.inverted {
        Direction::Inverted
    } else {
        Direction::Straight
    };
    inferno_options.deterministic = true;
    inferno_options.pretty_xml = options.pretty_xml;
    inferno_options.count_name = if weight.is_time() {
        "µs".to_string()
    } else {
        "samples".to_string()
    };
    inferno_options.palette_map = Some(&mut palette);
    // The lines are sorted already (inferno sorts them again when it reverses stacks).
    inferno_options.no_sort = true;
    flamegraph::from_lines(&mut inferno_options, lines.iter().map(String::as_str), out)?;
    Ok(())
}
