//! Tracepoint ids from tracefs (`/sys/kernel/tracing`, or `/sys/kernel/debug/tracing` on older
//! systems, or wherever `/proc/self/mounts` says tracefs is mounted).
//!
//! Like perf (and libtracefs), when tracefs is not mounted anywhere and we are root, it is
//! mounted at `/sys/kernel/tracing`; otherwise the error says how to mount it.

use std::path::{Path, PathBuf};

use crate::names::rank;
use crate::EventError;

const KNOWN_DIRS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The `events` directory of tracefs, mounting tracefs (as perf does) when it is not mounted
/// and we are root. The error explains how to make it available.
pub fn tracefs_events_dir() -> Result<PathBuf, String> {
    if let Some(dir) = find_events_dir() {
        return Ok(dir);
    }
    if let Some(dir) = unreadable_tracefs() {
        return Err(format!(
            "permission denied reading {} (tracefs is readable by root only); run as root, or \
             let others read it with `sudo mount -o remount,mode=755 {}`",
            dir.display(),
            dir.display()
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && mount_tracefs("/sys/kernel/tracing").is_ok() {
        if let Some(dir) = find_events_dir() {
            return Ok(dir);
        }
    }
    Err(
        "tracefs is not mounted; mount it with `sudo mount -t tracefs nodev /sys/kernel/tracing`"
            .to_string(),
    )
}

fn find_events_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = KNOWN_DIRS.iter().map(PathBuf::from).collect();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        dirs.extend(tracefs_mount_points(&mounts));
    }
    dirs.into_iter()
        .map(|d| d.join("events"))
        .find(|events| events.is_dir())
}

/// A tracefs mount (or the usual mount point) that exists but that we may not read.
fn unreadable_tracefs() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = KNOWN_DIRS.iter().map(PathBuf::from).collect();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        dirs.extend(tracefs_mount_points(&mounts));
    }
    dirs.into_iter().find(|d| {
        matches!(std::fs::read_dir(d), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// Mount points of `tracefs` in a `/proc/self/mounts` text.
fn tracefs_mount_points(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            let fstype = fields.next()?;
            (fstype == "tracefs").then(|| PathBuf::from(unescape_mount(target)))
        })
        .collect()
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal `\ooo`.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(oct) = bytes.get(i + 1..i + 4) {
                if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                    let v = oct
                        .iter()
                        .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                    if let Ok(v) = u8::try_from(v) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_tracefs(target: &str) -> std::io::Result<()> {
    let target_c = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings (or null data) for the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target_c.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The id of tracepoint `subsystem:name` (`events/<subsystem>/<name>/id` in tracefs).
///
/// An unknown tracepoint is [`EventError::Unknown`] with close matches from tracefs.
pub fn tracepoint_id(subsystem: &str, name: &str) -> Result<u64, EventError> {
    let full = format!("{subsystem}:{name}");
    let events = tracefs_events_dir().map_err(|reason| EventError::Tracefs {
        name: full.clone(),
        reason,
    })?;
    read_id(&events, subsystem, name, &full)
}

fn read_id(events: &Path, subsystem: &str, name: &str, full: &str) -> Result<u64, EventError> {
    let path = events.join(subsystem).join(name).join("id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| EventError::Tracefs {
            name: full.to_string(),
            reason: format!("{} does not hold a number", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(EventError::Unknown {
            name: full.to_string(),
            suggestions: tracepoint_suggestions(events, subsystem, name),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(EventError::Tracefs {
            name: full.to_string(),
            reason: format!(
                "cannot read {}: permission denied (tracefs is readable by root only); run as root",
                path.display()
            ),
        }),
        Err(e) => Err(EventError::Tracefs {
            name: full.to_string(),
            reason: format!("cannot read {}: {e}", path.display()),
        }),
    }
}

fn list_dir(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Close matches for an unknown tracepoint: events of the same subsystem when it exists,
/// otherwise `subsystem:name` pairs whose subsystem is close.
fn tracepoint_suggestions(events: &Path, subsystem: &str, name: &str) -> Vec<String> {
    let sub_dir = events.join(subsystem);
    if sub_dir.is_dir() {
        return rank(name, list_dir(&sub_dir))
            .into_iter()
            .map(|n| format!("{subsystem}:{n}"))
            .collect();
    }
    let subsystems = rank(subsystem, list_dir(events));
    let mut out = Vec::new();
    for sub in subsystems {
        let candidates = list_dir(&events.join(&sub));
        let matches = rank(name, candidates.clone());
        if matches.is_empty() {
            out.extend(candidates.into_iter().take(1).map(|n| format!("{sub}:{n}")));
        } else {
            out.extend(matches.into_iter().map(|n| format!("{sub}:{n}")));
        }
    }
    out.truncate(3);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tracefs() -> tempdir::Dir {
        tempdir::Dir::new()
    }

    /// A tiny temporary directory helper (the crate has no dev-dependencies).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "rprof-events-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn add(events: &Path, sub: &str, name: &str, id: &str) {
        let d = events.join(sub).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("id"), id).unwrap();
    }

    #[test]
    fn ids_and_suggestions_from_a_tree() {
        let dir = fake_tracefs();
        let events = dir.0.as_path();
        add(events, "sched", "sched_switch", "372\n");
        add(events, "sched", "sched_wakeup", "370\n");
        add(events, "syscalls", "sys_enter_read", "600\n");
        add(events, "broken", "bad_id", "x\n");
        assert_eq!(read_id(events, "sched", "sched_switch", "s").unwrap(), 372);
        match read_id(events, "sched", "sched_swtch", "sched:sched_swtch") {
            Err(EventError::Unknown { name, suggestions }) => {
                assert_eq!(name, "sched:sched_swtch");
                assert_eq!(
                    suggestions.first().map(String::as_str),
                    Some("sched:sched_switch")
                );
            }
            other => panic!("{other:?}"),
        }
        match read_id(events, "shed", "sched_switch", "shed:sched_switch") {
            Err(EventError::Unknown { suggestions, .. }) => {
                assert_eq!(suggestions, ["sched:sched_switch"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_id(events, "broken", "bad_id", "broken:bad_id"),
            Err(EventError::Tracefs { .. })
        ));
    }

    #[test]
    fn mounts_parsing() {
        let mounts = "sysfs /sys sysfs rw 0 0\nnodev /my\\040trace tracefs rw 0 0\nbad\n";
        assert_eq!(tracefs_mount_points(mounts), [PathBuf::from("/my trace")]);
        assert_eq!(unescape_mount("a\\134b"), "a\\b");
        assert_eq!(unescape_mount("trailing\\04"), "trailing\\04");
        assert_eq!(unescape_mount("\\"), "\\");
    }

    #[test]
    fn real_sched_switch() {
        // Root can always reach tracefs (mounting it if needed); others may not.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            rprof_testkit::skip("needs root (CI runs as root)");
            return;
        }
        let e = crate::parse("sched:sched_switch").unwrap();
        assert_eq!(e.kind, crate::EventKind::Tracepoint);
        assert!(e.config > 0);
        assert_eq!(e.name, "sched:sched_switch");
        let e = crate::parse("sched:sched_switch:k").unwrap();
        assert_eq!(e.base_name(), "sched:sched_switch");
        assert!(e.exclude_user);
        let err = crate::parse("sched:sched_swich").unwrap_err();
        assert!(
            err.to_string().contains("did you mean: sched:sched_switch"),
            "{err}"
        );
    }
}
