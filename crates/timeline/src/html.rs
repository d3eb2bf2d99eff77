//! The page around the data: HTML with the stylesheet and script of `assets/` inlined, the
//! title and notes escaped, the data in a `<script type="application/json">` element.

use std::io::{self, Write};

use crate::{Input, NO_OFF_CPU_NOTE};

const CSS: &str = include_str!("../assets/timeline.css");
const JS: &str = include_str!("../assets/timeline.js");

/// Writes the page of `input` with its encoded `data` (JSON safe inside `<script>`).
pub(crate) fn page(input: &Input, data: &str, mut out: impl Write) -> io::Result<()> {
    let title = text(&input.title);
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <header>\n<h1 id=\"title\">{title}</h1>\n<div id=\"notes\">\n"
    )?;
    if !input.off_cpu {
        writeln!(
            out,
            "<p class=\"note\" id=\"no-off-cpu\">{}</p>",
            text(NO_OFF_CPU_NOTE)
        )?;
    }
    for note in &input.notes {
        writeln!(out, "<p class=\"note\">{}</p>", text(note))?;
    }
    out.write_all(
        b"</div>\n<div id=\"legend\"></div>\n<div id=\"controls\">\
          <button id=\"reset\" type=\"button\">Reset zoom</button> \
          <span id=\"range\"></span> \
          <span class=\"hint\">wheel: zoom \xc2\xb7 drag: pan \xc2\xb7 shift+drag or drag on the \
          axis: zoom to a range \xc2\xb7 click: pin the stack</span></div>\n</header>\n\
          <noscript><p class=\"note\">The timeline is drawn by JavaScript: enable it to see \
          the lanes.</p></noscript>\n\
          <p id=\"error\" hidden></p>\n\
          <div id=\"main\">\n<div id=\"axis-row\"><div id=\"corner\"></div>\
          <canvas id=\"axis\"></canvas></div>\n\
          <div id=\"scroll\"><div id=\"rows\"><div id=\"labels\"></div>\
          <canvas id=\"lanes\"></canvas></div></div>\n</div>\n\
          <div id=\"tip\" hidden></div>\n\
          <section id=\"details\"><h2>Stack</h2><pre id=\"stack\">Hover over a block or sample \
          to see its stack; click to keep it here.</pre></section>\n\
          <script type=\"application/json\" id=\"timeline-data\">",
    )?;
    out.write_all(data.as_bytes())?;
    out.write_all(b"</script>\n<script>\n")?;
    out.write_all(JS.as_bytes())?;
    out.write_all(b"</script>\n</body>\n</html>\n")?;
    Ok(())
}

/// `s` as HTML text: `&`, `<`, `>`, `"` and `'` as character references; control characters
/// and the bidirectional controls that could reorder what is shown as visible `\xNN` / `\u{…}`
/// (the page's script shows names from the data the same way).
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}
