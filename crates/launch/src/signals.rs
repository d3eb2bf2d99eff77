//! Interrupt handling: forward SIGINT/SIGTERM/SIGHUP/SIGQUIT to COMMAND, or just remember them.
//!
//! The handler is async-signal-safe: it stores the signal number in an atomic and calls
//! `kill(2)` on the pid kept in another atomic, saving and restoring `errno`.
//!
//! A signal the terminal generated (Ctrl-C, Ctrl-\, hangup; `si_code == SI_KERNEL`) has already
//! been delivered by the kernel to the whole foreground process group, COMMAND included, so it
//! is not sent a second time; signals sent with `kill` (to rprof alone) are forwarded.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// pid to forward to; 0 = do not forward.
static TARGET: AtomicI32 = AtomicI32::new(0);
/// The last interrupt received; 0 = none.
static LAST: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: only async-signal-safe operations: atomics, reading siginfo the kernel gave us,
    // kill(2), and errno save/restore.
    unsafe {
        let errno = *libc::__errno_location();
        LAST.store(sig, Ordering::SeqCst);
        let pid = TARGET.load(Ordering::SeqCst);
        let from_terminal = !info.is_null() && (*info).si_code == libc::SI_KERNEL;
        if pid > 0 && !from_terminal {
            libc::kill(pid, sig);
        }
        *libc::__errno_location() = errno;
    }
}

fn install() -> io::Result<()> {
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid starting point; we fill handler, flags, mask.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t inside `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: the handler is async-signal-safe and lives for the whole program.
        let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// From now on SIGINT, SIGTERM, SIGHUP and SIGQUIT do not end rprof: they are recorded (see
/// [`interrupted`]) and passed on to `pid` (unless the terminal already delivered them to it).
pub fn forward_signals_to(pid: u32) -> io::Result<()> {
    // kill(2) takes an i32; 0 and what does not fit would name a process group or all processes.
    let Some(raw) = i32::try_from(pid).ok().filter(|&p| p > 0) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot forward signals to pid {pid}"),
        ));
    };
    TARGET.store(raw, Ordering::SeqCst);
    install()
}

/// From now on SIGINT, SIGTERM, SIGHUP and SIGQUIT do not end rprof: they are only recorded
/// (see [`interrupted`]). For `-p PID` mode, where Ctrl-C means "stop attaching".
pub fn catch_interrupts() -> io::Result<()> {
    TARGET.store(0, Ordering::SeqCst);
    install()
}

/// The last of SIGINT/SIGTERM/SIGHUP/SIGQUIT received since a handler was installed, if any.
pub fn interrupted() -> Option<i32> {
    match LAST.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Restores the default action of SIGPIPE (the Rust runtime starts a program with it ignored),
/// so that writing into a closed pipe (`rprof report | head`) ends the process quietly instead
/// of turning every `println!` into a panic.
pub fn default_sigpipe() {
    // SAFETY: the default disposition installs no handler; setting it is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{spawn_pending, Exit};
    use std::ffi::OsString;

    /// One test: the handlers and atomics are process-wide.
    #[test]
    fn forward_then_catch() {
        let argv: Vec<OsString> = ["sleep", "10"].iter().map(OsString::from).collect();
        let mut running = spawn_pending(&argv).unwrap().start().unwrap();
        assert_eq!(interrupted(), None);
        forward_signals_to(running.pid()).unwrap();
        // SAFETY: sending SIGTERM to ourselves; the handler just installed catches it.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        let exit = running.wait().unwrap();
        assert_eq!(exit, Exit::Signal(libc::SIGTERM));
        assert_eq!(interrupted(), Some(libc::SIGTERM));

        catch_interrupts().unwrap();
        let short: Vec<OsString> = ["sleep", "0.2"].iter().map(OsString::from).collect();
        let mut other = spawn_pending(&short).unwrap().start().unwrap();
        // SAFETY: as above; now it is only recorded, and the child is not touched.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        // Another thread of the test process may take the signal: give it a moment.
        for _ in 0..100 {
            if interrupted() == Some(libc::SIGINT) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(interrupted(), Some(libc::SIGINT));
        assert_eq!(other.wait().unwrap(), Exit::Code(0));
        assert!(forward_signals_to(0).is_err());
        assert!(forward_signals_to(u32::MAX).is_err());
    }
}
