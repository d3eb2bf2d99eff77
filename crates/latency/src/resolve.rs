//! FUNCTION → the (file, file offset) a uprobe is placed at.
//!
//! A FUNCTION is `name`, `module:name` or `path/to/file:name`. `name` is a symbol as the
//! symbol tables spell it (`handle_request`, `_ZN3app6server6handle17h…E`) or demangled as
//! rprof names it everywhere else (`app::server::handle`: Rust without its hash, C++ with its
//! parameters). Without a module, the executable is searched; `module` is a library the target
//! maps or will map, matched by file name (`libc`, `libc.so.6`, `c`, `libfoo.so`).
//!
//! The symbols are `.symtab` and `.dynsym` (as in `rprof-symbols`), defined code symbols only.
//! A symbol's file offset is its address converted through the `PT_LOAD` segment that contains
//! it. Refused with a reason: a name that is only an IFUNC resolver, a PLT stub (`name@plt`), a
//! symbol that is only imported, and a function that DWARF knows only as inlined.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::LatencyError;

/// `STT_GNU_IFUNC`: the symbol is a resolver that returns the implementation to call.
const STT_GNU_IFUNC: u8 = 10;

/// One function to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The name shown in reports (the FUNCTION as the user typed it).
    pub name: String,
    /// The file the probe is placed in.
    pub path: PathBuf,
    /// The symbol's address in the file (its SVMA).
    pub address: u64,
    /// The file offset of that address: what the uprobe PMU takes.
    pub offset: u64,
    /// The symbol's raw name in the table.
    pub symbol: String,
}

/// A FUNCTION argument split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The module part (`libc`, `./app`, `/usr/lib/x/libfoo.so`), if any.
    pub module: Option<String>,
    /// The function name.
    pub name: String,
}

impl Spec {
    /// Splits `text` at the first `:` that is not part of `::` (Rust and C++ paths).
    pub fn parse(text: &str) -> Result<Spec, LatencyError> {
        let bytes = text.as_bytes();
        let mut split = None;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b':' {
                if bytes.get(i + 1) == Some(&b':') {
                    i += 2;
                    continue;
                }
                split = Some(i);
                break;
            }
            i += 1;
        }
        let (module, name) = match split {
            Some(i) => (Some(text[..i].to_string()), text[i + 1..].to_string()),
            None => (None, text.to_string()),
        };
        if name.is_empty() || module.as_deref() == Some("") {
            return Err(LatencyError::Usage(format!(
                "invalid FUNCTION '{text}': expected NAME, LIBRARY:NAME or PATH:NAME"
            )));
        }
        Ok(Spec { module, name })
    }
}

/// Where to look for a FUNCTION: the executable and the libraries the target maps.
#[derive(Clone, Debug, Default)]
pub struct Modules {
    /// The executable (searched for a FUNCTION without module).
    pub executable: Option<PathBuf>,
    /// Shared libraries, in load order.
    pub libraries: Vec<PathBuf>,
}

impl Modules {
    /// The modules of a COMMAND about to run: `exe` and, recursively, its `DT_NEEDED`
    /// libraries found the way the dynamic loader finds them (`DT_RPATH`/`DT_RUNPATH` with
    /// `$ORIGIN`, `LD_LIBRARY_PATH`, `/etc/ld.so.conf.d`, the default directories). Libraries
    /// loaded with `dlopen` are not known before they are loaded: name them by path.
    pub fn of_command(exe: &Path) -> Modules {
        let mut libraries = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([exe.to_path_buf()]);
        let system = system_dirs();
        while let Some(file) = queue.pop_front() {
            if libraries.len() > 512 {
                break;
            }
            let Ok(data) = map_elf(&file) else { continue };
            let Ok(obj) = object::File::parse(&*data) else {
                continue;
            };
            let (needed, paths) = dynamic_needs(&obj, &file);
            for name in needed {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let found = if name.contains('/') {
                    Some(PathBuf::from(&name))
                } else {
                    paths
                        .iter()
                        .chain(&system)
                        .map(|d| d.join(&name))
                        .find(|p| p.is_file())
                };
                if let Some(path) = found {
                    libraries.push(path.clone());
                    queue.push_back(path);
                }
            }
        }
        Modules {
            executable: Some(exe.to_path_buf()),
            libraries,
        }
    }

