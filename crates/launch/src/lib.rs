//! rprof-launch: start a COMMAND held just before `execve`, so that counters can be attached to
//! its pid first; report exec failures the way a shell does; wait for its exit status; forward
//! Ctrl-C and friends to it.
//!
//! The sequence is [`spawn_pending`] (fork; the child blocks on a pipe), open perf events on
//! [`Pending::pid`] (typically with `enable_on_exec`), then [`Pending::start`] (the child execs
//! the path [`find_program`] found; an exec failure comes back through a close-on-exec pipe as
//! an error that knows its shell exit code), then [`Running::wait`].
//!
//! Everything the child needs (the path, argv, envp as C strings) is allocated before `fork`; the
//! child only makes async-signal-safe calls until `execve`. [`spawn_pending_into`] creates it
//! inside a cgroup directly (`clone3` with `CLONE_INTO_CGROUP`), falling back to `fork`.
//!
//! What it leaves to others: perf events, output, and deciding what to do on an interrupt.
//! [`forward_signals_to`] and [`catch_interrupts`] install process-wide signal handlers;
//! [`default_sigpipe`] gives SIGPIPE its default action back.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod signals;

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{AccessFlags, Pid};

pub use signals::{catch_interrupts, default_sigpipe, forward_signals_to, interrupted};

/// Why COMMAND could not be started or waited for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// No command was given.
    #[error("no command given")]
    Empty,
    /// The command was not found (in PATH, or at the path given).
    #[error("{name}: command not found{}", searched(.path_searched))]
    NotFound {
        /// The command as given.
        name: String,
        /// Whether PATH was searched (the name had no '/').
        path_searched: bool,
    },
    /// The command exists but cannot be executed.
    #[error("{}: cannot execute: {reason}", .path.display())]
    NotExecutable {
        /// The path that was found.
        path: PathBuf,
        /// Why (permission denied, is a directory, exec format error, ...).
        reason: String,
    },
    /// The file exists but its interpreter (`#!` line or ELF loader) does not.
    #[error("{}: bad interpreter: its `#!` interpreter or dynamic loader does not exist", .path.display())]
    BadInterpreter {
        /// The path that was executed.
        path: PathBuf,
    },
    /// An argument contains a NUL byte and cannot be passed to execve.
    #[error("argument {index} of the command contains a NUL byte")]
    Nul {
        /// Index into argv.
        index: usize,
    },
    /// A system call rprof needed (pipe, fork, waitpid, ...) failed.
    #[error("cannot {what}: {source}")]
    Sys {
        /// What rprof was doing.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

fn searched(path_searched: &bool) -> &'static str {
    if *path_searched {
        " (searched PATH)"
    } else {
        ""
    }
}

