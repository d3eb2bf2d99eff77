//! Shortening long (mostly Rust and C++) function names to fit a column, keeping what tells
//! functions apart: the last path segments and the function's own name.

use std::borrow::Cow;

/// Shortens `name` to at most `max` characters, in steps that stop as soon as it fits:
/// generic arguments become `<…>`, a trailing C++ parameter list becomes `(…)`, paths keep their
/// last two segments (`alloc::vec::Vec<…>::push` becomes `Vec<…>::push`), a qualified path
/// loses its trait (`<Vec<…> as Extend<…>>::extend` becomes `Vec<…>::extend`), `<…>` goes, and
/// as a last resort the start is cut off behind a `…`.
pub fn shorten(name: &str, max: usize) -> Cow<'_, str> {
    if name.chars().count() <= max {
        return Cow::Borrowed(name);
    }
    let mut s = collapse_generics(name);
    if s.chars().count() > max {
        s = collapse_params(&s);
    }
    if s.chars().count() > max {
        s = shorten_paths(&s);
    }
    if s.chars().count() > max {
        s = unqualify(&s);
    }
    if s.chars().count() > max {
        s = s.replace("<…>", "");
    }
    let len = s.chars().count();
    if len > max {
        let keep = max.saturating_sub(1);
        let tail: String = s.chars().skip(len - keep).collect();
        s = format!("…{tail}");
        if max == 0 {
            s.clear();
        }
    }
    Cow::Owned(s)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '$' | '{' | '}' | '.' | '~' | '#')
}

/// The index just past the `>` that closes the `<` at `open`, or None when unbalanced. `->` is
/// not a closing bracket.
fn matching_angle(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '<' => depth += 1,
            '>' if i > 0 && chars[i - 1] == '-' => {}
            '>' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `Vec<Option<u8>>::push` -> `Vec<…>::push`; a `<` that opens a qualified path
/// (`<T as Trait>::f`) is kept, its contents collapsed the same way.
fn collapse_generics(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let attached = i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':');
        let operator = out.ends_with("operator") || out.ends_with("operator<");
        if c == '<' && attached && !operator {
            if let Some(end) = matching_angle(&chars, i) {
                out.push_str("<…>");
                i = end;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `<Vec<…> as Extend<…>>::extend` -> `Vec<…>::extend`: the type, without the trait.
fn unqualify(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.first() != Some(&'<') {
        return name.to_string();
    }
    let Some(end) = matching_angle(&chars, 0) else {
        return name.to_string();
    };
    let inner: String = chars[1..end - 1].iter().collect();
    let rest: String = chars[end..].iter().collect();
    // The " as " at the top level of the brackets.
    let mut depth = 0i32;
    let mut cut = None;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => {
                cut = Some(i);
                break;
            }
            _ => {}
        }
    }
    match cut {
        Some(i) if rest.starts_with("::") => format!("{}{rest}", &inner[..i]),
        _ => name.to_string(),
    }
}

/// `ns::f(std::string const&, int) const` -> `ns::f(…) const`.
fn collapse_params(name: &str) -> String {
    let Some(open) = top_level_paren(name) else {
        return name.to_string();
    };
    let rest = &name[open..];
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if i == 1 {
                        return name.to_string();
                    }
                    return format!("{}(…){}", &name[..open], &rest[i + 1..]);
                }
            }
            _ => {}
        }
    }
    name.to_string()
}

/// Byte offset of the first `(` outside angle brackets that follows an identifier.
fn top_level_paren(name: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut prev = ' ';
    for (i, c) in name.char_indices() {
        let operator = in_operator_name(&name[..i]);
        match c {
            '<' | '>' if operator => {}
            '<' => depth += 1,
            '>' if prev != '-' => depth -= 1,
            '(' if depth <= 0 && (is_ident(prev) || prev == '>' || operator) => return Some(i),
            _ => {}
        }
        prev = c;
    }
    None
}

