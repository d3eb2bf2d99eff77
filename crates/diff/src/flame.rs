//! The differential flame graph of `rprof diff --flame`: NEW's stacks drawn as a flame graph,
//! each frame colored by the change of its whole stack — the samples of the path from the root
//! to that frame (its total), in BASE against NEW — red for growth, blue for shrinkage, grey
//! within sampling noise.
//!
//! inferno's differential mode colors a frame by the change of its *self* samples at the leaves
//! (inferno issue #295), and its palette maps a function name to one color wherever it appears,
//! so it cannot color two stacks of one function apart. The SVG is therefore written here:
//! rectangles with the numbers in their `<title>` tooltips, and a small script to zoom into a
//! frame by clicking it. Every string goes
//! through [`visible`] (control characters XML forbids) and then XML escaping (`&`, `<`, `>`,
//! `"`, `'`), so the SVG is valid XML whatever the names.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use rprof_profile::Profile;
use rprof_report::folded::thread_label;
use rprof_report::{visible, StackCounts};

use crate::compare::{Comparison, DiffError, DiffOptions, Measure};
use crate::text::{command_line, p_value, signed_points, signed_weight, thousands, weight};

/// Why no differential flame graph was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlameError {
    /// The profiles cannot be compared.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// Writing the SVG failed.
    #[error("cannot write the differential flame graph")]
    Io(#[from] io::Error),
}

/// How the differential flame graph looks.
#[derive(Debug, Clone, PartialEq)]
pub struct FlameOptions {
    /// Title. Default `None`: `rprof diff: COMMAND`. Shown through [`visible`].
    pub title: Option<String>,
    /// What BASE is called (its file name), for the subtitle. Default: empty.
    pub base_label: String,
    /// What NEW is called. Default: empty.
    pub new_label: String,
    /// Width of the image in pixels. Default 1200.
    pub width: usize,
    /// Frames narrower than this many pixels are left out (with their callees). Default 0.1.
    pub min_width_px: f64,
}

impl Default for FlameOptions {
    fn default() -> Self {
        FlameOptions {
            title: None,
            base_label: String::new(),
            new_label: String::new(),
            width: 1200,
            min_width_px: 0.1,
        }
    }
}

const FRAME_HEIGHT: f64 = 16.0;
const TOP: f64 = 86.0;
const BOTTOM: f64 = 10.0;
const SIDE: f64 = 10.0;
const FONT_SIZE: f64 = 12.0;
/// Width of one character of the 12-pixel monospace font, about.
const CHAR_WIDTH: f64 = 7.2;
/// The color of a frame whose change is within sampling noise.
pub const NEUTRAL: (u8, u8, u8) = (222, 222, 222);

/// One path from the root: a frame of the graph.
struct Node {
    /// Into the interned names.
    name: u32,
    /// Into the interned names; `u32::MAX`: none (the root, threads).
    module: u32,
    base: u64,
    new: u64,
    children: Vec<usize>,
}

/// Both profiles' stacks as one tree of paths, keyed by function name (threads by name), so
/// that the same path in BASE and NEW is one node even when the binary was renamed between
/// them; a node's module is that of the profile added first (NEW).
struct Tree {
    names: Vec<String>,
    index: HashMap<String, u32>,
    nodes: Vec<Node>,
    child: HashMap<(usize, u32), usize>,
}

