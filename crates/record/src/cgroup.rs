//! A cgroup (v2) of its own for a launched COMMAND, so that its samplers can be per-CPU events
//! scoped to it instead of inherited per-task events.
//!
//! Why (issue 13): the kernel gives the copy of an inherited `cpu-clock`/`task-clock` event in
//! every new task a full period before its first sample (`perf_swevent_start_hrtimer` starts
//! the timer at the whole `sample_period` when nothing is left over), so a process that runs
//! less CPU than one period is never sampled: 200 children exec'ing `/bin/true` (~0.6 ms each
//! at 999 Hz) got a sample in only a few of them. A cgroup event's timer instead runs across
//! every task of the cgroup on its CPU and is only stopped when the CPU leaves the cgroup, so
//! the rate holds whatever the processes' lengths (measured in docs/benchmarks.md).
//!
//! The cgroup is made beside rprof's own, in the cgroup v2 hierarchy (`/proc/self/mountinfo`,
//! `/proc/self/cgroup`); the held child is moved into it before its `execve`, and everything it
//! starts stays in it. At the end, tasks still in it (a daemon the command left behind) are
//! moved back to the parent cgroup and the directory is removed; empty ones left by an rprof
//! that was killed are removed by the next recording. Creating it needs write access
//! to the hierarchy (root); when anything fails the caller falls back to inherited events.
//!
//! It leaves to others opening the events on it (`rprof-perf`) and when to use it
//! ([`crate::session`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// Bytes read at most from `/proc/self/mountinfo`, `/proc/self/cgroup` and `cgroup.procs`.
const READ_LIMIT: u64 = 1 << 20;

/// A cgroup made for one recording; removed when dropped.
#[derive(Debug)]
pub(crate) struct Cgroup {
    dir: PathBuf,
    parent: PathBuf,
    handle: File,
}

fn read_bounded(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?
        .take(READ_LIMIT)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The mount point of the cgroup v2 hierarchy, from mountinfo text (the fifth field of the
/// line whose filesystem type, after the ` - ` separator, is `cgroup2`).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount = before.split_whitespace().nth(4)?;
        // Spaces and other special characters are octal-escaped (`\040`); such a path is not
        // worth decoding here.
        (!mount.contains('\\')).then(|| PathBuf::from(mount))
    })
}

/// The calling process's path in the cgroup v2 hierarchy, from `/proc/self/cgroup` text (the
/// `0::PATH` line).
fn own_cgroup(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| path.starts_with('/') && !path.contains(".."))
}

/// Removes the empty `rprof-PID` cgroups in `parent` whose rprof is gone (killed before it
/// could remove its own). A cgroup that still holds tasks cannot be removed and stays.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten().take(4096) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("rprof-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

impl Cgroup {
    /// Makes `rprof-PID` (PID: rprof's) beside rprof's own cgroup.
    pub(crate) fn create() -> io::Result<Cgroup> {
        let unavailable = |what: &str| io::Error::new(io::ErrorKind::NotFound, what.to_string());
        let mount = cgroup2_mount(&read_bounded(Path::new("/proc/self/mountinfo"))?)
            .ok_or_else(|| unavailable("no cgroup2 hierarchy is mounted"))?;
        let text = read_bounded(Path::new("/proc/self/cgroup"))?;
        let own = own_cgroup(&text).ok_or_else(|| unavailable("no cgroup v2 path for rprof"))?;
        let parent = mount.join(own.trim_start_matches('/'));
        remove_stale(&parent);
        let dir = parent.join(format!("rprof-{}", std::process::id()));
        fs::create_dir(&dir)?;
        match File::open(&dir) {
            Ok(handle) => Ok(Cgroup {
                dir,
                parent,
                handle,
            }),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// The open directory, for `perf_event_open`.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.handle.as_fd()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Whatever is left (a daemon of the command) goes back where rprof is; a cgroup with
        // tasks cannot be removed. Bounded: a fork bomb must not keep rprof here.
        for _ in 0..16 {
            let Ok(procs) = read_bounded(&self.dir.join("cgroup.procs")) else {
                break;
            };
            let pids: Vec<&str> = procs.split_whitespace().collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = fs::write(self.parent.join("cgroup.procs"), pid);
            }
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let text = "24 30 0:21 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n\
                    35 30 0:30 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("24 30 0:21 / /a rw - cgroup cgroup rw\n"),
            None
        );
        assert_eq!(cgroup2_mount("garbage\n - cgroup2\n"), None);
        assert_eq!(
            cgroup2_mount("1 2 0:1 / /we\\040ird rw - cgroup2 cgroup2 rw\n"),
            None
        );
    }

    #[test]
    fn reads_its_own_cgroup() {
        assert_eq!(
            own_cgroup("1:cpu:/\n0::/user.slice/x.scope\n"),
            Some("/user.slice/x.scope")
        );
        assert_eq!(own_cgroup("0::/\n"), Some("/"));
        assert_eq!(own_cgroup("1:cpu:/\n"), None);
        assert_eq!(own_cgroup("0::/a/../b\n"), None);
    }
}
