//! Integration tests of rprof's name cache (issue 13, `rprof-namecache`): a second recording of
//! the same binary names its addresses from the cache; a changed, stripped or damaged file is
//! never named from it; the cache directory and its files stay private, also under sudo.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::util::{build_c, is_root, rprof, skip, stderr, tempdir};

/// Millions of iterations of `fixtures/hot_line.c`'s cold loop: about 0.2 s of CPU, hundreds
/// of samples in `hot_line_work` even on a loaded machine.
const WORK: &str = "25";

/// A private copy of the hot-line fixture in `dir` (its identity is the test's to change).
fn fixture_copy(dir: &Path) -> PathBuf {
    let built = build_c("hot_line.c", "hot_line", &["-O1", "-g"]);
    let copy = dir.join("hot_line");
    std::fs::copy(built, &copy).unwrap();
    copy
}

/// `rprof record -o PROFILE -- COMMAND` in `dir` with the cache in `cache` and `env` set.
fn record_env(
    dir: &Path,
    cache: &Path,
    profile: &Path,
    command: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut args = vec!["record", "-o", profile.to_str().unwrap(), "--"];
    args.extend_from_slice(command);
    let out = rprof(dir, &args)
        .env("RPROF_CACHE_DIR", cache)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    out
}

/// The fixture at `exe` recorded with the cache in `cache`.
fn record(dir: &Path, cache: &str, exe: &Path, profile: &Path) -> Output {
    let command = [exe.to_str().unwrap(), WORK];
    record_env(dir, Path::new(cache), profile, &command, &[])
}

/// A function of a report: its name, source file, and whether it is the kernel's.
#[derive(Debug)]
struct Named {
    name: String,
    file: Option<String>,
    kernel: bool,
}

/// Every function of `profile`'s report.
fn functions(dir: &Path, profile: &Path) -> Vec<Named> {
    let out = rprof(
        dir,
        &[
            "report",
            "-i",
            profile.to_str().unwrap(),
            "--json",
            "--top",
            "1000",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "report failed: {}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Named {
            name: f["name"].as_str().unwrap_or_default().to_string(),
            file: f["file"].as_str().map(str::to_string),
            kernel: f["kind"] == "kernel",
        })
        .collect()
}

/// The source file `hot_line_work` is named with, if it was sampled.
fn hot_source(named: &[Named]) -> Option<Option<&str>> {
    named
        .iter()
        .find(|f| f.name == "hot_line_work")
        .map(|f| f.file.as_deref())
}

/// A scratch directory with a copy of the fixture: (directory, cache, fixture, profile).
fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let exe = fixture_copy(dir.path());
    let profile = dir.path().join("p.rprof");
    (dir, cache, exe, profile)
}

/// The cache file holding the names of the module at `path`: the one that names it as a source.
fn names_file(cache: &Path, path: &Path) -> PathBuf {
    let needle = path.to_str().unwrap().as_bytes();
    for entry in std::fs::read_dir(cache).unwrap() {
        let file = entry.unwrap().path();
        let named = file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("names-");
        let bytes = std::fs::read(&file).unwrap();
        if named && bytes.windows(needle.len()).any(|w| w == needle) {
            return file;
        }
    }
    panic!("no names of {} in {}", path.display(), cache.display());
}

/// Rewrites a names file (crates/namecache/src/file.rs: magic, body length, body, CRC-32 of
/// the body) with the string `from` replaced by `to`, of the same length, as rprof would have
/// written it.
fn plant(file: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(file).unwrap();
    let magic = b"rprof name cache 2\n".len();
    let body = magic + 4..bytes.len() - 4;
    let mut stored = (from.len() as u32).to_le_bytes().to_vec();
    stored.extend_from_slice(from.as_bytes());
    let at = bytes[body.clone()]
        .windows(stored.len())
        .position(|w| w == stored)
        .unwrap_or_else(|| panic!("{from} is not in {}", file.display()));
    let start = body.start + at + 4;
    bytes[start..start + to.len()].copy_from_slice(to.as_bytes());
    let crc = crc32fast::hash(&bytes[body.clone()]);
    let end = bytes.len();
    bytes[end - 4..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
}

/// Issue 13: the names of a module come from the cache while its file is unchanged (shown by
/// a name planted in the cache), and from the file again once it changed.
#[test]
fn a_second_recording_names_from_the_cache_until_the_file_changes() {
    let (dir, cache, exe, profile) = scratch();
    record(dir.path(), cache.to_str().unwrap(), &exe, &profile);
    let first = functions(dir.path(), &profile);
    let hot = hot_source(&first).expect("hot_line_work sampled");
    assert!(hot.is_some_and(|f| f.ends_with("hot_line.c")), "{first:?}");

    let names = names_file(&cache, &exe);
    let mode = std::fs::metadata(&names).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "cache files are private: {mode:o}");
    plant(&names, "hot_line_work", "HOT_LINE_WORK");
    record(dir.path(), cache.to_str().unwrap(), &exe, &profile);
    let second = functions(dir.path(), &profile);
    assert!(
        second.iter().any(|f| f.name == "HOT_LINE_WORK"),
        "{second:?}"
    );
    assert!(
        !second.iter().any(|f| f.name == "hot_line_work"),
        "every address of the function comes from the cache: {second:?}"
    );
    // The same names otherwise: what the cache holds is what the files said.
    let rename = |fs: &[Named]| {
        let mut names: Vec<String> = fs
            .iter()
            .map(|f| f.name.replace("HOT_LINE_WORK", "hot_line_work"))
            .filter(|n| !n.starts_with("0x") && !n.contains('+'))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let user: Vec<String> = rename(&first)
        .into_iter()
        .filter(|n| ["main", "step", "hot_line_work"].contains(&n.as_str()))
        .collect();
    assert!(user.len() >= 2, "{first:?}");
    for name in &user {
        assert!(rename(&second).contains(name), "{name} in {second:?}");
    }

    // The binary rewritten (same bytes, same build id, a new file): named from the file.
    let bytes = std::fs::read(&exe).unwrap();
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, bytes).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    record(dir.path(), cache.to_str().unwrap(), &exe, &profile);
    let third = functions(dir.path(), &profile);
    assert!(third.iter().any(|f| f.name == "hot_line_work"), "{third:?}");
    assert!(!third.iter().any(|f| f.name == "HOT_LINE_WORK"));
}

