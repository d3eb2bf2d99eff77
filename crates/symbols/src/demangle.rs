//! Demangling of Rust (legacy and v0) and C++ (Itanium ABI) symbol names.

use std::fmt;

/// Mangled names longer than this are returned unchanged: real ones are far shorter, and the
/// demanglers' cost grows with the input.
const MAX_MANGLED_LEN: usize = 64 * 1024;
/// Demangled output is cut off (and the mangled name returned) past this size: back-references
/// in Itanium names can make the output grow exponentially with the input.
const MAX_DEMANGLED_LEN: usize = 16 * 1024;
/// Nesting limit for the C++ parser and printer.
const CPP_RECURSION_LIMIT: u32 = 192;

/// Demangles a Rust (legacy `_ZN…17h<hash>E` or v0 `_R…`) or C++ (`_Z…`) symbol name.
///
/// Rust names are printed without their hash suffix (`core::ptr::drop_in_place<T>`, not
/// `…::h0123456789abcdef`). Compiler suffixes such as `.llvm.123` or `.cold` are kept
/// where the demangler understands them. A name that is not mangled, or that fails to
/// demangle, is returned unchanged.
pub fn demangle(name: &str) -> String {
    try_demangle(name).unwrap_or_else(|| name.to_owned())
}

fn try_demangle(name: &str) -> Option<String> {
    if name.len() > MAX_MANGLED_LEN {
        return None;
    }
    // Rust first: legacy Rust names are also valid Itanium names, and the C++ demangler would
    // print the hash. rustc-demangle accepts `_ZN`, `ZN`, `__ZN` (legacy) and `_R` (v0).
    if looks_rust(name) {
        if let Ok(d) = rustc_demangle::try_demangle(name) {
            let mut out = Bounded::default();
            if fmt::write(&mut out, format_args!("{d:#}")).is_ok() {
                return Some(out.buf);
            }
        }
    }
    if name.starts_with("_Z") || name.starts_with("__Z") {
        return demangle_cpp(name);
    }
    None
}

fn looks_rust(name: &str) -> bool {
    let bare = name.strip_prefix("__").or_else(|| name.strip_prefix('_'));
    match bare {
        Some(rest) => rest.starts_with("ZN") || rest.starts_with('R'),
        None => name.starts_with("ZN"),
    }
}

fn demangle_cpp(name: &str) -> Option<String> {
    let raw = name
        .strip_prefix('_')
        .filter(|r| r.starts_with("_Z"))
        .unwrap_or(name);
    let parse = cpp_demangle::ParseOptions::default().recursion_limit(CPP_RECURSION_LIMIT);
    let symbol = cpp_demangle::Symbol::new_with_options(raw.as_bytes(), &parse).ok()?;
    let options = cpp_demangle::DemangleOptions::new().recursion_limit(CPP_RECURSION_LIMIT);
    let mut out = Bounded::default();
    symbol.structured_demangle(&mut out, &options).ok()?;
    if out.buf.is_empty() {
        return None;
    }
    Some(out.buf)
}

/// A string sink that fails once it holds more than [`MAX_DEMANGLED_LEN`] bytes.
#[derive(Default)]
struct Bounded {
    buf: String,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.buf.len().saturating_add(s.len()) > MAX_DEMANGLED_LEN {
            return Err(fmt::Error);
        }
        self.buf.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_legacy_drops_hash() {
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h1a2b3c4d5e6f7a8bE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            demangle("_ZN3std2rt10lang_start28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE"),
            "std::rt::lang_start::{{closure}}"
        );
    }

    #[test]
    fn rust_legacy_with_llvm_suffix() {
        assert_eq!(
            demangle("_ZN3foo3bar17h05af221e174051e9E.llvm.12345"),
            "foo::bar"
        );
    }

    #[test]
    fn rust_v0() {
        // From the v0 mangling RFC examples: `<mycrate::Foo<u32>>::bar` style paths.
        assert_eq!(
            demangle("_RNvCs15kBYyAo9fc_7mycrate7example"),
            "mycrate::example"
        );
        assert_eq!(
            demangle("_RNvMCs4fqI2P2rA04_7mycrateINtB2_3FoopE3bar"),
            "<mycrate::Foo<_>>::bar"
        );
        // Generic arguments stay, the crate disambiguator does not.
        assert_eq!(
            demangle("_RINvCs4fqI2P2rA04_7mycrate4funcmEB2_"),
            "mycrate::func::<u32>"
        );
    }

    #[test]
    fn cpp() {
        assert_eq!(demangle("_ZN5space3fooEibc"), "space::foo(int, bool, char)");
        assert_eq!(
            demangle("_ZNSt6vectorIiSaIiEE9push_backERKi"),
            "std::vector<int, std::allocator<int> >::push_back(int const&)"
        );
        assert_eq!(demangle("_Z3addii"), "add(int, int)");
    }

    #[test]
    fn plain_names_unchanged() {
        for name in [
            "main",
            "hot_loop",
            "__libc_start_main",
            "_start",
            "Z",
            "_R",
            "_Z",
            "",
        ] {
            assert_eq!(demangle(name), name);
        }
    }

    #[test]
    fn malformed_mangled_names_unchanged() {
        for name in [
            "_ZN3foo",
            "_Zxyz",
            "_RNvC",
            "_ZN4core3ptr13drop_in_place17hE0",
        ] {
            assert_eq!(demangle(name), name, "{name}");
        }
    }

    #[test]
    fn pathological_inputs_are_bounded() {
        // Deeply nested template arguments: must return (unchanged or demangled), not hang or blow
        // the stack.
        let deep = format!("_Z1f{}i{}", "IS_".repeat(5000), "E".repeat(5000));
        let _ = demangle(&deep);
        // Substitution blow-up: every argument repeats all previous ones.
        let mut blowup = String::from("_Z1fI");
        blowup.push_str("A1_i");
        for i in 0..40 {
            blowup.push_str(&format!("S{i}_"));
        }
        blowup.push_str("EvT_");
        let out = demangle(&blowup);
        assert!(out.len() <= MAX_DEMANGLED_LEN.max(blowup.len()));
        let long = format!("_ZN{}E", "3foo".repeat(MAX_MANGLED_LEN));
        assert_eq!(demangle(&long), long);
    }
}
