//! Split DWARF: the `.dwo` files (or the `.dwp` package) holding the bulk of the DWARF of a
//! module built with `-gsplit-dwarf`, whose own file keeps only skeleton units.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::Reader as _;

use crate::elf::{dwo_sections, endian, open, parse, section_bytes, Bytes, Reader};

/// Finds and loads split units for one module.
pub(crate) struct SplitDwarf {
    /// `<module>.dwp`, when it exists and parses.
    package: Option<gimli::DwarfPackage<Reader>>,
    /// The module's directory: `.dwo` files are also looked for there by file name, for when the
    /// build directory recorded in the skeleton is gone.
    module_dir: Option<PathBuf>,
}

impl SplitDwarf {
    /// Split DWARF lookup for the module at `path` (for the vDSO, `None`: nothing to look up).
    pub(crate) fn new(path: Option<&Path>) -> SplitDwarf {
        let package = path.and_then(|p| {
            let mut dwp = p.as_os_str().to_owned();
            dwp.push(".dwp");
            load_package(Path::new(&dwp))
        });
        SplitDwarf {
            package,
            module_dir: path.and_then(Path::parent).map(Path::to_path_buf),
        }
    }

    /// The split unit addr2line asks for, or `None` when it cannot be found or does not match.
    pub(crate) fn load(
        &self,
        load: &addr2line::SplitDwarfLoad<Reader>,
    ) -> Option<Arc<gimli::Dwarf<Reader>>> {
        if let Some(dwp) = &self.package {
            if let Ok(Some(unit)) = dwp.find_cu(load.dwo_id, &load.parent) {
                return Some(Arc::new(unit));
            }
        }
        let name = os_path(load.path.as_ref()?)?;
        let mut candidates = Vec::new();
        match load.comp_dir.as_ref().and_then(os_path) {
            Some(dir) => candidates.push(dir.join(&name)),
            None => candidates.push(name.clone()),
        }
        if let (Some(dir), Some(file)) = (&self.module_dir, name.file_name()) {
            candidates.push(dir.join(file));
        }
        candidates
            .iter()
            .find_map(|path| load_dwo(path, load.dwo_id, &load.parent))
    }
}

fn os_path(r: &Reader) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = r.to_slice().ok()?;
    (!bytes.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))
}

fn load_dwo(
    path: &Path,
    dwo_id: gimli::DwoId,
    parent: &gimli::Dwarf<Reader>,
) -> Option<Arc<gimli::Dwarf<Reader>>> {
    let base = open(path).ok()?;
    let file = parse(&base, &path.display().to_string()).ok()?;
    let mut dwarf = dwo_sections(&file, &base).ok()?;
    let header = dwarf.units().next().ok()??;
    let unit = dwarf.unit(header).ok()?;
    if unit.dwo_id != Some(dwo_id) {
        return None;
    }
    dwarf.make_dwo(parent);
    Some(Arc::new(dwarf))
}

fn load_package(path: &Path) -> Option<gimli::DwarfPackage<Reader>> {
    let base = open(path).ok()?;
    let file = parse(&base, &path.display().to_string()).ok()?;
    let endian = endian(&file);
    let empty = || Reader::new(Bytes::empty(), endian);
    gimli::DwarfPackage::load(
        |id| -> Result<Reader, gimli::Error> {
            // An unreadable section counts as missing; the package then fails to load.
            Ok(id
                .dwo_name()
                .and_then(|name| section_bytes(&file, &base, name).ok())
                .map_or_else(empty, |b| Reader::new(b, endian)))
        },
        empty(),
    )
    .ok()
}