impl Tree {
    fn new() -> Tree {
        let mut tree = Tree {
            names: Vec::new(),
            index: HashMap::new(),
            nodes: Vec::new(),
            child: HashMap::new(),
        };
        let all = tree.intern("all");
        tree.nodes.push(Node {
            name: all,
            module: u32::MAX,
            base: 0,
            new: 0,
            children: Vec::new(),
        });
        tree
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    fn step(&mut self, parent: usize, name: u32, module: u32) -> usize {
        if let Some(&node) = self.child.get(&(parent, name)) {
            return node;
        }
        let node = self.nodes.len();
        self.nodes.push(Node {
            name,
            module,
            base: 0,
            new: 0,
            children: Vec::new(),
        });
        self.nodes[parent].children.push(node);
        self.child.insert((parent, name), node);
        node
    }

    /// Adds the selected samples of `profile` to the BASE (`new == false`) or NEW counts.
    fn add(&mut self, profile: &Profile, options: &DiffOptions, new: bool) {
        let selection = if new { &options.new } else { &options.base };
        let counts = StackCounts::new(profile, selection);
        let mut frames = Vec::new();
        for &(stack, who, n) in &counts.entries {
            frames.clear();
            frames.extend(selection.frames(profile, stack));
            let thread = thread_label(profile, who);
            let thread = self.intern(&thread);
            let mut path = vec![0, self.step(0, thread, u32::MAX)];
            for &frame in frames.iter().rev() {
                let info = profile.frame(frame);
                let name = self.intern(&info.function);
                let module = match info.module {
                    Some(m) => self.intern(profile.module_name(m)),
                    None => u32::MAX,
                };
                let parent = *path.last().unwrap_or(&0);
                path.push(self.step(parent, name, module));
            }
            for node in path {
                let node = &mut self.nodes[node];
                if new {
                    node.new += n;
                } else {
                    node.base += n;
                }
            }
        }
    }

    fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", String::as_str)
    }
}

/// One drawn frame.
struct Drawn {
    node: usize,
    x: f64,
    width: f64,
    depth: usize,
}

