//! The module cache: every module ever seen, interned by what identifies its file (path and
//! build id or inode, the vDSO, a process's JIT or anonymous memory), each with its file data
//! read once, on first use. It never shrinks. Which process maps a module where is
//! `address_space`'s job; reading and parsing a file is `module`'s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::address_space::jit_map_path;
use crate::maps::{classify, NameKind, DELETED_SUFFIX};
use crate::module::{self, ElfData};
use crate::{LoadError, Mapping, ModuleIndex, ModuleInfo, ModuleKind};

/// Everything known about one loaded-or-not module.
pub(crate) struct Slot {
    /// Paths to read the file from, in order of preference.
    pub(crate) candidates: Vec<PathBuf>,
    /// Inode the mapping reported (0: unknown).
    pub(crate) inode: u64,
    /// Build id the mapping reported.
    pub(crate) build_id: Option<Vec<u8>>,
    /// `None` until the first use; then the file's data or why it could not be read.
    pub(crate) loaded: Option<Result<Arc<ElfData>, LoadError>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum ModuleKey {
    File {
        path: String,
        build_id: Option<Vec<u8>>,
        inode: u64,
    },
    Vdso,
    Jit {
        pid: u32,
    },
    Anonymous {
        pid: u32,
        name: String,
    },
}

/// All modules ever seen, never shrinking.
#[derive(Default)]
pub(crate) struct Modules {
    pub(crate) infos: Vec<ModuleInfo>,
    pub(crate) slots: Vec<Slot>,
    by_key: HashMap<ModuleKey, ModuleIndex>,
    /// framehop module additions and removals so far (see [`CACHE_RESET`]).
    pub(crate) framehop_changes: u64,
}

/// framehop stamps cached unwind rules with a global 16-bit "modules generation" that every
/// module addition or removal advances; after 65536 changes an old rule could be taken for a
/// current one. The rule cache is dropped every this many changes, long before that.
pub(crate) const CACHE_RESET: u64 = 16384;

impl Modules {
    fn intern(&mut self, key: ModuleKey, make: impl FnOnce() -> (ModuleInfo, Slot)) -> ModuleIndex {
        if let Some(&index) = self.by_key.get(&key) {
            return index;
        }
        let index = ModuleIndex(u32::try_from(self.infos.len()).unwrap_or(u32::MAX));
        let (info, slot) = make();
        self.infos.push(info);
        self.slots.push(slot);
        self.by_key.insert(key, index);
        index
    }

    /// The module for an executable mapping of process `pid`.
    pub(crate) fn for_mapping(&mut self, pid: u32, m: &Mapping) -> ModuleIndex {
        match classify(&m.path) {
            NameKind::Vdso => self.intern(ModuleKey::Vdso, || {
                (
                    ModuleInfo {
                        path: m.path.clone(),
                        build_id: m.build_id.clone(),
                        kind: ModuleKind::Vdso,
                        pid_for_jit: None,
                    },
                    Slot {
                        candidates: Vec::new(),
                        inode: 0,
                        build_id: None,
                        loaded: None,
                    },
                )
            }),
            NameKind::Anonymous => self.anonymous(pid, &m.path),
            NameKind::File => {
                let key = ModuleKey::File {
                    path: m.path.clone(),
                    build_id: m.build_id.clone(),
                    inode: if m.build_id.is_some() { 0 } else { m.inode },
                };
                self.intern(key, || {
                    let mut candidates = Vec::new();
                    if !m.path.ends_with(DELETED_SUFFIX) {
                        candidates.push(PathBuf::from(&m.path));
                    }
                    // While the process lives, root can read the mapped file itself, even when
                    // it was deleted or replaced on disk. Only with an inode or build id to
                    // check: by the time it is read, the pid may belong to another process.
                    if m.inode != 0 || m.build_id.is_some() {
                        candidates.push(PathBuf::from(format!(
                            "/proc/{pid}/map_files/{:x}-{:x}",
                            m.start, m.end
                        )));
                    }
                    (
                        ModuleInfo {
                            path: m.path.clone(),
                            build_id: m.build_id.clone(),
                            kind: ModuleKind::Elf,
                            pid_for_jit: None,
                        },
                        Slot {
                            candidates,
                            inode: m.inode,
                            build_id: m.build_id.clone(),
                            loaded: None,
                        },
                    )
                })
            }
        }
    }

    /// The module for anonymous executable memory named `name` in process `pid`.
    pub(crate) fn anonymous(&mut self, pid: u32, name: &str) -> ModuleIndex {
        let no_file = || Slot {
            candidates: Vec::new(),
            inode: 0,
            build_id: None,
            loaded: None,
        };
        let jit_map = jit_map_path(pid);
        if jit_map.exists() {
            return self.intern(ModuleKey::Jit { pid }, || {
                (
                    ModuleInfo {
                        path: jit_map.to_string_lossy().into_owned(),
                        build_id: None,
                        kind: ModuleKind::Jit,
                        pid_for_jit: Some(pid),
                    },
                    no_file(),
                )
            });
        }
        let name = if name.is_empty() { "//anon" } else { name };
        let key = ModuleKey::Anonymous {
            pid,
            name: name.to_string(),
        };
        self.intern(key, || {
            (
                ModuleInfo {
                    path: name.to_string(),
                    build_id: None,
                    kind: ModuleKind::Anonymous,
                    pid_for_jit: None,
                },
                no_file(),
            )
        })
    }

