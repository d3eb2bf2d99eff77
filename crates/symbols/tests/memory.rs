//! Issue 13: naming addresses of a module with a large, uncompressed DWARF (memory-mapped, as
//! ripgrep's 60 MB binary is) keeps few of its pages in the process's RSS: the recorder names at
//! exit, and every page of the mapping once read used to stay in its peak memory.

use std::path::Path;

use object::{Object, ObjectSection};
use rprof_symbols::{ModuleSource, Symbolizer};

/// Resident kB of the mapping of `path` that covers the whole file (the symbolizer's own; the
/// loader maps the program in smaller pieces).
fn whole_file_rss_kb(path: &Path, file_len: u64) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let want = path.to_str().unwrap();
    let mut ours = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 6 && fields[0].contains('-') && fields[1].len() == 4 {
            let (start, end) = fields[0].split_once('-').unwrap();
            let size =
                u64::from_str_radix(end, 16).unwrap() - u64::from_str_radix(start, 16).unwrap();
            ours = fields[5] == want && size >= file_len;
        } else if ours {
            if let Some(kb) = line.strip_prefix("Rss:") {
                return kb.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
    }
    panic!("no mapping of all of {want} in /proc/self/smaps");
}

/// This test program has several MB of uncompressed DWARF: loading it leaves almost nothing of
/// it resident, and naming 400 addresses spread over its code (hundreds of units) leaves under
/// half of its `.debug_info`.
#[test]
fn naming_keeps_few_pages_of_a_large_dwarf_resident() {
    let exe = std::env::current_exe().unwrap();
    let data = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let info = file.section_by_name(".debug_info").unwrap();
    assert!(
        info.size() > 4 << 20,
        "a small .debug_info: {}",
        info.size()
    );
    assert!(
        info.compressed_file_range().unwrap().format == object::CompressionFormat::None,
        "this test needs uncompressed DWARF"
    );
    let step = (text.size() / 400).max(1);
    let addrs: Vec<u64> = (0..400).map(|i| text.address() + i * step).collect();
    let (file_len, info_kb) = (data.len() as u64, info.size() / 1024);
    drop(data);

    let mut sym = Symbolizer::new();
    let module = ModuleSource::Elf {
        path: exe.to_str().unwrap(),
        build_id: None,
    };
    // Loading reads every unit header (and the pages around each): none stay.
    assert!(sym.module_status(&module).problem.is_none());
    let loaded = whole_file_rss_kb(&exe, file_len);
    assert!(
        loaded < info_kb / 16,
        "{loaded} kB of the file resident after loading ({info_kb} kB of .debug_info)"
    );
    let locs = sym.symbolize(&module, &addrs);
    let with_lines = locs
        .iter()
        .filter(|l| l.frames.first().is_some_and(|f| f.line.is_some()))
        .count();
    assert!(
        with_lines > 200,
        "DWARF named {with_lines} of 400 addresses"
    );
    // Naming keeps what the last unit parsed read (a unit of a Rust program can be megabytes).
    let named = whole_file_rss_kb(&exe, file_len);
    assert!(
        named < info_kb / 2,
        "{named} kB of the file resident after naming ({info_kb} kB of .debug_info)"
    );
    assert!(named > 0, "naming read the file");

    // Between two bursts of naming (rprof names while its target runs), nothing stays
    // resident, and the names come back the same from the parsed units and the file.
    sym.release_pages();
    assert_eq!(whole_file_rss_kb(&exe, file_len), 0, "pages given back");
    assert_eq!(sym.symbolize(&module, &addrs), locs);
}
