//! JIT symbols from perf map files (`/tmp/perf-PID.map`), as written by V8, the JVM agents,
//! LuaJIT, .NET and others: one `START SIZE NAME` line per function, hex numbers.

use std::path::Path;

use rprof_fs::read::{read_bounded, Options, PERF_MAP_LIMIT};

use crate::demangle::demangle;
use crate::status::{ModuleProblem, ModuleStatus};
use crate::{Location, SymFrame};

#[derive(Debug)]
struct Entry {
    start: u64,
    end: u64,
    name: Box<str>,
}

/// The entries of one perf map, sorted by start address.
#[derive(Debug)]
pub(crate) struct JitMap {
    entries: Vec<Entry>,
    status: ModuleStatus,
}

/// How many earlier entries are tried when the nearest one does not contain the address.
const OVERLAP_LOOKBACK: usize = 8;

impl JitMap {
    /// Reads and parses the perf map at `path`. Any local user can create a file in `/tmp`, so
    /// the map is read only when it is a regular file (not a FIFO, a device or a symbolic link)
    /// of at most [`PERF_MAP_LIMIT`] bytes owned by one of `owners`; otherwise the map is empty
    /// and its status says why.
    pub(crate) fn load(path: &Path, owners: &[u32]) -> JitMap {
        let options = Options::new("a perf map", PERF_MAP_LIMIT)
            .no_follow()
            .owned_by(owners);
        match read_bounded(path, &options) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) => JitMap {
                entries: Vec::new(),
                status: ModuleStatus {
                    problem: Some(ModuleProblem::from_read(&e)),
                    ..ModuleStatus::default()
                },
            },
        }
    }

    /// Parses perf map text. Malformed lines are skipped. When code is re-JITted at the same
    /// start address, the later line wins.
    pub(crate) fn parse(text: &str) -> JitMap {
        let mut entries = Vec::new();
        for line in text.lines() {
            let Some((start, rest)) = line.trim_start().split_once(' ') else {
                continue;
            };
            let Some((size, name)) = rest.trim_start().split_once(' ') else {
                continue;
            };
            let (Some(start), Some(size)) = (parse_hex(start), parse_hex(size)) else {
                continue;
            };
            let name = name.trim();
            if size == 0 || name.is_empty() {
                continue;
            }
            entries.push(Entry {
                start,
                end: start.saturating_add(size),
                name: name.into(),
            });
        }
        // Stable sort keeps file order among equal starts; keep the last of each.
        entries.sort_by_key(|e| e.start);
        let mut deduped: Vec<Entry> = Vec::with_capacity(entries.len());
        for e in entries {
            match deduped.last_mut() {
                Some(last) if last.start == e.start => *last = e,
                _ => deduped.push(e),
            }
        }
        JitMap {
            status: ModuleStatus {
                symbol_count: deduped.len(),
                ..ModuleStatus::default()
            },
            entries: deduped,
        }
    }

    pub(crate) fn locate(&self, addr: u64) -> Location {
        let idx = self.entries.partition_point(|e| e.start <= addr);
        let found = self.entries[..idx]
            .iter()
            .rev()
            .take(OVERLAP_LOOKBACK)
            .find(|e| addr < e.end);
        let frames = found
            .map(|e| SymFrame {
                function: Some(demangle(&e.name)),
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

/// Who may own `/tmp/perf-PID.map` for it to be read: root and the user rprof runs as (perf's
/// rule), and the owner of process `pid` while it runs (a JIT writes its own map; under
/// `sudo rprof record -p PID` that is another user). A map of anyone else may have been planted.
pub(crate) fn trusted_owners(pid: u32) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut owners = vec![0, rprof_fs::read::effective_uid()];
    if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}")) {
        owners.push(meta.uid());
    }
    owners.sort_unstable();
    owners.dedup();
    owners
}

fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(m: &JitMap, addr: u64) -> Option<String> {
        m.locate(addr)
            .frames
            .first()
            .and_then(|f| f.function.clone())
    }

    #[test]
    fn parses_and_looks_up() {
        let m = JitMap::parse(
            "7f0000001000 40 LazyCompile:*fib /app/x.js:3\n\
             0x7f0000002000 0x20 stub with  spaces\n\
             not a line\n\
             7f0000003000 zz bad size\n\
             7f0000004000 0 empty\n\
             7f0000001000 80 LazyCompile:*fib /app/x.js:3 (reoptimized)\n\
             7f0000005000 10 _ZN3foo3bar17h05af221e174051e9E\n",
        );
        assert_eq!(m.status().symbol_count, 3);
        assert_eq!(name(&m, 0x7f0000000fff), None);
        assert_eq!(
            name(&m, 0x7f0000001050),
            Some("LazyCompile:*fib /app/x.js:3 (reoptimized)".into())
        );
        assert_eq!(name(&m, 0x7f0000001080), None);
        assert_eq!(name(&m, 0x7f000000201f), Some("stub with  spaces".into()));
        assert_eq!(name(&m, 0x7f0000002020), None);
        assert_eq!(name(&m, 0x7f0000004000), None);
        assert_eq!(name(&m, 0x7f0000005008), Some("foo::bar".into()));
    }

    #[test]
    fn missing_map() {
        let m = JitMap::load(Path::new("/nonexistent/perf-1.map"), &[0]);
        assert!(matches!(
            m.status().problem,
            Some(ModuleProblem::NotFound { .. })
        ));
        assert!(m.locate(0x1000).frames.is_empty());
    }
}
