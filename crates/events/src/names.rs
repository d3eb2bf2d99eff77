//! The tables of named events (hardware, software, hardware cache) and close-match suggestions.

use crate::EventKind;
use perf_event_open_sys::bindings::*;

/// Generic hardware events: (canonical name, aliases, config).
const HARDWARE: &[(&str, &[&str], u32)] = &[
    ("cycles", &["cpu-cycles"], PERF_COUNT_HW_CPU_CYCLES),
    ("instructions", &[], PERF_COUNT_HW_INSTRUCTIONS),
    ("cache-references", &[], PERF_COUNT_HW_CACHE_REFERENCES),
    ("cache-misses", &[], PERF_COUNT_HW_CACHE_MISSES),
    (
        "branches",
        &["branch-instructions"],
        PERF_COUNT_HW_BRANCH_INSTRUCTIONS,
    ),
    ("branch-misses", &[], PERF_COUNT_HW_BRANCH_MISSES),
    ("bus-cycles", &[], PERF_COUNT_HW_BUS_CYCLES),
    (
        "stalled-cycles-frontend",
        &["idle-cycles-frontend"],
        PERF_COUNT_HW_STALLED_CYCLES_FRONTEND,
    ),
    (
        "stalled-cycles-backend",
        &["idle-cycles-backend"],
        PERF_COUNT_HW_STALLED_CYCLES_BACKEND,
    ),
    ("ref-cycles", &[], PERF_COUNT_HW_REF_CPU_CYCLES),
];

/// Software events: (canonical name, aliases, config).
const SOFTWARE: &[(&str, &[&str], u32)] = &[
    ("cpu-clock", &[], PERF_COUNT_SW_CPU_CLOCK),
    ("task-clock", &[], PERF_COUNT_SW_TASK_CLOCK),
    ("page-faults", &["faults"], PERF_COUNT_SW_PAGE_FAULTS),
    ("context-switches", &["cs"], PERF_COUNT_SW_CONTEXT_SWITCHES),
    (
        "cpu-migrations",
        &["migrations"],
        PERF_COUNT_SW_CPU_MIGRATIONS,
    ),
    ("minor-faults", &[], PERF_COUNT_SW_PAGE_FAULTS_MIN),
    ("major-faults", &[], PERF_COUNT_SW_PAGE_FAULTS_MAJ),
    ("alignment-faults", &[], PERF_COUNT_SW_ALIGNMENT_FAULTS),
    ("emulation-faults", &[], PERF_COUNT_SW_EMULATION_FAULTS),
    ("dummy", &[], PERF_COUNT_SW_DUMMY),
    ("bpf-output", &[], PERF_COUNT_SW_BPF_OUTPUT),
    ("cgroup-switches", &[], PERF_COUNT_SW_CGROUP_SWITCHES),
];

/// Cache names: (canonical, aliases as perf's parser accepts them, id).
const CACHES: &[(&str, &[&str], u32)] = &[
    (
        "L1-dcache",
        &["l1-d", "l1d", "L1-data"],
        PERF_COUNT_HW_CACHE_L1D,
    ),
    (
        "L1-icache",
        &["l1-i", "l1i", "L1-instruction"],
        PERF_COUNT_HW_CACHE_L1I,
    ),
    ("LLC", &["L2"], PERF_COUNT_HW_CACHE_LL),
    ("dTLB", &["d-tlb", "Data-TLB"], PERF_COUNT_HW_CACHE_DTLB),
    (
        "iTLB",
        &["i-tlb", "Instruction-TLB"],
        PERF_COUNT_HW_CACHE_ITLB,
    ),
    (
        "branch",
        &["branches", "bpu", "btb", "bpc"],
        PERF_COUNT_HW_CACHE_BPU,
    ),
    ("node", &[], PERF_COUNT_HW_CACHE_NODE),
];

/// Cache operations: (plural, singular, aliases, id).
const OPS: &[(&str, &str, &[&str], u32)] = &[
    ("loads", "load", &["read"], PERF_COUNT_HW_CACHE_OP_READ),
    ("stores", "store", &["write"], PERF_COUNT_HW_CACHE_OP_WRITE),
    (
        "prefetches",
        "prefetch",
        &["speculative-read", "speculative-load"],
        PERF_COUNT_HW_CACHE_OP_PREFETCH,
    ),
];

/// Looks up a named (not raw, not tracepoint) event, without modifier.
/// Returns (kind, type, config, canonical name).
pub(crate) fn lookup(word: &str) -> Option<(EventKind, u32, u64, String)> {
    for (name, aliases, config) in HARDWARE {
        if word == *name || aliases.contains(&word) {
            return Some((
                EventKind::Hardware,
                PERF_TYPE_HARDWARE,
                u64::from(*config),
                (*name).to_string(),
            ));
        }
    }
    for (name, aliases, config) in SOFTWARE {
        if word == *name || aliases.contains(&word) {
            return Some((
                EventKind::Software,
                PERF_TYPE_SOFTWARE,
                u64::from(*config),
                (*name).to_string(),
            ));
        }
    }
    lookup_cache(word)
        .map(|(config, name)| (EventKind::HardwareCache, PERF_TYPE_HW_CACHE, config, name))
}