/// Writes the differential flame graph of `base` against `new` as SVG.
pub fn render(
    base: &Profile,
    new: &Profile,
    options: &DiffOptions,
    flame: &FlameOptions,
    mut out: impl Write,
) -> Result<(), FlameError> {
    let (c, _, _) = Comparison::new(base, new, options)?;
    let mut tree = Tree::new();
    tree.add(new, options, true);
    tree.add(base, options, false);

    // Lay out NEW's paths; BASE's samples in paths NEW does not have are counted, not drawn.
    let width = flame.width.max(100) as f64;
    let scale = (width - 2.0 * SIDE) / tree.nodes[0].new.max(1) as f64;
    let mut drawn: Vec<Drawn> = Vec::new();
    let mut gone = 0u64;
    let mut todo = vec![(0usize, SIDE, 0usize)];
    while let Some((node, x, depth)) = todo.pop() {
        let w = tree.nodes[node].new as f64 * scale;
        if w < flame.min_width_px {
            continue;
        }
        drawn.push(Drawn {
            node,
            x,
            width: w,
            depth,
        });
        let mut children = tree.nodes[node].children.clone();
        children.sort_by(|&a, &b| {
            let (a, b) = (&tree.nodes[a], &tree.nodes[b]);
            tree.name(a.name)
                .cmp(tree.name(b.name))
                .then_with(|| tree.name(a.module).cmp(tree.name(b.module)))
        });
        let mut cx = x;
        for child in children {
            let n = &tree.nodes[child];
            if n.new == 0 {
                gone += n.base;
                continue;
            }
            todo.push((child, cx, depth + 1));
            cx += n.new as f64 * scale;
        }
    }
    drawn.sort_by_key(|d| (d.depth, d.node));
    let depth = drawn.iter().map(|d| d.depth).max().unwrap_or(0);
    let height = TOP + (depth + 1) as f64 * FRAME_HEIGHT + BOTTOM;

    let change = |n: &Node| c.change(n.base, n.new);
    let largest = drawn
        .iter()
        .map(|d| change(&tree.nodes[d.node]).abs())
        .fold(0.0f64, f64::max);

    let unit = visible(&c.base.event).into_owned();
    let title = flame.title.clone().unwrap_or_else(|| {
        let what = if c.new.command.is_empty() {
            "profile".to_string()
        } else {
            command_line(&c.new.command)
        };
        format!("rprof diff: {what}")
    });
    let measure = match c.measure {
        Measure::Time if c.time => "estimated time",
        Measure::Time => "events",
        Measure::Share => "share of samples (--normalize)",
    };
    let subtitle = format!(
        "NEW {} against BASE {}: {} ({:+.1}%)",
        label(&flame.new_label),
        label(&flame.base_label),
        signed_weight(c.new.weight as f64 - c.base.weight as f64, c.time, &unit),
        c.total_change_percent()
    );
    let legend = format!(
        "drawn on NEW's stacks; a frame's color is the change of its whole stack ({measure}): \
         red more, blue less, grey within sampling noise (p > {})",
        c.alpha
    );
    let gone = if gone > 0 {
        format!(
            "{} BASE samples are in stacks NEW does not have (not drawn)",
            thousands(gone)
        )
    } else {
        String::new()
    };

    let mut svg = String::with_capacity(256 + drawn.len() * 320);
    let _ = write!(
        svg,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\" \
         font-family=\"monospace\" font-size=\"{FONT_SIZE}\">\n\
         <rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n\
         <text x=\"{mid}\" y=\"24\" text-anchor=\"middle\" font-size=\"17\">{}</text>\n\
         <text x=\"{mid}\" y=\"44\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"{mid}\" y=\"60\" text-anchor=\"middle\" font-size=\"11\">{}</text>\n\
         <text x=\"{mid}\" y=\"74\" text-anchor=\"middle\" font-size=\"11\">{}</text>\n\
         <g id=\"frames\">\n",
        xml(&title),
        xml(&subtitle),
        xml(&legend),
        xml(&gone),
        mid = width / 2.0
    );
    for d in &drawn {
        let n = &tree.nodes[d.node];
        let delta = change(n);
        let p = c.p_value(n.base, n.new);
        let significant = p <= c.alpha;
        let (r, g, b) = color(delta, largest, significant);
        let name = tree.name(n.name);
        let module = (n.module != u32::MAX).then(|| tree.name(n.module));
        // Names through `visible`, lines of the tooltip apart: the markup is escaped below.
        let mut tip = visible(name).into_owned();
        if let Some(m) = module {
            let _ = write!(tip, " ({})", visible(m));
        }
        let _ = write!(
            tip,
            "\nNEW: {} samples ({:.2}%, {})\nBASE: {} samples ({:.2}%, {})\nchange: {}, {}\n{} (p = {})",
            thousands(n.new),
            c.new.share_of(n.new),
            weight(c.new.weight_of(n.new), c.time, &unit),
            thousands(n.base),
            c.base.share_of(n.base),
            weight(c.base.weight_of(n.base), c.time, &unit),
            signed_weight(c.delta(n.base, n.new), c.time, &unit),
            signed_points(c.delta_share(n.base, n.new)),
            if significant {
                "significant"
            } else {
                "within sampling noise"
            },
            p_value(p)
        );
        let y = TOP + (depth - d.depth) as f64 * FRAME_HEIGHT;
        // The frame's place and name as data, for the zoom script; its label always present
        // (empty when it does not fit), so that zooming can fill it in.
        let shown = visible(name);
        let _ = write!(
            svg,
            "<g class=\"f\" data-n=\"{}\" data-x=\"{:.4}\" data-w=\"{:.4}\" data-d=\"{}\">\
             <title>{}</title><rect x=\"{:.2}\" y=\"{y}\" width=\"{:.2}\" height=\"{}\" \
             fill=\"rgb({r},{g},{b})\" rx=\"2\" ry=\"2\"/>",
            markup(&shown),
            d.x,
            d.width,
            d.depth,
            markup(&tip),
            d.x,
            d.width,
            FRAME_HEIGHT - 1.0
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.2}\" y=\"{}\">{}</text></g>",
            d.x + 3.0,
            y + FRAME_HEIGHT - 4.5,
            markup(&fit_label(&shown, d.width))
        );
    }
    svg.push_str("</g>\n<script type=\"text/ecmascript\"><![CDATA[\n");
    svg.push_str(&ZOOM_SCRIPT.replace("WIDTH", &format!("{width}")));
    svg.push_str("]]></script>\n</svg>\n");
    out.write_all(svg.as_bytes())?;
    Ok(())
}

