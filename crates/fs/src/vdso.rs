//! The vDSO image of the running kernel, read from this process's own `[vdso]` mapping.
//!
//! The kernel maps the same vDSO image into every process, so reading our own copy gives the
//! symbols of the recorded process's vDSO as long as symbolization runs on the kernel that
//! recorded (which is the case when rprof symbolizes right after recording). The unwinder and the
//! symbolizer both read it through here, with the same size cap.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::read::{read_bounded, Options, PROC_MAPS_LIMIT};

/// The largest vDSO image read (real ones are a few pages).
const MAX_VDSO: usize = 16 << 20;

/// Reads the bytes of this process's `[vdso]` mapping.
pub fn read_own_vdso() -> Result<Vec<u8>, String> {
    let options = Options::new("a memory map", PROC_MAPS_LIMIT);
    let maps = read_bounded(Path::new("/proc/self/maps"), &options).map_err(|e| e.to_string())?;
    let maps = String::from_utf8_lossy(&maps);
    let (start, end) = find_vdso(&maps).ok_or("no [vdso] mapping in /proc/self/maps")?;
    let len = usize::try_from(end - start)
        .ok()
        .filter(|&len| len <= MAX_VDSO)
        .ok_or_else(|| format!("implausible [vdso] size {}", end - start))?;
    let mem = File::open("/proc/self/mem").map_err(|e| format!("/proc/self/mem: {e}"))?;
    let mut bytes = vec![0u8; len];
    mem.read_exact_at(&mut bytes, start)
        .map_err(|e| format!("reading [vdso] at {start:#x}: {e}"))?;
    Ok(bytes)
}

/// The `start..end` range of the `[vdso]` line of a maps file.
fn find_vdso(maps: &str) -> Option<(u64, u64)> {
    let line = maps.lines().find(|l| l.trim_end().ends_with("[vdso]"))?;
    let range = line.split_ascii_whitespace().next()?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_vdso_line() {
        let maps = "55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/cat\n\
                    7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]\n";
        assert_eq!(find_vdso(maps), Some((0x7ffd1000, 0x7ffd3000)));
        assert_eq!(find_vdso("7ffd3000-7ffd1000 r-xp 0 0:0 0 [vdso]\n"), None);
        assert_eq!(find_vdso("7ffd1000-7ffd3000 r-xp 0 0:0 0 [vvar]\n"), None);
    }

    #[test]
    fn reads_an_elf_image() {
        let bytes = read_own_vdso().unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
    }
}
