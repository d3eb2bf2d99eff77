//! Names from the target and the profile made safe to show: every character that a terminal
//! would act on, that could reorder or hide text, or that XML 1.0 forbids is replaced by a
//! visible escape.
//!
//! Thread names (any program can set its own with `prctl(PR_SET_NAME)`), function names (a
//! symbol of a hostile binary can hold any bytes), module and source paths, the recorded command
//! line and every other string of a profile go through [`visible`] before a text output (report
//! table, thread table, header, folded stacks, flame graph SVG, error messages and warnings)
//! shows them. JSON keeps the exact strings (see `json.rs`).
//!
//! | characters | shown as |
//! |---|---|
//! | C0 controls U+0000–U+001F (ESC, BEL, tab, newline, …) and DEL U+007F | `\x1b`, `\x07`, `\x09`, `\x0a`, `\x7f` |
//! | C1 controls U+0080–U+009F (a terminal may take U+009B as CSI) | `\u{9b}` |
//! | bidi controls U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 | `\u{202e}` |
//! | line and paragraph separators U+2028, U+2029 | `\u{2028}` |
//! | the noncharacters U+FFFE, U+FFFF (not allowed in XML 1.0) | `\u{fffe}` |
//!
//! Everything else is left as it is, backslashes too: a name without these characters is shown
//! unchanged (so the escape is not reversible; the JSON output has the exact names). Together
//! with the markup characters (`&`, `<`, …) that inferno's XML writer escapes itself, this makes
//! every string valid XML 1.0 character data: XML allows only tab, newline and carriage return
//! below U+0020, and nothing at U+FFFE/U+FFFF (lone surrogates cannot occur in a Rust string).

use std::borrow::Cow;
use std::fmt::Write;

/// True when `c` is shown escaped by [`visible`].
pub fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{fffe}'
            | '\u{ffff}'
    )
}

/// `s` with every character of [`needs_escape`] replaced by a visible escape: `\xNN` (two
/// lowercase hex digits) for C0 controls and DEL, `\u{N}` (lowercase hex) for the others.
/// Borrows `s` when nothing needs escaping.
pub fn visible(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(needs_escape) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if c < '\u{80}' {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9.5: C0, DEL, C1 and bidi controls are escaped visibly, nothing else changes.
    #[test]
    fn control_characters_are_escaped_visibly() {
        // The thread name of the issue's reproducer.
        assert_eq!(
            visible("\x1b]0;PWN\x07\x1b[31mX"),
            "\\x1b]0;PWN\\x07\\x1b[31mX"
        );
        // Every C0 control, and DEL.
        for c in (0u8..0x20).chain([0x7f]) {
            let s = format!("a{}b", char::from(c));
            assert_eq!(visible(&s), format!("a\\x{c:02x}b"), "{c:#x}");
        }
        assert_eq!(visible("\t\n\r"), "\\x09\\x0a\\x0d");
        // Every C1 control: U+009B is CSI on terminals that take 8-bit controls.
        for c in 0x80u32..=0x9f {
            let s = format!("a{}b", char::from_u32(c).unwrap());
            assert_eq!(visible(&s), format!("a\\u{{{c:x}}}b"), "{c:#x}");
        }
        // Bidi controls: a right-to-left override would show `main` as `niam`.
        for (c, text) in [
            ('\u{61c}', "\\u{61c}"),
            ('\u{200e}', "\\u{200e}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{202a}', "\\u{202a}"),
            ('\u{202b}', "\\u{202b}"),
            ('\u{202c}', "\\u{202c}"),
            ('\u{202d}', "\\u{202d}"),
            ('\u{202e}', "\\u{202e}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2067}', "\\u{2067}"),
            ('\u{2068}', "\\u{2068}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{2028}', "\\u{2028}"),
            ('\u{2029}', "\\u{2029}"),
            ('\u{fffe}', "\\u{fffe}"),
            ('\u{ffff}', "\\u{ffff}"),
        ] {
            assert_eq!(visible(&format!("x{c}y")), format!("x{text}y"));
        }
        assert_eq!(visible("\u{202e}niam"), "\\u{202e}niam");
    }

    #[test]
    fn plain_names_are_borrowed_unchanged() {
        for name in [
            "",
            "main",
            "<alloc::vec::Vec<T> as core::ops::Drop>::drop",
            "operator<<(std::ostream&, char const*)",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "C:\\path with spaces\\x1b",
            "naïve 名前 émoji 🦀 \u{a0}\u{ad}",
            "'quoted' \"name\" & more",
        ] {
            assert!(matches!(visible(name), Cow::Borrowed(_)), "{name}");
        }
    }

    /// Issue 9.6: nothing XML 1.0 forbids survives (Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] |
    /// [#xE000-#xFFFD] | [#x10000-#x10FFFF]).
    #[test]
    fn the_result_is_valid_xml_character_data() {
        let xml_char = |c: char| {
            matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
                || c >= '\u{10000}'
        };
        let all: String = (0u32..=0x10ffff).filter_map(char::from_u32).collect();
        let shown = visible(&all);
        assert!(shown.chars().all(xml_char));
        // Every other character is kept as it is.
        let kept: String = all.chars().filter(|&c| !needs_escape(c)).collect();
        assert_eq!(visible(&kept), kept.as_str());
        assert_eq!(
            all.chars().count() - kept.chars().count(),
            0x20 + 0x21 + 12 + 4
        );
    }
}
