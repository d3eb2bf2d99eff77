//! Kernel symbols from `/proc/kallsyms`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rprof_fs::read::{open_regular, Options, ReadError, KALLSYMS_LIMIT};

use crate::status::{ModuleProblem, ModuleStatus};
use crate::symtab::{Rank, RawSymbol, SymbolTable};
use crate::{Location, SymFrame};

/// How far past the last symbol an address is still attributed to it (kallsyms gives no sizes;
/// the last entry of a region has no next symbol to bound it).
const LAST_SYMBOL_SPAN: u64 = 64 * 1024;

/// The kernel's text symbols, sorted once.
#[derive(Debug)]
pub(crate) struct KernelSymbols {
    table: SymbolTable,
    status: ModuleStatus,
}

impl KernelSymbols {
    /// Reads and parses a kallsyms file (a regular file of at most [`KALLSYMS_LIMIT`] bytes); a
    /// missing, unreadable or refused file gives an empty table. The file is read a line at a
    /// time: its text (5 MB and more) is never held whole, only the text symbols it names.
    pub(crate) fn load(path: &Path) -> KernelSymbols {
        let options = Options::new("a kernel symbol list", KALLSYMS_LIMIT);
        let failed = |e: ReadError| KernelSymbols {
            table: SymbolTable::default(),
            status: ModuleStatus {
                problem: Some(ModuleProblem::from_read(&e)),
                ..ModuleStatus::default()
            },
        };
        let file = match open_regular(path, &options) {
            Ok((file, _)) => file,
            Err(e) => return failed(e),
        };
        let mut input = BufReader::new(file.take(KALLSYMS_LIMIT.saturating_add(1)));
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
        parser.finish()
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

    pub(crate) fn locate(&self, addr: u64) -> Location {
        let frames = self
            .table
            .lookup(addr)
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
}

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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(k: &KernelSymbols, addr: u64) -> Option<String> {
        k.locate(addr)
            .frames
            .first()
            .and_then(|f| f.function.clone())
    }

    #[test]
    fn parses_text_symbols_and_modules() {
        let k = KernelSymbols::parse(
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
            name(&k, 0xffffffff81000000),
            Some("_stext".into()),
            "ties: name order"
        );
        assert_eq!(name(&k, 0xffffffff81000108), Some("__pfx_do_thing".into()));
        assert_eq!(
            name(&k, 0xffffffff81000250),
            Some("do_thing".into()),
            "data symbols skipped"
        );
        assert_eq!(name(&k, 0xffffffff81000301), Some("schedule".into()));
        assert_eq!(
            name(&k, 0xffffffffc0000010),
            Some("ext4_read [ext4]".into())
        );
        assert_eq!(
            name(&k, 0xffffffffc0000090),
            Some("ext4_write [ext4]".into())
        );
        assert_eq!(
            name(&k, 0xffffffffc0001001),
            Some("mycrate::example [rust_mod]".into())
        );
        assert_eq!(name(&k, 0xffffffffc0001000 + LAST_SYMBOL_SPAN), None);
        assert_eq!(name(&k, 0xffffffff80000000), None);
        assert_eq!(k.status().problem, None);
        assert_eq!(k.status().symbol_count, 7);
    }

    #[test]
    fn hidden_addresses_give_nothing() {
        let k = KernelSymbols::parse(
            "0000000000000000 T _stext\n0000000000000000 T schedule\n0000000000000000 t x [m]\n",
        );
        assert_eq!(
            k.status().problem,
            Some(ModuleProblem::KernelAddressesHidden)
        );
        assert!(k.locate(0).frames.is_empty());
        assert!(k.locate(0x10).frames.is_empty());
    }

    #[test]
    fn missing_file() {
        let k = KernelSymbols::load(Path::new("/nonexistent/kallsyms"));
        assert!(matches!(
            k.status().problem,
            Some(ModuleProblem::NotFound { .. })
        ));
        assert!(k.locate(0xffffffff81000000).frames.is_empty());
    }
}
