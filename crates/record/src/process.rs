//! The process a recording follows, seen from outside: a descriptor that says when it exits
//! (`pidfd_open(2)`), whether it has exited, ending it, and the clock its records are stamped
//! with.
//!
//! It leaves starting the process and forwarding signals to it to `rprof-launch`.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `pidfd_open(2)`: a descriptor that becomes readable when the process exits.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // nix has no wrapper for pidfd_open (Linux 5.3).
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// True when the process has exited (it may still be a zombie waiting for its parent).
pub(crate) fn has_exited(pid: u32, exit_watch: Option<&OwnedFd>) -> bool {
    if let Some(fd) = exit_watch {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        // A pidfd is readable once its process has exited.
        if let Ok(n) = poll(&mut fds, PollTimeout::ZERO) {
            return n > 0;
        }
    }
    // Without a pidfd: the state in /proc/PID/stat.
    !rprof_launch::process_alive(pid)
}

/// Sends `signal` to our child `pid` (a child that is gone is no error: it is ending anyway).
pub(crate) fn signal_child(pid: u32, signal: Signal) {
    // A pid that does not fit kill(2)'s i32 would name a process group: it is no child of ours.
    if let Some(raw) = i32::try_from(pid).ok().filter(|&p| p > 0) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Now on `CLOCK_MONOTONIC`, the clock of the samplers' records (ns).
pub(crate) fn now_monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64)
    })
}

/// Attaching to a thread-rich process opens (threads × CPUs) descriptors: use the hard limit.
pub(crate) fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