impl LaunchError {
    /// The exit code a shell would give: 127 when not found, 126 when not executable; `None`
    /// for failures of rprof itself.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            LaunchError::NotFound { .. }
            | LaunchError::BadInterpreter { .. }
            | LaunchError::Empty => Some(127),
            LaunchError::NotExecutable { .. } => Some(126),
            LaunchError::Nul { .. } | LaunchError::Sys { .. } => None,
        }
    }

    fn sys(what: &'static str, errno: Errno) -> LaunchError {
        LaunchError::Sys {
            what,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    /// The error for an `execve` of `path` that failed with `errno`.
    fn from_exec(name: &OsStr, path: &Path, errno: i32) -> LaunchError {
        if errno == libc::ENOENT {
            if path.exists() {
                // The file is there, so what is missing is its interpreter (`#!` line or ELF
                // dynamic loader); bash reports this as 127 too.
                return LaunchError::BadInterpreter {
                    path: path.to_path_buf(),
                };
            }
            return LaunchError::NotFound {
                name: name.to_string_lossy().into_owned(),
                path_searched: false,
            };
        }
        LaunchError::NotExecutable {
            path: path.to_path_buf(),
            reason: io::Error::from_raw_os_error(errno).to_string(),
        }
    }
}

/// How COMMAND ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The exit code a shell reports: the code itself, or 128+N when killed by signal N.
    pub fn shell_code(&self) -> i32 {
        match *self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// True while process `pid` exists and has not exited: its state in `/proc/PID/stat` (after
/// the command name, which may itself hold parentheses) is neither zombie (`Z`) nor dead
/// (`X`). One place for the recorder, `stat` and `latency` to ask whether a target still runs.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 1..))
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Finds the file a shell would execute for `argv0`: a name with a '/' is used as is, any
/// other name is searched in `PATH` (an empty entry is the current directory; without `PATH`,
/// `/usr/local/bin:/usr/bin:/bin`).
///
/// Not found is [`LaunchError::NotFound`] (127); found only as something that cannot be
/// executed (no execute permission, a directory) is [`LaunchError::NotExecutable`] (126).
pub fn find_program(argv0: &OsStr) -> Result<PathBuf, LaunchError> {
    let path_var = std::env::var_os("PATH");
    find_program_in(argv0, path_var.as_deref())
}

fn find_program_in(argv0: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, LaunchError> {
    if argv0.is_empty() {
        return Err(LaunchError::Empty);
    }
    let name = || argv0.to_string_lossy().into_owned();
    if argv0.as_bytes().contains(&b'/') {
        let path = PathBuf::from(argv0);
        return match check_executable(&path) {
            Check::Ok => Ok(path),
            Check::Missing => Err(LaunchError::NotFound {
                name: name(),
                path_searched: false,
            }),
            Check::NotExecutable(reason) => Err(LaunchError::NotExecutable { path, reason }),
        };
    }
    let default = OsStr::new("/usr/local/bin:/usr/bin:/bin");
    let dirs = path_var.unwrap_or(default);
    let mut first_unexecutable = None;
    for dir in dirs.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(argv0);
        match check_executable(&candidate) {
            Check::Ok => return Ok(candidate),
            Check::Missing => {}
            Check::NotExecutable(reason) => {
                first_unexecutable.get_or_insert((candidate, reason));
            }
        }
    }
    match first_unexecutable {
        Some((path, reason)) => Err(LaunchError::NotExecutable { path, reason }),
        None => Err(LaunchError::NotFound {
            name: name(),
            path_searched: true,
        }),
    }
}

enum Check {
    Ok,
    Missing,
    NotExecutable(String),
}

fn check_executable(path: &Path) -> Check {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Check::Missing,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Check::Missing,
        Err(e) => return Check::NotExecutable(e.to_string()),
    };
    if meta.is_dir() {
        return Check::NotExecutable("is a directory".to_string());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Check::NotExecutable("Permission denied".to_string());
    }
    match nix::unistd::access(path, AccessFlags::X_OK) {
        Ok(()) => Check::Ok,
        Err(e) => Check::NotExecutable(io::Error::from(e).to_string()),
    }
}

/// Everything the child needs, allocated before fork.
struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    /// The same command run by `/bin/sh` (what execvp does on ENOEXEC: a script without `#!`).
    sh_argv: Vec<CString>,
    env: Vec<CString>,
}