/// `CACHE-OP` (accesses) or `CACHE-OP-misses` / `CACHE-OP-miss`, case-insensitive, with perf's
/// alternative spellings for the cache and the operation. Also accepts perf's explicit
/// `-refs`/`-access`/`-ops` result suffix for accesses.
fn lookup_cache(word: &str) -> Option<(u64, String)> {
    let lower = word.to_ascii_lowercase();
    for (cache, cache_aliases, cache_id) in CACHES {
        let Some(rest) = std::iter::once(*cache)
            .chain(cache_aliases.iter().copied())
            .find_map(|c| strip_prefix_ci(&lower, c).and_then(|r| r.strip_prefix('-')))
        else {
            continue;
        };
        for (plural, singular, op_aliases, op_id) in OPS {
            let forms = [*plural, *singular]
                .into_iter()
                .chain(op_aliases.iter().copied());
            for form in forms {
                let Some(result) = rest.strip_prefix(form) else {
                    continue;
                };
                let miss = match result {
                    "" | "-refs" | "-reference" | "-references" | "-ops" | "-access"
                    | "-accesses" => false,
                    "-misses" | "-miss" => true,
                    _ => continue,
                };
                let config = u64::from(*cache_id)
                    | (u64::from(*op_id) << 8)
                    | (u64::from(if miss {
                        PERF_COUNT_HW_CACHE_RESULT_MISS
                    } else {
                        PERF_COUNT_HW_CACHE_RESULT_ACCESS
                    }) << 16);
                let name = if miss {
                    format!("{cache}-{singular}-misses")
                } else {
                    format!("{cache}-{plural}")
                };
                return Some((config, name));
            }
        }
    }
    None
}

fn strip_prefix_ci<'a>(lower: &'a str, prefix: &str) -> Option<&'a str> {
    let p = prefix.to_ascii_lowercase();
    lower.strip_prefix(p.as_str())
}

/// Every canonical event name rprof knows without looking at tracefs, with its kind:
/// hardware, software, then the hardware cache events in perf's spelling.
pub fn known_names() -> Vec<(String, EventKind)> {
    let mut out = Vec::new();
    for (name, _, _) in HARDWARE {
        out.push(((*name).to_string(), EventKind::Hardware));
    }
    for (name, _, _) in SOFTWARE {
        out.push(((*name).to_string(), EventKind::Software));
    }
    for (cache, _, _) in CACHES {
        for (plural, singular, _, _) in OPS {
            out.push((format!("{cache}-{plural}"), EventKind::HardwareCache));
            out.push((
                format!("{cache}-{singular}-misses"),
                EventKind::HardwareCache,
            ));
        }
    }
    out
}

/// All names (canonical and aliases) that suggestions are chosen from.
fn candidate_names() -> Vec<String> {
    let mut out: Vec<String> = known_names().into_iter().map(|(n, _)| n).collect();
    for (_, aliases, _) in HARDWARE.iter().chain(SOFTWARE) {
        out.extend(aliases.iter().map(|a| (*a).to_string()));
    }
    out
}

/// Up to three known event names close to `word` (edit distance, case-insensitive), best first.
pub fn suggest(word: &str) -> Vec<String> {
    rank(word, candidate_names())
}

/// Up to three of `candidates` close to `word`, best first.
pub(crate) fn rank(word: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let w = word.to_ascii_lowercase();
    if w.is_empty() {
        return Vec::new();
    }
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lc = c.to_ascii_lowercase();
            let d = levenshtein(&w, &lc);
            // Close enough: at most a third of the longer name differs, or one is a prefix of
            // the other (`context` -> `context-switches`).
            let limit = (w.len().max(lc.len()) / 3).max(1);
            let prefix = w.len() >= 3 && (lc.starts_with(&w) || w.starts_with(&lc));
            (d <= limit || prefix).then_some((if prefix { d.min(limit) } else { d }, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }

    #[test]
    fn every_known_name_parses_to_itself() {
        for (name, kind) in known_names() {
            let e = crate::parse(&name).unwrap();
            assert_eq!(e.name, name);
            assert_eq!(e.kind, kind);
        }
        assert_eq!(known_names().len(), 10 + 12 + 7 * 3 * 2);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("instrucions"), ["instructions"]);
        assert!(suggest("page-fault").contains(&"page-faults".to_string()));
        assert!(suggest("LLC-load-mises").contains(&"LLC-load-misses".to_string()));
        assert!(suggest("").is_empty());
        assert!(suggest("qqqqqqqqqqqq").is_empty());
    }
}
