//! Kernel symbols from `/proc/kallsyms`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rprof_fs::read::{open_regular, Options, ReadError, KALLSYMS_LIMIT};

use crate::status::{ModuleProblem, ModuleStatus};
use crate::symtab::{Rank, RawSymbol, SymbolTable};
use crate::{CacheDir, Location, SymFrame};

mod cached;

/// How far past the last symbol an address is still attributed to it (kallsyms gives no sizes;
/// the last entry of a region has no next symbol to bound it).
const LAST_SYMBOL_SPAN: u64 = 64 * 1024;

/// The kernel's text symbols, sorted once.
#[derive(Debug)]
pub(crate) struct KernelSymbols {
    table: SymbolTable,
    status: ModuleStatus,
    /// Set when the table came from a [`CacheDir`]: it answers for these ranges only, and
    /// any other address makes the symbol file be read whole.
    kept: Option<Kept>,
}

/// A cached table, the ranges it answers for, and the symbol file to read for the rest.
#[derive(Debug)]
struct Kept {
    table: cached::Table,
    ranges: Vec<(u64, u64)>,
    kallsyms: PathBuf,
}

impl KernelSymbols {
    /// The kernel's text symbols: from `cache` when it holds this boot's (see [`CacheDir`]),
    /// else from the kallsyms file at `path`, which then refreshes `cache`.
    pub(crate) fn load(path: &Path, cache: Option<&CacheDir>) -> KernelSymbols {
        let Some(cache) = cache else {
            return KernelSymbols::read(path).0;
        };
        if let Some((table, ranges)) = cached::read(cache, path) {
            return KernelSymbols {
                status: ModuleStatus {
                    symbol_count: table.len(),
                    ..ModuleStatus::default()
                },
                table: SymbolTable::default(),
                kept: Some(Kept {
                    table,
                    ranges,
                    kallsyms: path.to_path_buf(),
                }),
            };
        }
        let (symbols, ranges) = KernelSymbols::read(path);
        if symbols.status.problem.is_none() && !ranges.is_empty() {
            // Best effort: without the file, the next run reads the symbol file again.
            let _ = cached::write(cache, path, &symbols.table, &ranges);
        }
        symbols
    }

    /// Reads and parses a kallsyms file (a regular file of at most [`KALLSYMS_LIMIT`] bytes); a
    /// missing, unreadable or refused file gives an empty table. The file is read a line at a
    /// time: its text (5 MB and more) is never held whole, only the text symbols it names.
    /// Also returns the ranges of the kernel's own text (see [`Parser::core_ranges`]).
    fn read(path: &Path) -> (KernelSymbols, Vec<(u64, u64)>) {
        let options = Options::new("a kernel symbol list", KALLSYMS_LIMIT);
        let failed = |e: ReadError| {
            let symbols = KernelSymbols {
                table: SymbolTable::default(),
                status: ModuleStatus {
                    problem: Some(ModuleProblem::from_read(&e)),
                    ..ModuleStatus::default()
                },
                kept: None,
            };
            (symbols, Vec::new())
        };
        let file = match open_regular(path, &options) {
            Ok((file, _)) => file,
            Err(e) => return failed(e),
        };
        let mut input =
            BufReader::with_capacity(1 << 16, file.take(KALLSYMS_LIMIT.saturating_add(1)));
        let mut parser = Parser::default();
        let mut line = Vec::new();
        let mut read = 0u64;
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(n) => read += n as u64,
                Err(source) => {
                    return failed(ReadError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
            parser.line(&String::from_utf8_lossy(&line));
        }
        if read > KALLSYMS_LIMIT {
            return failed(ReadError::TooLarge {
                path: path.to_path_buf(),
                size: read,
                limit: KALLSYMS_LIMIT,
                what: "a kernel symbol list".to_string(),
            });
        }
        let ranges = parser.core_ranges();
        (parser.finish(), ranges)
    }

    /// Parses kallsyms text: `ADDRESS TYPE NAME [MODULE]` per line. Only text symbols are kept;
    /// the module name stays in brackets after the function name.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> KernelSymbols {
        let mut parser = Parser::default();
        for line in text.lines() {
            parser.line(line);
        }
        parser.finish()
    }

