//! A sorted table of code symbols: nearest preceding symbol, with a size check where sizes exist.

/// How well a symbol names its address when several share it; lower is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    /// 0 when the symbol has a size, 1 otherwise.
    pub no_size: u8,
    /// 0 global, 1 weak, 2 local.
    pub binding: u8,
    /// Leading underscores: `malloc` reads better than `__libc_malloc`.
    pub underscores: u8,
}

impl Rank {
    pub(crate) fn new(sized: bool, binding: u8, name: &str) -> Rank {
        let underscores = name.bytes().take_while(|&b| b == b'_').count();
        Rank {
            no_size: u8::from(!sized),
            binding,
            underscores: u8::try_from(underscores).unwrap_or(u8::MAX),
        }
    }
}

/// One symbol as collected from a table, before sorting.
#[derive(Clone, Debug)]
pub(crate) struct RawSymbol {
    pub addr: u64,
    /// 0 when the table gives no size.
    pub size: u64,
    /// Where the symbol's section (or region) ends; bounds symbols without a size.
    pub limit: u64,
    pub name: Box<str>,
    pub rank: Rank,
}

#[derive(Clone, Debug)]
struct Symbol {
    addr: u64,
    /// Exclusive end of the address range this symbol names.
    end: u64,
    name: Box<str>,
}

/// Code symbols sorted by address, one per address.
#[derive(Clone, Debug, Default)]
pub(crate) struct SymbolTable {
    symbols: Vec<Symbol>,
}

/// How many preceding symbols are tried when the nearest one ends before the address (a large
/// function can contain a smaller symbol, e.g. a local label exported as a function).
pub(crate) const CONTAINING_LOOKBACK: usize = 4;

impl SymbolTable {
    /// Sorts `raw`, keeps the best-ranked name per address, and bounds unsized symbols by the next
    /// symbol and their section's end.
    pub(crate) fn new(mut raw: Vec<RawSymbol>) -> SymbolTable {
        raw.retain(|s| s.addr != 0 && !s.name.is_empty());
        raw.sort_by(|a, b| (a.addr, a.rank, &a.name).cmp(&(b.addr, b.rank, &b.name)));
        raw.dedup_by(|later, first| later.addr == first.addr);
        // A symbol without a size inside a sized one is a label within that function (assembly
        // labels, local or not): it must not take the function's name over.
        let mut covered_until = 0u64;
        raw.retain(|s| {
            if s.size > 0 {
                covered_until = covered_until.max(s.addr.saturating_add(s.size));
                true
            } else {
                s.addr >= covered_until
            }
        });
        // Names are moved, not copied: a kernel's 100,000 names are held once (issue 13).
        let mut symbols: Vec<Symbol> = Vec::with_capacity(raw.len());
        let mut raw = raw.into_iter().peekable();
        while let Some(s) = raw.next() {
            let next = raw.peek().map_or(u64::MAX, |n| n.addr);
            let end = if s.size > 0 {
                s.addr.saturating_add(s.size)
            } else {
                next.min(s.limit)
            };
            symbols.push(Symbol {
                addr: s.addr,
                end: end.max(s.addr.saturating_add(1)),
                name: s.name,
            });
        }
        SymbolTable { symbols }
    }

    /// Every symbol as (start, end, name), by address.
    pub(crate) fn each(&self) -> impl Iterator<Item = (u64, u64, &str)> {
        self.symbols.iter().map(|s| (s.addr, s.end, &*s.name))
    }

    /// Number of symbols.
    pub(crate) fn len(&self) -> usize {
        self.symbols.len()
    }

    /// The raw (mangled) name of the symbol containing `addr`.
    pub(crate) fn lookup(&self, addr: u64) -> Option<&str> {
        self.containing(addr).map(|s| &*s.name)
    }

    /// The range `[start, end)` of the symbol containing `addr`.
    pub(crate) fn range_of(&self, addr: u64) -> Option<(u64, u64)> {
        self.containing(addr).map(|s| (s.addr, s.end))
    }

    fn containing(&self, addr: u64) -> Option<&Symbol> {
        let idx = self.symbols.partition_point(|s| s.addr <= addr);
        self.symbols[..idx]
            .iter()
            .rev()
            .take(CONTAINING_LOOKBACK)
            .find(|s| addr < s.end)
    }