/// `name` cut to what fits in a frame `width` pixels wide (with `..` when cut); empty when not
/// even 3 characters fit. The zoom script does the same in the browser.
fn fit_label(name: &str, width: f64) -> String {
    let fits = ((width - 6.0) / CHAR_WIDTH).floor();
    if fits < 3.0 {
        return String::new();
    }
    let fits = fits as usize;
    if name.chars().count() <= fits {
        name.to_string()
    } else {
        let mut t: String = name.chars().take(fits - 2).collect();
        t.push_str("..");
        t
    }
}

/// Click a frame to zoom to it (its callers stay below it, full width and faded); click `all`
/// to zoom out. `?z=NAME` in the URL zooms to the first frame of that name (used by the tests).
/// Kept free of `]]>`: it sits in a CDATA section.
const ZOOM_SCRIPT: &str = r#"(function () {
  var W = WIDTH, SIDE = 10, CHAR = 7.2;
  var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  function num(g, a) { return parseFloat(g.getAttribute(a)); }
  function fit(name, w) {
    var n = Math.floor((w - 6) / CHAR);
    if (n < 3) return "";
    return name.length <= n ? name : name.slice(0, n - 2) + "..";
  }
  function zoom(target) {
    var zx = num(target, "data-x"), zw = num(target, "data-w"), zd = num(target, "data-d");
    var scale = (W - 2 * SIDE) / zw, eps = 1e-3;
    frames.forEach(function (g) {
      var x = num(g, "data-x"), w = num(g, "data-w"), d = num(g, "data-d");
      var inside = d >= zd && x >= zx - eps && x + w <= zx + zw + eps;
      var below = d < zd && x <= zx + eps && x + w >= zx + zw - eps;
      if (!inside && !below) { g.style.display = "none"; return; }
      g.style.display = "";
      g.style.opacity = below ? "0.6" : "";
      var nx = below ? SIDE : SIDE + (x - zx) * scale, nw = below ? W - 2 * SIDE : w * scale;
      var rect = g.querySelector("rect"), text = g.querySelector("text");
      rect.setAttribute("x", nx.toFixed(2));
      rect.setAttribute("width", nw.toFixed(2));
      text.setAttribute("x", (nx + 3).toFixed(2));
      text.textContent = fit(g.getAttribute("data-n"), nw);
    });
  }
  frames.forEach(function (g) {
    g.style.cursor = "pointer";
    g.addEventListener("click", function () { zoom(g); });
  });
  var m = /[?&]z=([^&]*)/.exec(window.location.search);
  if (m) {
    var name = decodeURIComponent(m[1]);
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].getAttribute("data-n") === name) { zoom(frames[i]); break; }
    }
  }
})();
"#;

fn label(s: &str) -> &str {
    if s.is_empty() {
        "(unnamed)"
    } else {
        s
    }
}

/// The fill of a frame whose stack changed by `delta`, `largest` the largest change of any
/// drawn frame: from pale (a small change) to full red (growth) or blue (shrinkage); grey when
/// the change is within sampling noise.
pub fn color(delta: f64, largest: f64, significant: bool) -> (u8, u8, u8) {
    if !significant || delta == 0.0 || largest <= 0.0 {
        return NEUTRAL;
    }
    let intensity = (delta.abs() / largest).clamp(0.0, 1.0);
    let other = (215.0 - 185.0 * intensity).round() as u8;
    if delta > 0.0 {
        (255, other, other)
    } else {
        (other, other, 255)
    }
}

/// `s` shown through [`visible`] and escaped for XML character data and attribute values.
fn xml(s: &str) -> String {
    markup(&visible(s))
}

/// `s` with the XML markup characters escaped; `s` must hold no character XML forbids (it is
/// made of strings shown through [`visible`] and newlines).
fn markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