/// True when `head` ends inside a C++ operator name such as `operator<<`.
fn in_operator_name(head: &str) -> bool {
    match head.rfind("operator") {
        Some(at) => {
            let rest = &head[at + "operator".len()..];
            rest.len() <= 2 && rest.chars().all(|c| "<>=!+-*/%^&|~".contains(c))
        }
        None => false,
    }
}

/// Every path keeps its last two segments; a module segment in front of a type is dropped too.
fn shorten_paths(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) || (i > 0 && is_ident(chars[i - 1])) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A path: segment (:: segment)*, where a segment is identifier characters with an
        // optional generic group.
        let mut segments: Vec<String> = Vec::new();
        loop {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            if i < chars.len() && chars[i] == '<' {
                if let Some(end) = matching_angle(&chars, i) {
                    i = end;
                }
            }
            segments.push(chars[start..i].iter().collect());
            let more = i + 2 < chars.len()
                && chars[i] == ':'
                && chars[i + 1] == ':'
                && is_ident(chars[i + 2]);
            if !more {
                break;
            }
            i += 2;
        }
        let n = segments.len();
        let keep = if n >= 2 {
            let type_after_module = segments[n - 2].starts_with(|c: char| c.is_lowercase())
                && segments[n - 1].starts_with(|c: char| c.is_uppercase());
            if type_after_module {
                1
            } else {
                2
            }
        } else {
            n
        };
        out.push_str(&segments[n - keep..].join("::"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_untouched() {
        assert_eq!(shorten("main", 10), "main");
        assert!(matches!(shorten("main", 4), Cow::Borrowed(_)));
    }

    #[test]
    fn generics_collapse_first() {
        let name = "alloc::vec::Vec<core::option::Option<u8>>::push";
        assert_eq!(shorten(name, 30), "alloc::vec::Vec<…>::push");
    }

    #[test]
    fn qualified_paths_keep_their_shape() {
        let name = "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop";
        assert_eq!(
            shorten(name, 52),
            "<alloc::vec::Vec<…> as core::ops::drop::Drop>::drop"
        );
        assert_eq!(shorten(name, 30), "<Vec<…> as Drop>::drop");
        assert_eq!(shorten(name, 20), "Vec<…>::drop");
        assert_eq!(shorten(name, 10), "Vec::drop");
        let stage = "app::pipeline::Stage<app::codec::Decoder<std::fs::File>>::process_batch";
        assert_eq!(shorten(stage, 21), "Stage::process_batch");
    }

    #[test]
    fn paths_keep_two_segments() {
        let name = "rprof_report::aggregate::Table::new::{{closure}}";
        assert_eq!(shorten(name, 30), "new::{{closure}}");
        assert_eq!(
            shorten("std::sys::pal::unix::thread::Thread::new::thread_start", 40),
            "new::thread_start"
        );
        assert_eq!(
            shorten(
                "core::ptr::drop_in_place<std::collections::HashMap<u32,u64>>",
                25
            ),
            "ptr::drop_in_place<…>"
        );
    }

    #[test]
    fn cpp_parameters_collapse() {
        let name = "std::vector<int, std::allocator<int> >::push_back(int const&)";
        assert_eq!(shorten(name, 40), "std::vector<…>::push_back(int const&)");
        assert_eq!(shorten(name, 30), "std::vector<…>::push_back(…)");
        assert_eq!(
            shorten("operator<<(std::ostream&, Foo const&)", 20),
            "operator<<(…)"
        );
    }

    #[test]
    fn last_resort_cuts_the_start() {
        let s = shorten("a_very_long_function_name_without_any_structure", 12);
        assert_eq!(s.chars().count(), 12);
        assert_eq!(s, "…y_structure");
        assert_eq!(shorten("abcdef", 0), "");
    }

    #[test]
    fn unbalanced_brackets_do_not_panic() {
        for name in ["f<<<", "g>>(", "x<y", "a::<::b", "->>", "(((", "::::"] {
            let s = shorten(name, 2);
            assert!(s.chars().count() <= 2, "{name} -> {s}");
        }
    }
}