    /// The starts and ends of symbols strictly inside `(lo, hi)`: where a lookup's answer may
    /// change in that range.
    pub(crate) fn change_points(&self, lo: u64, hi: u64) -> Vec<u64> {
        // Symbols are sorted by start; an end inside the range belongs to a symbol that starts
        // before `hi`.
        let until = self.symbols.partition_point(|s| s.addr < hi);
        self.symbols[..until]
            .iter()
            .flat_map(|s| [s.addr, s.end])
            .filter(|&a| lo < a && a < hi)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsized_labels_inside_sized_functions_are_dropped() {
        let t = SymbolTable::new(vec![
            sym(0x100, 0x40, u64::MAX, "func", 0),
            sym(0x120, 0, u64::MAX, "inner_label", 2),
            sym(0x140, 0, u64::MAX, "_start", 2),
            sym(0x148, 0, u64::MAX, "_dl_start_user", 2),
            sym(0x180, 0x10, u64::MAX, "next", 0),
        ]);
        assert_eq!(t.lookup(0x120), Some("func"));
        assert_eq!(t.lookup(0x13f), Some("func"));
        assert_eq!(t.lookup(0x140), Some("_start"));
        assert_eq!(t.lookup(0x14f), Some("_dl_start_user"));
        assert_eq!(t.lookup(0x17f), Some("_dl_start_user"));
        assert_eq!(t.lookup(0x180), Some("next"));
    }

    fn sym(addr: u64, size: u64, limit: u64, name: &str, binding: u8) -> RawSymbol {
        RawSymbol {
            addr,
            size,
            limit,
            name: name.into(),
            rank: Rank::new(size > 0, binding, name),
        }
    }

    #[test]
    fn nearest_preceding_with_size_check() {
        let t = SymbolTable::new(vec![
            sym(0x2000, 0x10, u64::MAX, "b", 0),
            sym(0x1000, 0x100, u64::MAX, "a", 0),
            sym(0x3000, 0, 0x3800, "c_unsized", 0),
            sym(0x4000, 0, u64::MAX, "d_unsized", 0),
            sym(0x4100, 0x8, u64::MAX, "e", 0),
        ]);
        assert_eq!(t.lookup(0xfff), None);
        assert_eq!(t.lookup(0x1000), Some("a"));
        assert_eq!(t.lookup(0x10ff), Some("a"));
        assert_eq!(t.lookup(0x1100), None, "past a's size");
        assert_eq!(t.lookup(0x200f), Some("b"));
        assert_eq!(t.lookup(0x2010), None);
        assert_eq!(t.lookup(0x37ff), Some("c_unsized"));
        assert_eq!(t.lookup(0x3800), None, "past the section end");
        assert_eq!(t.lookup(0x40ff), Some("d_unsized"), "up to the next symbol");
        assert_eq!(t.lookup(0x4107), Some("e"));
        assert_eq!(t.lookup(0x4108), None);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn aliases_prefer_sized_global_fewer_underscores() {
        let t = SymbolTable::new(vec![
            sym(0x1000, 0x40, u64::MAX, "__libc_malloc", 0),
            sym(0x1000, 0x40, u64::MAX, "malloc", 0),
            sym(0x1000, 0x40, u64::MAX, "malloc_local", 2),
            sym(0x1000, 0, u64::MAX, "a_label", 0),
        ]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(0x1010), Some("malloc"));
    }

    #[test]
    fn nested_symbol_falls_back_to_container() {
        let t = SymbolTable::new(vec![
            sym(0x1000, 0x1000, u64::MAX, "big", 0),
            sym(0x1100, 0x10, u64::MAX, "inner", 0),
        ]);
        assert_eq!(t.lookup(0x1105), Some("inner"));
        assert_eq!(t.lookup(0x1200), Some("big"));
    }

    #[test]
    fn empty_and_zero_address_symbols() {
        let t = SymbolTable::new(vec![
            sym(0, 0x10, u64::MAX, "null", 0),
            sym(0x10, 1, 0, "", 0),
        ]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(0x5), None);
        assert_eq!(SymbolTable::default().lookup(0), None);
    }
}