    /// The modules process `pid` has mapped (`/proc/PID/maps`, executable mappings of files);
    /// the first is its executable (`/proc/PID/exe`).
    pub fn of_process(pid: u32) -> Result<Modules, LatencyError> {
        let maps = rprof_fs::read::read_bounded(
            Path::new(&format!("/proc/{pid}/maps")),
            &rprof_fs::read::Options::new(
                "a process's memory map",
                rprof_fs::read::PROC_MAPS_LIMIT,
            ),
        )
        .map_err(|_| LatencyError::Gone(pid))?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let mut libraries = Vec::new();
        let mut seen = BTreeSet::new();
        for line in String::from_utf8_lossy(&maps).lines() {
            let mut fields = line.split_whitespace();
            let perms = fields.nth(1).unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            if !perms.contains('x') || !path.starts_with('/') {
                continue;
            }
            let path = PathBuf::from(path);
            if Some(&path) != exe.as_ref() && seen.insert(path.clone()) {
                libraries.push(path);
            }
        }
        Ok(Modules {
            executable: exe,
            libraries,
        })
    }

    /// The file a module part names: a path (it has a `/`, or exists as given) or the file
    /// name of one of the libraries (`libc`, `c`, `libc.so.6`).
    fn find(&self, module: &str) -> Result<PathBuf, LatencyError> {
        let all = || self.executable.iter().chain(&self.libraries);
        let matches = |path: &Path| {
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                return false;
            };
            file == module
                || file.starts_with(&format!("{module}.so"))
                || file.starts_with(&format!("lib{module}.so"))
                || file.starts_with(&format!("{module}-"))
                    && file.contains(".so")
                    && module.starts_with("lib")
        };
        if let Some(found) = all().find(|p| matches(p)) {
            return Ok(found.clone());
        }
        let given = Path::new(module);
        if module.contains('/') || given.is_file() {
            return Ok(given.to_path_buf());
        }
        let known: Vec<String> = self
            .libraries
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        Err(LatencyError::Usage(format!(
            "no library '{module}' in the target{}; name the file by its path (PATH:FUNCTION)",
            if known.is_empty() {
                String::new()
            } else {
                format!(" (it maps {})", known.join(", "))
            }
        )))
    }
}