    /// The module's file data if it was read already.
    pub(crate) fn loaded(&self, index: ModuleIndex) -> Option<&ElfData> {
        let slot = self.slots.get(usize::try_from(index.0).ok()?)?;
        slot.loaded.as_ref()?.as_ref().ok().map(|d| &**d)
    }

    /// The module's file data, read on first use; `None` if it has none or cannot be read.
    pub(crate) fn data(&mut self, index: ModuleIndex) -> Option<Arc<ElfData>> {
        let i = usize::try_from(index.0).ok()?;
        let info = self.infos.get_mut(i)?;
        let slot = self.slots.get_mut(i)?;
        if slot.loaded.is_none() {
            let loaded = match info.kind {
                ModuleKind::Vdso => module::load_vdso(),
                ModuleKind::Elf => {
                    let mut first_error = None;
                    let mut found = None;
                    for path in &slot.candidates {
                        match module::load_file(path, slot.inode, slot.build_id.as_deref()) {
                            Ok(data) => {
                                found = Some(data);
                                break;
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    match (found, first_error) {
                        (Some(data), _) => Ok(data),
                        (None, Some(e)) => Err(e),
                        (None, None) => Err(LoadError::Malformed {
                            path: PathBuf::from(&info.path),
                            reason: "no path to read it from".to_string(),
                        }),
                    }
                }
                ModuleKind::Jit | ModuleKind::Anonymous => return None,
            };
            if let Ok(data) = &loaded {
                if info.build_id.is_none() {
                    info.build_id = data.build_id.clone();
                }
            }
            slot.loaded = Some(loaded.map(Arc::new));
        }
        slot.loaded.as_ref()?.as_ref().ok().cloned()
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{anon, file, PID};
    use crate::{parse_proc_maps, LoadError, ModuleKind, Unwinder};

    use super::*;

    #[test]
    fn unreadable_files_stay_modules_with_file_offsets() {
        let mut u = Unwinder::new();
        let path = "/nonexistent/rprof-test/libgone.so";
        u.add_mapping(PID, file(0x7f00_0000_1000, 0x7f00_0000_9000, 0x1000, path));
        let f = u.locate(PID, 0x7f00_0000_2345);
        let m = f.module.expect("module");
        assert_eq!(u.modules()[m.0 as usize].path, path);
        assert_eq!(u.modules()[m.0 as usize].kind, ModuleKind::Elf);
        assert_eq!(f.address, 0x2345, "file offset");
        assert!(matches!(u.load_error(m), Some(LoadError::Io { .. })));
        // Deleted files too.
        let deleted = "/tmp/rprof-test-libx.so (deleted)";
        u.add_mapping(PID, file(0x7f10_0000_0000, 0x7f10_0000_4000, 0, deleted));
        let f = u.locate(PID, 0x7f10_0000_0010);
        let m = f.module.expect("module");
        assert_eq!(u.modules()[m.0 as usize].path, deleted);
        assert_eq!(f.address, 0x10);
        assert!(u.load_error(m).is_some());
    }

    #[test]
    fn anonymous_code_with_a_perf_map_is_jit() {
        let pid = 3_999_999_002;
        let map = jit_map_path(pid);
        std::fs::write(&map, "100000 10 jitted_fn\n").unwrap();
        let mut u = Unwinder::new();
        u.add_mapping(pid, anon(0x10_0000, 0x20_0000));
        let _ = std::fs::remove_file(&map);
        let f = u.locate(pid, 0x10_0005);
        let info = &u.modules()[f.module.unwrap().0 as usize];
        assert_eq!(info.kind, ModuleKind::Jit);
        assert_eq!(info.pid_for_jit, Some(pid));
        assert_eq!(f.address, 0x10_0005);
    }

    #[test]
    fn vdso_mapping_is_the_vdso_module() {
        let mut u = Unwinder::new();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let vdso = parse_proc_maps(&maps)
            .into_iter()
            .find(|m| m.path == "[vdso]")
            .unwrap();
        u.add_mapping(PID, vdso.clone());
        let f = u.locate(PID, vdso.start + 0x10);
        let m = f.module.unwrap();
        let info = &u.modules()[m.0 as usize];
        assert_eq!(info.kind, ModuleKind::Vdso);
        assert!(info.build_id.is_some(), "read from the image");
        assert!(u.load_error(m).is_none());
        // The vDSO is linked at 0: SVMA = offset in the mapping.
        assert_eq!(f.address, 0x10);
    }
}