impl ExecPlan {
    fn new(path: &Path, argv: &[OsString]) -> Result<ExecPlan, LaunchError> {
        let cstring = |bytes: &[u8], index: usize| {
            CString::new(bytes.to_vec()).map_err(|_| LaunchError::Nul { index })
        };
        let path_c = cstring(path.as_os_str().as_bytes(), 0)?;
        let argv_c = argv
            .iter()
            .enumerate()
            .map(|(i, a)| cstring(a.as_bytes(), i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sh_argv = vec![c"/bin/sh".to_owned(), path_c.clone()];
        sh_argv.extend(argv_c.iter().skip(1).cloned());
        let env = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        Ok(ExecPlan {
            path: path_c,
            argv: argv_c,
            sh_argv,
            env,
        })
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A forked child blocked before `execve` until [`Pending::start`].
///
/// Dropping it without calling `start` or `abort` kills and reaps the child.
#[derive(Debug)]
pub struct Pending {
    pid: Pid,
    name: OsString,
    path: PathBuf,
    /// Writing a byte (or closing) releases the child.
    start_tx: Option<OwnedFd>,
    /// Carries the child's errno if `execve` fails; EOF when it succeeded.
    error_rx: Option<OwnedFd>,
}

/// Forks a child for `argv` (argv[0] looked up with [`find_program`]) that waits before `execve`
/// until [`Pending::start`]. The child inherits rprof's environment as it is now.
pub fn spawn_pending(argv: &[OsString]) -> Result<Pending, LaunchError> {
    spawn_pending_into(argv, None).map(|(pending, _)| pending)
}

/// [`spawn_pending`], with the child created inside the cgroup v2 directory `cgroup` (an open
/// descriptor of it) when the kernel can (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7). The
/// boolean says whether it was; if not, the child was forked where rprof is, and moving it is
/// the caller's business.
///
/// Created inside, the child never migrates: writing its pid to `cgroup.procs` waits for an
/// RCU grace period of the cgroup's thread-group lock, 8 to 19 ms measured here, every run.
pub fn spawn_pending_into(
    argv: &[OsString],
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<(Pending, bool), LaunchError> {
    let argv0 = argv.first().ok_or(LaunchError::Empty)?;
    let path = find_program(argv0)?;
    let plan = ExecPlan::new(&path, argv)?;
    let path_ptr = plan.path.as_ptr();
    let argv_ptrs = null_terminated(&plan.argv);
    let sh_ptrs = null_terminated(&plan.sh_argv);
    let env_ptrs = null_terminated(&plan.env);

    let (start_rx, start_tx) = start_channel()?;
    let (error_rx, error_tx) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| LaunchError::sys("create a pipe", e))?;
    let start_rx_fd = start_rx.as_raw_fd();
    let start_tx_fd = start_tx.as_raw_fd();
    let error_rx_fd = error_rx.as_raw_fd();
    let error_tx_fd = error_tx.as_raw_fd();

    let mut in_cgroup = false;
    let mut pid = -1;
    if let Some(cgroup) = cgroup {
        // SAFETY: as fork below: the child runs only async-signal-safe calls on memory
        // allocated before (clone3 without CLONE_VM copies the address space, like fork).
        pid = unsafe { clone_into_cgroup(cgroup) };
        in_cgroup = pid >= 0;
    }
    if pid < 0 {
        // SAFETY: after fork the child calls only async-signal-safe functions (close, read,
        // sigprocmask, signal, execve, write, _exit) on memory allocated before the fork.
        pid = unsafe { libc::fork() };
    }
    if pid < 0 {
        return Err(LaunchError::sys("fork", Errno::last()));
    }
    if pid == 0 {
        // SAFETY: see above; every pointer is valid, the arrays are null-terminated.
        unsafe {
            child_after_fork(
                start_rx_fd,
                start_tx_fd,
                error_rx_fd,
                error_tx_fd,
                path_ptr,
                &argv_ptrs,
                &sh_ptrs,
                &env_ptrs,
            )
        }
    }
    drop(start_rx);
    drop(error_tx);
    let pending = Pending {
        pid: Pid::from_raw(pid),
        name: argv0.clone(),
        path,
        start_tx: Some(start_tx),
        error_rx: Some(error_rx),
    };
    Ok((pending, in_cgroup))
}

/// `struct clone_args` of `clone3(2)` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Creates the child in `cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3` as a fork into `cgroup`: the child's pid in the parent, 0 in the child, -1 when the
/// kernel refused (too old, or the cgroup cannot take the child): then fork.
///
/// # Safety
/// As `fork`: the child may only make async-signal-safe calls until it execs.
unsafe fn clone_into_cgroup(cgroup: BorrowedFd<'_>) -> libc::pid_t {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: args is a valid clone_args of the size given; without CLONE_VM the child gets
    // its own copy of the address space and returns here with 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    libc::pid_t::try_from(rc).unwrap_or(-1)
}

/// The "go" channel: a socket pair rather than a pipe, so that writing to it after the child
/// died is an EPIPE error (send with MSG_NOSIGNAL), not a SIGPIPE that would end rprof.
fn start_channel() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let mut fds = [-1; 2];
    // SAFETY: fds is a valid array of two ints for the kernel to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(LaunchError::sys("create a socket pair", Errno::last()));
    }
    // SAFETY: the kernel just gave us these two descriptors; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's side: wait for the go byte, then exec. Never returns.
///
/// # Safety
/// Must be called only in the child right after fork, with valid null-terminated arrays.
#[allow(clippy::too_many_arguments)]
unsafe fn child_after_fork(
    start_rx: libc::c_int,
    start_tx: libc::c_int,
    error_rx: libc::c_int,
    error_tx: libc::c_int,
    path: *const libc::c_char,
    argv: &[*const libc::c_char],
    sh_argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
) -> ! {
    // SAFETY: the caller guarantees we are the freshly forked child; only async-signal-safe
    // calls follow.
    unsafe {
        libc::close(start_tx);
        libc::close(error_rx);
        let mut byte = 0u8;
        let got = loop {
            let n = libc::read(start_rx, (&mut byte as *mut u8).cast(), 1);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break n;
        };
        if got != 1 {
            // The parent went away or aborted: do not run the command.
            libc::_exit(127);
        }
        // Undo what rprof changed that exec would keep: the signal mask and ignored signals.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in [
            libc::SIGPIPE,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::execve(path, argv.as_ptr(), env.as_ptr());
        let mut errno = *libc::__errno_location();
        if errno == libc::ENOEXEC {
            // Like execvp: a file without a recognized format is a shell script.
            libc::execve(c"/bin/sh".as_ptr(), sh_argv.as_ptr(), env.as_ptr());
            errno = *libc::__errno_location();
        }
        let bytes = errno.to_ne_bytes();
        libc::write(error_tx, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127);
    }
}

impl Pending {
    /// The child's pid (valid before and after exec).
    pub fn pid(&self) -> u32 {
        // Positive: fork returned it.
        self.pid.as_raw() as u32
    }

    /// The path [`find_program`] found, which will be executed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the child into `execve` and waits until the exec has happened (or failed).
    ///
    /// An exec failure is an error with the shell's exit code (126/127) naming the path; the
    /// child is reaped in that case.
    pub fn start(mut self) -> Result<Running, LaunchError> {
        let pid = self.pid;
        if let Some(tx) = self.start_tx.take() {
            let written = loop {
                let go = 1u8;
                // SAFETY: sending one byte from a valid buffer on a socket we own.
                let n = unsafe {
                    libc::send(
                        tx.as_raw_fd(),
                        (&go as *const u8).cast(),
                        1,
                        libc::MSG_NOSIGNAL,
                    )
                };
                match n {
                    1 => break Ok(()),
                    _ => match Errno::last() {
                        Errno::EINTR => continue,
                        e => break Err(e),
                    },
                }
            };
            drop(tx);
            if let Err(e) = written {
                // The child is gone (EPIPE): find out how it ended.
                self.reap();
                self.error_rx = None;
                return Err(LaunchError::sys(
                    "start the command: its process ended before exec (was it killed?)",
                    e,
                ));
            }
        }
        let Some(rx) = self.error_rx.take() else {
            return Err(LaunchError::sys("start the command", Errno::EBADF));
        };
        let mut buf = [0u8; 4];
        let mut filled = 0;
        while filled < buf.len() {
            match nix::unistd::read(&rx, &mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.kill_and_reap();
                    return Err(LaunchError::sys("start the command", e));
                }
            }
        }
        match filled {
            0 => Ok(Running { pid, exit: None }),
            4 => {
                self.reap();
                Err(LaunchError::from_exec(
                    &self.name,
                    &self.path,
                    i32::from_ne_bytes(buf),
                ))
            }
            _ => {
                self.reap();
                Err(LaunchError::sys("start the command", Errno::EIO))
            }
        }
    }

    /// Kills the waiting child and reaps it (the command never runs).
    pub fn abort(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        self.start_tx = None;
        self.error_rx = None;
        let _ = kill(self.pid, Signal::SIGKILL);
        self.reap();
    }

    fn reap(&mut self) {
        while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
        // Mark as consumed for Drop.
        self.start_tx = None;
        self.error_rx = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.start_tx.is_some() || self.error_rx.is_some() {
            self.kill_and_reap();
        }
    }
}

/// A started COMMAND.
#[derive(Debug)]
pub struct Running {
    pid: Pid,
    exit: Option<Exit>,
}

impl Running {
    /// The command's pid.
    pub fn pid(&self) -> u32 {
        // Positive: fork returned it.
        self.pid.as_raw() as u32
    }

    /// Its exit, if it has ended (does not block).
    pub fn try_wait(&mut self) -> Result<Option<Exit>, LaunchError> {
        self.wait_with(Some(WaitPidFlag::WNOHANG))
    }

    /// Waits until it ends (a signal arriving meanwhile does not end the wait).
    pub fn wait(&mut self) -> Result<Exit, LaunchError> {
        loop {
            if let Some(exit) = self.wait_with(None)? {
                return Ok(exit);
            }
        }
    }

    fn wait_with(&mut self, flags: Option<WaitPidFlag>) -> Result<Option<Exit>, LaunchError> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        loop {
            let exit = match waitpid(self.pid, flags) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(LaunchError::sys("wait for the command", e)),
                Ok(WaitStatus::Exited(_, code)) => Exit::Code(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => Exit::Signal(sig as i32),
                Ok(WaitStatus::StillAlive) => return Ok(None),
                // Stopped/continued/ptrace events: not an end.
                Ok(_) => {
                    if flags.is_some() {
                        return Ok(None);
                    }
                    continue;
                }
            };
            self.exit = Some(exit);
            return Ok(Some(exit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn process_alive_tells_running_from_exited() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped yet: a zombie is not alive.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_alive(pid));
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!process_alive(u32::MAX));
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn run(args: &[&str]) -> Result<Exit, LaunchError> {
        spawn_pending(&argv(args))?.start()?.wait()
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "rprof-launch-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn exit_codes() {
        assert_eq!(run(&["true"]).unwrap(), Exit::Code(0));
        assert_eq!(run(&["false"]).unwrap(), Exit::Code(1));
        assert_eq!(run(&["sh", "-c", "exit 42"]).unwrap().shell_code(), 42);
    }

    #[test]
    fn killed_by_signal() {
        let exit = run(&["sh", "-c", "kill -9 $$"]).unwrap();
        assert_eq!(exit, Exit::Signal(9));
        assert_eq!(exit.shell_code(), 137);
        assert_eq!(exit.to_string(), "killed by SIGKILL");
    }

    #[test]
    fn missing_command_is_127() {
        let err = spawn_pending(&argv(&["rprof-no-such-command-xyz"])).unwrap_err();
        assert_eq!(err.exit_code(), Some(127));
        assert_eq!(
            err.to_string(),
            "rprof-no-such-command-xyz: command not found (searched PATH)"
        );
        let err = spawn_pending(&argv(&["/nonexistent/dir/cmd"])).unwrap_err();
        assert_eq!(err.exit_code(), Some(127));
        assert!(err.to_string().contains("/nonexistent/dir/cmd"), "{err}");
        assert_eq!(spawn_pending(&[]).unwrap_err().exit_code(), Some(127));
    }

    #[test]
    fn not_executable_is_126() {
        let dir = tempdir();
        let file = dir.join("plain.txt");
        std::fs::write(&file, "echo hi\n").unwrap();
        let err = spawn_pending(&[file.clone().into_os_string()]).unwrap_err();
        assert_eq!(err.exit_code(), Some(126));
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        let err = spawn_pending(&[dir.clone().into_os_string()]).unwrap_err();
        assert_eq!(err.exit_code(), Some(126));
        assert!(err.to_string().contains("is a directory"), "{err}");
        // Found in PATH only as a non-executable file.
        let err = find_program_in(OsStr::new("plain.txt"), Some(dir.as_os_str())).unwrap_err();
        assert_eq!(err.exit_code(), Some(126));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exec_failure_comes_back_through_the_pipe() {
        // Passes find_program() (exists, executable) but execve fails: the `#!` interpreter is
        // missing (ENOENT), which a shell reports as 127 naming the script.
        let dir = tempdir();
        let script = dir.join("bad-interp");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pending = spawn_pending(&[script.clone().into_os_string()]).unwrap();
        let err = pending.start().unwrap_err();
        assert_eq!(err.exit_code(), Some(127), "{err}");
        assert!(
            err.to_string().contains("bad-interp: bad interpreter"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn script_without_shebang_runs_with_sh() {
        let dir = tempdir();
        let script = dir.join("noshebang");
        std::fs::write(&script, "exit 7\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exit = run(&[script.to_str().unwrap()]).unwrap();
        assert_eq!(exit, Exit::Code(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn child_waits_before_exec() {
        let pending = spawn_pending(&argv(&["true"])).unwrap();
        let pid = pending.pid();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Still our own image: it has not exec'd `true`, and it has not exited.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        let mut running = pending.start().unwrap();
        assert_eq!(running.pid(), pid);
        assert_eq!(running.wait().unwrap(), Exit::Code(0));
        // Cached after the first wait.
        assert_eq!(running.try_wait().unwrap(), Some(Exit::Code(0)));
    }

    /// Issue 13: a child created inside a cgroup is there before it execs (no migration); a
    /// descriptor that is not a cgroup falls back to fork.
    #[test]
    fn the_child_can_be_created_inside_a_cgroup() {
        let fallback = std::fs::File::open("/").unwrap();
        let (pending, inside) =
            spawn_pending_into(&argv(&["true"]), Some(fallback.as_fd())).unwrap();
        assert!(!inside, "/ is not a cgroup directory");
        assert_eq!(pending.start().unwrap().wait().unwrap(), Exit::Code(0));

        // A cgroup of our own beside the test's, where cgroup v2 is mounted and we may.
        let mount = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(" - cgroup2 "))
            .and_then(|l| l.split_whitespace().nth(4).map(str::to_string));
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let own = own
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string));
        let (Some(mount), Some(own)) = (mount, own) else {
            return rprof_testkit::skip("no cgroup v2 hierarchy");
        };
        let name = format!("rprof-launch-test-{}", std::process::id());
        let dir = Path::new(&mount)
            .join(own.trim_start_matches('/'))
            .join(&name);
        if std::fs::create_dir(&dir).is_err() {
            return rprof_testkit::skip("cannot create a cgroup here (not root?)");
        }
        let handle = std::fs::File::open(&dir).unwrap();
        let (pending, inside) = spawn_pending_into(&argv(&["true"]), Some(handle.as_fd())).unwrap();
        let placed = std::fs::read_to_string(format!("/proc/{}/cgroup", pending.pid()));
        let status = pending.start().unwrap().wait().unwrap();
        let _ = std::fs::remove_dir(&dir);
        assert!(
            inside,
            "clone3 with CLONE_INTO_CGROUP (Linux 5.7 and later)"
        );
        assert!(
            placed.unwrap().trim_end().ends_with(&name),
            "inside before exec"
        );
        assert_eq!(status, Exit::Code(0));
    }

    #[test]
    fn abort_and_drop_reap_the_child() {
        let pending = spawn_pending(&argv(&["true"])).unwrap();
        let pid = pending.pid();
        pending.abort();
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let pending = spawn_pending(&argv(&["true"])).unwrap();
        let pid = pending.pid();
        drop(pending);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn arguments_and_environment_reach_the_command() {
        let exit = run(&[
            "sh",
            "-c",
            "test \"$1\" = 'a b' && test -n \"$PATH\"",
            "sh",
            "a b",
        ])
        .unwrap();
        assert_eq!(exit, Exit::Code(0));
        let err = spawn_pending(&[OsString::from("true"), OsString::from("a\0b")]).unwrap_err();
        assert!(matches!(err, LaunchError::Nul { index: 1 }));
    }

    #[test]
    fn start_after_the_child_died_is_an_error_not_sigpipe() {
        let pending = spawn_pending(&argv(&["true"])).unwrap();
        kill(Pid::from_raw(pending.pid() as i32), Signal::SIGKILL).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let err = pending.start().unwrap_err();
        assert_eq!(err.exit_code(), None, "{err}");
    }

    #[test]
    fn try_wait_does_not_block() {
        let mut running = spawn_pending(&argv(&["sleep", "0.3"]))
            .unwrap()
            .start()
            .unwrap();
        assert_eq!(running.try_wait().unwrap(), None);
        assert_eq!(running.wait().unwrap(), Exit::Code(0));
    }

    #[test]
    fn find_program_like_a_shell() {
        assert!(find_program(OsStr::new("sh")).unwrap().is_absolute());
        let dir = tempdir();
        let exe = dir.join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        assert_eq!(
            find_program_in(OsStr::new("tool"), Some(OsStr::new(&path))).unwrap(),
            exe
        );
        assert!(matches!(
            find_program_in(OsStr::new("tool"), Some(OsStr::new("/nonexistent"))),
            Err(LaunchError::NotFound { .. })
        ));
        assert!(matches!(
            find_program_in(OsStr::new(""), None),
            Err(LaunchError::Empty)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