    pub(crate) fn locate(&mut self, addr: u64) -> Location {
        if let Some(kept) = &self.kept {
            if !kept
                .ranges
                .iter()
                .any(|&(start, end)| (start..end).contains(&addr))
            {
                let path = kept.kallsyms.clone();
                *self = KernelSymbols::read(&path).0;
            }
        }
        let found = match &self.kept {
            Some(kept) => kept.table.lookup(addr),
            None => self.table.lookup(addr),
        };
        let frames = found
            .map(|name| SymFrame {
                function: Some(name.to_owned()),
                file: None,
                line: None,
                inlined: false,
            })
            .into_iter()
            .collect();
        Location { frames }
    }

    pub(crate) fn status(&self) -> &ModuleStatus {
        &self.status
    }
}

/// The text symbols of kallsyms, a line at a time.
#[derive(Default)]
struct Parser {
    raw: Vec<RawSymbol>,
    lines: usize,
    nonzero: bool,
    /// Where `_stext`, `_etext`, `_sinittext` and `_einittext` are.
    markers: [Option<u64>; 4],
}

/// The symbols that bound the kernel's own text, in [`Parser::markers`] order.
const MARKERS: [&str; 4] = ["_stext", "_etext", "_sinittext", "_einittext"];

impl Parser {
    /// One line: `ADDRESS TYPE NAME [MODULE]`.
    fn line(&mut self, line: &str) {
        let mut fields = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            return;
        };
        self.lines += 1;
        self.nonzero |= addr != 0;
        if let Some(i) = MARKERS.iter().position(|&m| m == name) {
            if fields.clone().next().is_none() {
                self.markers[i] = Some(addr);
            }
        }
        let binding = match kind {
            "T" => 0,
            "W" | "w" => 1,
            "t" => 2,
            _ => return,
        };
        // Rust code in the kernel has v0-mangled names.
        let shown = crate::demangle::demangle(name);
        let full: Box<str> = match fields.next() {
            Some(module) if module.starts_with('[') => format!("{shown} {module}").into(),
            _ => shown.into(),
        };
        self.raw.push(RawSymbol {
            addr,
            size: 0,
            limit: addr.saturating_add(LAST_SYMBOL_SPAN),
            rank: Rank::new(false, binding, name),
            name: full,
        });
    }

    /// The kernel's own text: `_stext`..`_etext` and `_sinittext`..`_einittext`, where both
    /// ends were seen in order (symbols there do not change until the next boot; modules, BPF
    /// programs and trampolines lie elsewhere and may).
    fn core_ranges(&self) -> Vec<(u64, u64)> {
        if !self.nonzero {
            return Vec::new();
        }
        let [stext, etext, sinit, einit] = self.markers;
        [(stext, etext), (sinit, einit)]
            .into_iter()
            .filter_map(|(start, end)| Some((start?, end?)))
            .filter(|(start, end)| start < end)
            .collect()
    }

    fn finish(self) -> KernelSymbols {
        let hidden = self.lines > 0 && !self.nonzero;
        let table = if hidden {
            SymbolTable::default()
        } else {
            SymbolTable::new(self.raw)
        };
        KernelSymbols {
            status: ModuleStatus {
                symbol_count: table.len(),
                problem: hidden.then_some(ModuleProblem::KernelAddressesHidden),
                ..ModuleStatus::default()
            },
            table,
            kept: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(k: &mut KernelSymbols, addr: u64) -> Option<String> {
        k.locate(addr)
            .frames
            .first()
            .and_then(|f| f.function.clone())
    }

    #[test]
    fn parses_text_symbols_and_modules() {
        let mut k = KernelSymbols::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81000000 T _text\n\
             ffffffff81000100 t __pfx_do_thing\n\
             ffffffff81000110 t do_thing\n\
             ffffffff81000200 D some_data\n\
             ffffffff81000300 T schedule\n\
             garbage line\n\
             ffffffffc0000000 t ext4_read\t[ext4]\n\
             ffffffffc0000080 T ext4_write\t[ext4]\n\
             ffffffffc0001000 t _RNvCs15kBYyAo9fc_7mycrate7example\t[rust_mod]\n",
        );
        assert_eq!(
            name(&mut k, 0xffffffff81000000),
            Some("_stext".into()),
            "ties: name order"
        );
        assert_eq!(
            name(&mut k, 0xffffffff81000108),
            Some("__pfx_do_thing".into())
        );
        assert_eq!(
            name(&mut k, 0xffffffff81000250),
            Some("do_thing".into()),
            "data symbols skipped"
        );
        assert_eq!(name(&mut k, 0xffffffff81000301), Some("schedule".into()));
        assert_eq!(
            name(&mut k, 0xffffffffc0000010),
            Some("ext4_read [ext4]".into())
        );
        assert_eq!(
            name(&mut k, 0xffffffffc0000090),
            Some("ext4_write [ext4]".into())
        );
        assert_eq!(
            name(&mut k, 0xffffffffc0001001),
            Some("mycrate::example [rust_mod]".into())
        );
        assert_eq!(name(&mut k, 0xffffffffc0001000 + LAST_SYMBOL_SPAN), None);
        assert_eq!(name(&mut k, 0xffffffff80000000), None);
        assert_eq!(k.status().problem, None);
        assert_eq!(k.status().symbol_count, 7);
    }

    #[test]
    fn hidden_addresses_give_nothing() {
        let mut k = KernelSymbols::parse(
            "0000000000000000 T _stext\n0000000000000000 T schedule\n0000000000000000 t x [m]\n",
        );
        assert_eq!(
            k.status().problem,
            Some(ModuleProblem::KernelAddressesHidden)
        );
        assert!(k.locate(0).frames.is_empty());
        assert!(k.locate(0x10).frames.is_empty());
    }

    /// Issue 13: the kernel's own text comes from the cache while the boot lasts; an address
    /// elsewhere (a module) reads the symbol file whole, as without a cache.
    #[test]
    fn the_core_text_comes_from_the_cache_and_the_rest_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let kallsyms = dir.path().join("kallsyms");
        let text = |suffix: &str| {
            format!(
                "ffffffff81000000 T _stext\n\
                 ffffffff81000100 T schedule{suffix}\n\
                 ffffffff81000200 D some_data\n\
                 ffffffff82000000 T _etext\n\
                 ffffffffc0000000 t ext4_read{suffix}\t[ext4]\n"
            )
        };
        std::fs::write(&kallsyms, text("")).unwrap();
        let cache = CacheDir {
            dir: dir.path().to_path_buf(),
            tag: "this rprof".into(),
        };
        let mut first = KernelSymbols::load(&kallsyms, Some(&cache));
        assert!(first.kept.is_none());
        assert_eq!(
            name(&mut first, 0xffffffff81000150),
            Some("schedule".into())
        );
        assert!(
            dir.path().join("kernel-symbols").is_file(),
            "written after the symbol file was read"
        );

        std::fs::write(&kallsyms, text("2")).unwrap();
        let mut second = KernelSymbols::load(&kallsyms, Some(&cache));
        assert!(second.kept.is_some(), "read from the cache");
        assert_eq!(
            name(&mut second, 0xffffffff81000150),
            Some("schedule".into())
        );
        assert_eq!(
            name(&mut second, 0xffffffffc0000010),
            Some("ext4_read2 [ext4]".into()),
            "outside the kernel's own text: the file is read"
        );
        assert!(second.kept.is_none());
        assert_eq!(
            name(&mut second, 0xffffffff81000150),
            Some("schedule2".into())
        );

        let other = CacheDir {
            tag: "another rprof".into(),
            ..cache.clone()
        };
        let mut third = KernelSymbols::load(&kallsyms, Some(&other));
        assert!(third.kept.is_none(), "another writer's file is not used");
        assert_eq!(
            name(&mut third, 0xffffffff81000150),
            Some("schedule2".into())
        );
    }

    #[test]
    fn missing_file() {
        let mut k = KernelSymbols::load(Path::new("/nonexistent/kallsyms"), None);
        assert!(matches!(
            k.status().problem,
            Some(ModuleProblem::NotFound { .. })
        ));
        assert!(k.locate(0xffffffff81000000).frames.is_empty());
    }
}
