//! Memory mappings as the kernel reports them (MMAP2 records, `/proc/PID/maps`) and what kind of
//! module a mapping's name stands for.

/// One memory mapping of a process, as an MMAP2 record or a `/proc/PID/maps` line describes it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Mapping {
    /// First address of the mapping (inclusive), in the process.
    pub start: u64,
    /// End of the mapping (exclusive), in the process.
    pub end: u64,
    /// Offset in the mapped file of the byte mapped at `start`.
    pub pgoff: u64,
    /// The file name as the kernel reports it: a path, `[vdso]`, `//anon`, `[heap]`, an empty
    /// string for anonymous memory, or a path followed by ` (deleted)`.
    pub path: String,
    /// The GNU build id of the mapped file, when the kernel reported it.
    pub build_id: Option<Vec<u8>>,
    /// The inode of the mapped file (0 when unknown), used to detect a file replaced on disk.
    pub inode: u64,
    /// Whether the mapping is executable. Only executable mappings hold code; the others only
    /// unmap whatever executable mapping they cover.
    pub executable: bool,
}

/// What a mapping's name says about its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// A file on disk (possibly deleted or unreadable).
    File,
    /// The kernel's vDSO.
    Vdso,
    /// Memory without a file behind it (JIT code, `[heap]`, memfd, special kernel mappings).
    Anonymous,
}

/// Suffix the kernel appends to the name of a mapped file that was unlinked.
pub(crate) const DELETED_SUFFIX: &str = " (deleted)";

/// Classifies a mapping name.
pub(crate) fn classify(path: &str) -> NameKind {
    if path == "[vdso]" {
        return NameKind::Vdso;
    }
    if path.is_empty()
        || path == "//anon"
        || path.starts_with('[')
        || path.starts_with("/memfd:")
        || path.starts_with("/anon_hugepage")
        || path.starts_with("/SYSV")
        || path.starts_with("/dev/zero")
        || !path.starts_with('/')
    {
        return NameKind::Anonymous;
    }
    NameKind::File
}

/// Parses the text of a `/proc/PID/maps` file into mappings (all of them, executable or not).
///
/// Lines that do not have the expected shape are skipped: the file is produced by the kernel,
/// but a saved copy may be damaged and must not stop the rest from being used.
pub fn parse_proc_maps(contents: &str) -> Vec<Mapping> {
    contents.lines().filter_map(parse_maps_line).collect()
}

/// Parses one line: `start-end perms offset dev inode   path`.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut rest = line.trim_start();
    let mut field = || -> Option<&str> {
        let end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (f, r) = rest.split_at(end);
        rest = r.trim_start();
        (!f.is_empty()).then_some(f)
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let _dev = field()?;
    let inode = field()?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let pgoff = u64::from_str_radix(offset, 16).ok()?;
    let inode = inode.parse::<u64>().ok()?;
    if end <= start || perms.len() < 3 {
        return None;
    }
    Some(Mapping {
        start,
        end,
        pgoff,
        path: rest.trim_end_matches(['\n', '\r']).to_string(),
        build_id: None,
        inode,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_maps_lines() {
        let text = "\
55d0c7a00000-55d0c7a01000 r--p 00000000 fe:01 1234                       /usr/bin/my prog
55d0c7a01000-55d0c7a02000 r-xp 00001000 fe:01 1234                       /usr/bin/my prog
7ffd1c5f1000-7ffd1c5f3000 r-xp 00000000 00:00 0                          [vdso]
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
garbage line
7f0000002000-7f0000001000 r-xp 00000000 00:00 0                          /backwards
7f1000000000-7f1000001000 r-xp 00002000 08:02 99 /tmp/lib.so (deleted)
";
        let maps = parse_proc_maps(text);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].path, "/usr/bin/my prog");
        assert!(!maps[0].executable);
        assert_eq!(maps[1].start, 0x55d0c7a01000);
        assert_eq!(maps[1].end, 0x55d0c7a02000);
        assert_eq!(maps[1].pgoff, 0x1000);
        assert_eq!(maps[1].inode, 1234);
        assert!(maps[1].executable);
        assert_eq!(maps[2].path, "[vdso]");
        assert_eq!(maps[3].path, "");
        assert!(maps[3].executable);
        assert_eq!(maps[4].path, "/tmp/lib.so (deleted)");
        assert_eq!(maps[4].pgoff, 0x2000);
    }

    #[test]
    fn classifies_names() {
        assert_eq!(classify("/usr/lib/libc.so.6"), NameKind::File);
        assert_eq!(classify("/tmp/x (deleted)"), NameKind::File);
        assert_eq!(classify("[vdso]"), NameKind::Vdso);
        for anon in [
            "",
            "//anon",
            "[heap]",
            "[anon:v8]",
            "/memfd:jit (deleted)",
            "[vsyscall]",
        ] {
            assert_eq!(classify(anon), NameKind::Anonymous, "{anon}");
        }
    }
}