/// A stripped copy has the build id of its unstripped build, but not its DWARF: it is named
/// from its own file (no source lines), never from the names cached for the unstripped one.
#[test]
fn a_stripped_copy_is_not_named_from_its_unstripped_build() {
    let (dir, cache, exe, profile) = scratch();
    record(dir.path(), cache.to_str().unwrap(), &exe, &profile);
    let stripped = dir.path().join("stripped");
    let status = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&exe)
        .arg(&stripped)
        .status()
        .unwrap();
    assert!(status.success());
    record(dir.path(), cache.to_str().unwrap(), &stripped, &profile);
    let named = functions(dir.path(), &profile);
    let hot = hot_source(&named).expect("named from the symbol table");
    assert_eq!(hot, None, "no source file without DWARF: {named:?}");
    assert!(
        !named.iter().any(|f| f.name == "step"),
        "no inline frames: {named:?}"
    );
}

/// A damaged cache file is ignored (the names come from the file) and replaced.
#[test]
fn a_damaged_cache_file_is_ignored_and_replaced() {
    let (dir, cache, exe, profile) = scratch();
    record(dir.path(), cache.to_str().unwrap(), &exe, &profile);
    let names = names_file(&cache, &exe);
    let good = std::fs::read(&names).unwrap();
    let mut damaged = good.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x5a;
    damaged.truncate(damaged.len() - 7);
    std::fs::write(&names, &damaged).unwrap();
    let out = record(dir.path(), cache.to_str().unwrap(), &exe, &profile);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let named = functions(dir.path(), &profile);
    let hot = hot_source(&named).expect("named");
    assert!(hot.is_some_and(|f| f.ends_with("hot_line.c")), "{named:?}");
    assert_eq!(
        names_file(&cache, &exe),
        names,
        "replaced by a file that reads"
    );
}

/// A cache directory others may write to is not used; `off` turns the cache off.
#[test]
fn only_a_private_cache_directory_is_used() {
    let (dir, _, exe, profile) = scratch();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    record(dir.path(), open.to_str().unwrap(), &exe, &profile);
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing written"
    );
    assert!(functions(dir.path(), &profile)
        .iter()
        .any(|f| f.name == "hot_line_work"));

    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    record(dir.path(), "off", &exe, &profile);
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "no directory named off was made");
}

/// Under sudo the profile goes to the invoking user, but the cache stays root's: a file rprof
/// reads back as root must never belong to someone else.
#[test]
fn under_sudo_the_cache_stays_roots() {
    if !is_root() {
        return skip("needs root (a sudo run is root with SUDO_UID set)");
    }
    let (dir, cache, exe, profile) = scratch();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let command = [exe.to_str().unwrap(), WORK];
    let sudo = [("SUDO_UID", "65534"), ("SUDO_GID", "65534")];
    record_env(dir.path(), &cache, &profile, &command, &sudo);
    assert_eq!(std::fs::metadata(&profile).unwrap().uid(), 65534);
    let names = names_file(&cache, &exe);
    let meta = std::fs::metadata(&names).unwrap();
    assert_eq!(meta.uid(), 0, "the cache file is root's");
    assert_eq!(meta.permissions().mode() & 0o077, 0);
    assert_eq!(std::fs::metadata(&cache).unwrap().uid(), 0);
}

/// As root, the kernel's own text symbols are kept for the boot (rprof-symbols reads them back
/// instead of `/proc/kallsyms`); a recording with them names its kernel frames.
#[test]
fn the_kernel_symbols_of_this_boot_are_kept() {
    if !is_root() {
        return skip("needs root (kernel stacks and addresses)");
    }
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let profile = dir.path().join("p.rprof");
    // Kernel time for certain: the kernel formats its symbol list on every read.
    let script = "for i in 1 2 3 4 5 6 7 8; do cat /proc/kallsyms >/dev/null; done";
    let kernel_work = |dir: &Path| {
        record_env(dir, &cache, &profile, &["/bin/sh", "-c", script], &[]);
    };
    kernel_work(dir.path());
    let kept = cache.join("kernel-symbols");
    let meta = std::fs::metadata(&kept).expect("kernel symbols kept");
    assert_eq!(meta.permissions().mode() & 0o077, 0);
    assert_eq!(meta.uid(), 0);
    kernel_work(dir.path());
    let kernel: Vec<String> = functions(dir.path(), &profile)
        .into_iter()
        .filter(|f| f.kernel)
        .map(|f| f.name)
        .collect();
    assert!(kernel.len() >= 3, "kernel functions: {kernel:?}");
    assert!(
        kernel
            .iter()
            .all(|n| !n.starts_with("0x") && !n.contains("+0x")),
        "every kernel frame named: {kernel:?}"
    );
}