fn system_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if let Ok(entries) = std::fs::read_dir("/etc/ld.so.conf.d") {
        let mut confs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        confs.sort();
        for conf in confs {
            let Ok(text) = rprof_fs::read::read_bounded(
                &conf,
                &rprof_fs::read::Options::new("a ld.so.conf file", 1 << 20),
            ) else {
                continue;
            };
            for line in String::from_utf8_lossy(&text).lines() {
                let line = line.trim();
                if line.starts_with('/') {
                    dirs.push(PathBuf::from(line));
                }
            }
        }
    }
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// `DT_NEEDED` names and the `DT_RPATH`/`DT_RUNPATH` directories of an ELF file.
fn dynamic_needs(obj: &object::File<'_>, file: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let origin = file
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut needed = Vec::new();
    let mut paths = Vec::new();
    if let object::File::Elf64(elf) = obj {
        use object::read::elf::{Dyn, FileHeader};
        let endian = elf.endian();
        let data = elf.data();
        if let Ok(sections) = elf.elf_header().sections(endian, data) {
            if let Ok(Some((dynamic, link))) = sections.dynamic(endian, data) {
                let strings = sections.strings(endian, data, link).unwrap_or_default();
                for d in dynamic {
                    let tag = d.d_tag(endian);
                    let Ok(s) = d.string(endian, strings) else {
                        continue;
                    };
                    let s = String::from_utf8_lossy(s).into_owned();
                    match tag {
                        object::elf::DT_NEEDED => needed.push(s),
                        object::elf::DT_RPATH | object::elf::DT_RUNPATH => {
                            for p in s.split(':').filter(|p| !p.is_empty()) {
                                paths.push(PathBuf::from(p.replace("$ORIGIN", &origin)));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    (needed, paths)
}

/// Maps an ELF file read-only through rprof-fs (regular files only, size-capped).
pub(crate) fn map_elf(path: &Path) -> Result<memmap2::Mmap, String> {
    let (file, _) = rprof_fs::read::open_regular(
        path,
        &rprof_fs::read::Options::new("an ELF file", rprof_fs::read::ELF_LIMIT),
    )
    .map_err(|e| e.reason())?;
    // SAFETY: a read-only private mapping of a regular file; rprof reads it as untrusted bytes
    // (object bounds-checks every access). A file truncated meanwhile could fault, as for
    // every ELF reader that maps.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())
}

/// A defined code symbol of one file.
#[derive(Clone, Debug)]
struct Sym {
    raw: String,
    demangled: String,
    address: u64,
    ifunc: bool,
}

/// The demangled name without a Rust legacy hash (`::h0123456789abcdef`).
fn without_hash(name: &str) -> &str {
    match name.rfind("::h") {
        Some(i) if name.len() - i == 19 && name[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) => {
            &name[..i]
        }
        _ => name,
    }
}

/// The name without C++ parameters: `ns::f(int)` → `ns::f`.
fn without_params(name: &str) -> &str {
    match name.find('(') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

fn symbols(obj: &object::File<'_>) -> (Vec<Sym>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut undefined = BTreeSet::new();
    for sym in obj.symbols().chain(obj.dynamic_symbols()) {
        let Ok(raw) = sym.name() else { continue };
        if raw.is_empty() {
            continue;
        }
        let ifunc = matches!(sym.flags(), object::SymbolFlags::Elf { st_info, .. } if st_info.0 & 0xf == STT_GNU_IFUNC);
        if sym.is_undefined() {
            undefined.insert(raw.split('@').next().unwrap_or(raw).to_string());
            continue;
        }
        if sym.kind() != SymbolKind::Text && !ifunc {
            continue;
        }
        if sym.address() == 0 {
            continue;
        }
        let raw = raw.split('@').next().unwrap_or(raw).to_string();
        let demangled = rprof_symbols::demangle(&raw);
        out.push(Sym {
            raw,
            demangled,
            address: sym.address(),
            ifunc,
        });
    }
    (out, undefined)
}

/// The file offset of `address`, through the `PT_LOAD` segment that contains it.
fn file_offset(obj: &object::File<'_>, address: u64) -> Option<u64> {
    obj.segments().find_map(|seg| {
        let (offset, file_size) = seg.file_range();
        let start = seg.address();
        let inside = address >= start && address - start < file_size.min(seg.size());
        inside.then(|| offset + (address - start))
    })
}

/// Resolves FUNCTION `text` among `modules`.
pub fn resolve(text: &str, modules: &Modules) -> Result<Target, LatencyError> {
    let spec = Spec::parse(text)?;
    if let Some(base) = spec.name.strip_suffix("@plt") {
        return Err(LatencyError::Usage(format!(
            "'{text}' is a PLT stub, a jump to a function in another module, not a function; \
             probe the function itself where it is defined, e.g. 'libc:{base}'"
        )));
    }
    let path = match &spec.module {
        Some(module) => modules.find(module)?,
        None => modules.executable.clone().ok_or_else(|| {
            LatencyError::Usage("no executable to look the function up in".into())
        })?,
    };
    let data = map_elf(&path)
        .map_err(|why| LatencyError::Usage(format!("cannot read '{}': {why}", path.display())))?;
    let obj = object::File::parse(&*data).map_err(|e| {
        LatencyError::Usage(format!(
            "'{}' is not an ELF file rprof can read: {e}",
            path.display()
        ))
    })?;
    let (syms, undefined) = symbols(&obj);
    let name = spec.name.as_str();
    let mut found: Vec<&Sym> = syms.iter().filter(|s| s.raw == name).collect();
    if found.is_empty() {
        found = syms
            .iter()
            .filter(|s| {
                s.demangled == name
                    || without_hash(&s.demangled) == name
                    || without_params(&s.demangled) == name
            })
            .collect();
    }
    // One function may have several symbols (aliases, .symtab and .dynsym): one address.
    let mut addresses: Vec<u64> = found.iter().map(|s| s.address).collect();
    addresses.sort_unstable();
    addresses.dedup();
    let module = path.display();
    if let Some(sym) = found.iter().find(|s| s.ifunc) {
        let base = sym.raw.trim_start_matches('_');
        let mut impls: Vec<&str> = syms
            .iter()
            .filter(|s| !s.ifunc && s.raw != sym.raw && s.raw.contains(base))
            .map(|s| s.raw.as_str())
            .collect();
        impls.sort_unstable();
        impls.dedup();
        impls.truncate(6);
        return Err(LatencyError::Usage(format!(
            "'{name}' in {module} is an IFUNC (GNU indirect function): its symbol is a \
             resolver run once at load time, not the code that runs per call; probe the \
             implementation the CPU uses{}",
            if impls.is_empty() {
                String::new()
            } else {
                format!(", one of: {}", impls.join(", "))
            }
        )));
    }
    match addresses.as_slice() {
        [] => {
            if undefined.contains(name) {
                let lib = defined_in_library(name, modules).unwrap_or_else(|| "LIBRARY".into());
                return Err(LatencyError::Usage(format!(
                    "'{name}' is not defined in {module}: it is imported from a shared library; \
                     probe it where it is defined: '{lib}:{name}'"
                )));
            }
            if inlined_only(&obj, name) {
                return Err(LatencyError::Usage(format!(
                    "'{name}' in {module} exists only inlined into its callers (DWARF knows it, \
                     the symbol table has no out-of-line copy), so it has no entry to probe; \
                     probe its caller, or build it with `__attribute__((noinline))` / \
                     `#[inline(never)]`"
                )));
            }
            let close = close_matches(name, &syms);
            if close.is_empty() && spec.module.is_none() {
                if let Some(lib) = defined_in_library(name, modules) {
                    return Err(LatencyError::Usage(format!(
                        "no function '{name}' in {module}, but {lib} defines it: use '{lib}:{name}'"
                    )));
                }
            }
            Err(LatencyError::Usage(format!(
                "no function '{name}' in {module}{}",
                if close.is_empty() {
                    "; `nm -D` / `nm` lists the symbols".to_string()
                } else {
                    format!("; close matches: {}", close.join(", "))
                }
            )))
        }
        [address] => {
            let sym = found
                .iter()
                .find(|s| s.address == *address)
                .copied()
                .ok_or_else(|| LatencyError::Usage(format!("no function '{name}'")))?;
            let offset = file_offset(&obj, *address).ok_or_else(|| {
                LatencyError::Usage(format!(
                    "'{name}' in {module} is at {address:#x}, outside every loadable segment"
                ))
            })?;
            Ok(Target {
                name: text.to_string(),
                path: path.clone(),
                address: *address,
                offset,
                symbol: sym.raw.clone(),
            })
        }
        many => {
            let mut names: Vec<String> = found
                .iter()
                .map(|s| format!("{} at {:#x}", s.raw, s.address))
                .collect();
            names.sort();
            names.dedup();
            names.truncate(6);
            Err(LatencyError::Usage(format!(
                "'{name}' names {} different functions in {module} ({}); give the symbol's \
                 mangled name",
                many.len(),
                names.join(", ")
            )))
        }
    }
}

/// The file name of the first library of `modules` that defines code symbol `name`.
fn defined_in_library(name: &str, modules: &Modules) -> Option<String> {
    modules.libraries.iter().find_map(|lib| {
        let data = map_elf(lib).ok()?;
        let obj = object::File::parse(&*data).ok()?;
        let (syms, _) = symbols(&obj);
        syms.iter()
            .any(|s| s.raw == name)
            .then(|| lib.file_name()?.to_str().map(String::from))
            .flatten()
    })
}

/// Up to 5 names close to `name`: those containing it (or contained in it), then the nearest
/// by edit distance.
fn close_matches(name: &str, syms: &[Sym]) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, String)> = Vec::new();
    let mut seen = HashSet::new();
    for s in syms {
        let shown = without_hash(&s.demangled).to_string();
        if !seen.insert(shown.clone()) {
            continue;
        }
        let l = shown.to_lowercase();
        let score = if l.contains(&lower) || (lower.contains(&l) && l.len() > 3) {
            l.len().abs_diff(lower.len()) / 8
        } else {
            let tail = l.rsplit("::").next().unwrap_or(&l);
            edit_distance(&lower, tail).min(edit_distance(&lower, &l))
        };
        if score <= (name.len() / 3).max(2) {
            scored.push((score, shown));
        }
    }
    scored.sort();
    scored.into_iter().take(5).map(|(_, s)| s).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 8 {
        return usize::MAX / 2;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether DWARF has a subprogram `name` (an abstract instance or an inlined-only function)
/// while the symbol table has none. Reads at most the first 64 MiB of `.debug_info`.
fn inlined_only(obj: &object::File<'_>, name: &str) -> bool {
    use object::ObjectSection;
    let load = |id: gimli::SectionId| -> Result<std::borrow::Cow<'_, [u8]>, gimli::Error> {
        Ok(obj
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(std::borrow::Cow::Borrowed(&[])))
    };
    let too_big = obj
        .section_by_name(".debug_info")
        .is_none_or(|s| s.size() > 64 << 20);
    if too_big {
        return false;
    }
    let Ok(sections) = gimli::DwarfSections::load(load) else {
        return false;
    };
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let Some(attr) = entry.attr_value(gimli::DW_AT_name) else {
                continue;
            };
            let Ok(s) = dwarf.attr_string(&unit, attr) else {
                continue;
            };
            if s.slice() == name.as_bytes() {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            Spec::parse("libc:malloc").unwrap(),
            Spec {
                module: Some("libc".into()),
                name: "malloc".into()
            }
        );
        assert_eq!(
            Spec::parse("app::server::handle").unwrap(),
            Spec {
                module: None,
                name: "app::server::handle".into()
            }
        );
        assert_eq!(
            Spec::parse("./bin/app:app::server::handle").unwrap(),
            Spec {
                module: Some("./bin/app".into()),
                name: "app::server::handle".into()
            }
        );
        assert!(Spec::parse(":x").is_err());
        assert!(Spec::parse("libc:").is_err());
    }

    #[test]
    fn hashes_and_params_come_off() {
        assert_eq!(without_hash("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(without_hash("a::b::hello"), "a::b::hello");
        assert_eq!(without_params("ns::f(int, char)"), "ns::f");
    }

    #[test]
    fn own_function_resolves_to_a_file_offset() {
        // Referenced, so that the test binary's linker keeps it.
        let f: extern "C" fn(u64) -> u64 = crate::calibrate::rprof_latency_calibration_target;
        assert_eq!(std::hint::black_box(f)(1), 2);
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let modules = Modules {
            executable: Some(exe.clone()),
            libraries: Vec::new(),
        };
        let t = resolve(crate::calibrate::TARGET_SYMBOL, &modules).unwrap();
        assert_eq!(t.path, exe);
        assert!(t.offset > 0 && t.offset <= t.address, "{t:?}");
        let e = resolve("rprof_latency_calibration_targte", &modules).unwrap_err();
        assert!(
            e.to_string()
                .contains("close matches: rprof_latency_calibration_target"),
            "{e}"
        );
        let e = resolve("malloc@plt", &modules).unwrap_err();
        assert!(e.to_string().contains("PLT stub"), "{e}");
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("handle", "handel"), 2);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }
}
