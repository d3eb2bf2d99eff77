//! What kind of wait a futex wait is (a mutex, a read-write lock, a condition variable, a
//! join, a semaphore, something else), and which frame of a waiting or waking stack is the
//! program's own call site rather than the lock's implementation.
//!
//! The futex system call does not say what the word belongs to: `FUTEX_WAIT` and
//! `FUTEX_WAIT_BITSET` serve every primitive (glibc's mutexes wait with `FUTEX_WAIT`, its
//! condition variables, joins, rwlocks and semaphores with `FUTEX_WAIT_BITSET`; Rust's std
//! waits with `FUTEX_WAIT_BITSET` for all of them). The user-space functions on the stack do
//! say: they are looked for leaf first (`docs/off-cpu.md`, "Lock contention"). Only when no
//! function is recognised does the operation decide, and then only for what it proves
//! (`FUTEX_LOCK_PI` is a priority-inheritance mutex).

/// What a futex word belongs to, as found from the waiting stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A mutex (pthread, Rust std, parking_lot): a blocked acquisition is contention.
    Mutex,
    /// A read-write lock: a blocked read or write acquisition is contention.
    RwLock,
    /// A condition variable: waiting for a signal, not for a lock.
    Condvar,
    /// Waiting for a thread to end (`pthread_join`, `JoinHandle::join`).
    Join,
    /// A semaphore (`sem_wait`).
    Semaphore,
    /// A futex wait no rule recognised (`thread::park`, `Once`, barriers, channels, ...).
    Other,
}

impl Kind {
    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mutex => "mutex",
            Kind::RwLock => "rwlock",
            Kind::Condvar => "condvar",
            Kind::Join => "join",
            Kind::Semaphore => "semaphore",
            Kind::Other => "other",
        }
    }

    /// Waits of this kind are lock contention (a thread wanted a lock another held).
    pub fn is_contention(self) -> bool {
        matches!(self, Kind::Mutex | Kind::RwLock)
    }
}

/// `__GI___lll_lock_wait` → `lll_lock_wait`.
fn clean(function: &str) -> &str {
    let name = function.trim_start_matches('_');
    name.strip_prefix("GI_")
        .map_or(name, |n| n.trim_start_matches('_'))
}

/// libc / libpthread functions (cleaned names) and the kind of wait they make.
const C_FUNCTIONS: &[(&str, Kind)] = &[
    ("lll_lock_wait", Kind::Mutex),
    ("lll_lock_wait_private", Kind::Mutex),
    ("lll_clocklock_wait", Kind::Mutex),
    ("pthread_mutex_lock", Kind::Mutex),
    ("pthread_mutex_lock_full", Kind::Mutex),
    ("pthread_mutex_cond_lock", Kind::Mutex),
    ("pthread_mutex_timedlock", Kind::Mutex),
    ("pthread_mutex_clocklock", Kind::Mutex),
    ("pthread_mutex_clocklock_common", Kind::Mutex),
    ("futex_lock_pi64", Kind::Mutex),
    ("pthread_rwlock_rdlock", Kind::RwLock),
    ("pthread_rwlock_wrlock", Kind::RwLock),
    ("pthread_rwlock_rdlock_full", Kind::RwLock),
    ("pthread_rwlock_wrlock_full", Kind::RwLock),
    ("pthread_rwlock_rdlock_full64", Kind::RwLock),
    ("pthread_rwlock_wrlock_full64", Kind::RwLock),
    ("pthread_rwlock_timedrdlock", Kind::RwLock),
    ("pthread_rwlock_timedwrlock", Kind::RwLock),
    ("pthread_rwlock_clockrdlock", Kind::RwLock),
    ("pthread_rwlock_clockwrlock", Kind::RwLock),
    ("pthread_cond_wait", Kind::Condvar),
    ("pthread_cond_timedwait", Kind::Condvar),
    ("pthread_cond_clockwait", Kind::Condvar),
    ("pthread_cond_wait_common", Kind::Condvar),
    ("pthread_join", Kind::Join),
    ("pthread_clockjoin_ex", Kind::Join),
    ("pthread_timedjoin_np", Kind::Join),
    ("pthread_clockjoin_np", Kind::Join),
    ("pthread_tryjoin_np", Kind::Join),
    ("sem_wait", Kind::Semaphore),
    ("sem_timedwait", Kind::Semaphore),
    ("sem_clockwait", Kind::Semaphore),
    ("new_sem_wait_slow", Kind::Semaphore),
    ("new_sem_wait_slow64", Kind::Semaphore),
];

/// Parts of demangled Rust names (std's futex primitives, parking_lot) and their kind. Looked
/// for inside the name: paths move between std versions (`std::sys::sync::mutex::futex`,
/// `std::sys::locks::futex_mutex`), the type and method names stay.
const RUST_PARTS: &[(&str, Kind)] = &[
    ("Mutex::lock_contended", Kind::Mutex),
    ("RawMutex::lock_slow", Kind::Mutex),
    ("ReentrantMutex", Kind::Mutex),
    ("RwLock::read_contended", Kind::RwLock),
    ("RwLock::write_contended", Kind::RwLock),
    ("RawRwLock::lock_shared_slow", Kind::RwLock),
    ("RawRwLock::lock_exclusive_slow", Kind::RwLock),
    ("RawRwLock::lock_upgradable_slow", Kind::RwLock),
    ("Condvar::wait", Kind::Condvar),
    ("Condvar::wait_timeout", Kind::Condvar),
    ("Condvar::wait_until_internal", Kind::Condvar),
    ("Condvar::wait_optional_timeout", Kind::Condvar),
    ("JoinInner<T>::join", Kind::Join),
    ("JoinHandle<T>::join", Kind::Join),
];

/// The futex operations (without `FUTEX_PRIVATE_FLAG` and `FUTEX_CLOCK_REALTIME`) that wait.
const FUTEX_WAIT: u64 = 0;
const FUTEX_LOCK_PI: u64 = 6;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAIT_REQUEUE_PI: u64 = 11;
const FUTEX_LOCK_PI2: u64 = 13;
/// The operation without its flags.
const FUTEX_CMD_MASK: u64 = 127;

/// True when `op` (the futex call's second argument) is a waiting operation.
pub fn is_wait_op(op: u64) -> bool {
    matches!(
        op & FUTEX_CMD_MASK,
        FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_WAIT_REQUEUE_PI
    )
}

/// The kind of the function `name`, if it is one of the known waiting functions.
pub fn kind_of_function(name: &str) -> Option<Kind> {
    let cleaned = clean(name);
    if let Some(&(_, kind)) = C_FUNCTIONS.iter().find(|(n, _)| *n == cleaned) {
        return Some(kind);
    }
    // `<std::sys::sync::mutex::futex::Mutex>::lock_contended` and
    // `std::sys::sync::mutex::futex::Mutex::lock_contended` are the same function.
    let plain = |s: &str| s.replace(">::", "::").replace('<', "");
    let name = plain(name);
    RUST_PARTS
        .iter()
        .find(|(part, _)| name.contains(&plain(part)))
        .map(|&(_, kind)| kind)
}

/// The kind of a futex wait: from its user functions, leaf first (`functions`), else from
/// what the operation proves.
pub fn classify<'a>(functions: impl IntoIterator<Item = &'a str>, op: u64) -> Kind {
    if let Some(kind) = functions.into_iter().find_map(kind_of_function) {
        return kind;
    }
    match op & FUTEX_CMD_MASK {
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 => Kind::Mutex,
        FUTEX_WAIT_REQUEUE_PI => Kind::Condvar,
        _ => Kind::Other,
    }
}

/// Name prefixes of the lock machinery between a program's call and the system call: the
/// frames skipped to find the call site. Demangled Rust names are looked at without a leading
/// `<` (trait impls: `<std::sync::MutexGuard<T> as core::ops::drop::Drop>::drop`).
const MACHINERY_PREFIXES: &[&str] = &[
    "std::sys::",
    "std::sync::",
    "std::thread::",
    "std::sys_common::",
    "core::",
    "alloc::sync::",
    "lock_api::",
    "parking_lot::",
    "parking_lot_core::",
];

/// True when the frame of `function` in module `module` is part of a lock's implementation:
/// the C library (and the dynamic loader), the syscall wrapper, or Rust's std / parking_lot
/// lock code.
pub fn is_machinery(function: &str, module: &str) -> bool {
    if module.starts_with("libc.so")
        || module.starts_with("libc-")
        || module.starts_with("libpthread")
        || module.starts_with("ld-linux")
    {
        return true;
    }
    let cleaned = clean(function);
    if cleaned == "syscall" || kind_of_function(function).is_some() {
        return true;
    }
    let rust = function.trim_start_matches('<');
    MACHINERY_PREFIXES.iter().any(|p| rust.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: glibc's mutex wait is a mutex even below a condition variable (the re-lock
    /// after a signal); the condition variable's own wait is not contention.
    #[test]
    fn glibc_names() {
        assert_eq!(
            classify(["__GI___lll_lock_wait", "___pthread_mutex_lock"], 128),
            Kind::Mutex
        );
        assert_eq!(
            classify(
                [
                    "__lll_lock_wait",
                    "__pthread_mutex_cond_lock",
                    "__pthread_cond_wait"
                ],
                128
            ),
            Kind::Mutex
        );
        assert_eq!(
            classify(
                [
                    "__futex_abstimed_wait_common",
                    "__pthread_cond_wait_common",
                    "worker"
                ],
                137
            ),
            Kind::Condvar
        );
        assert_eq!(
            classify(["__pthread_clockjoin_ex", "main"], 265),
            Kind::Join
        );
        assert!(!Kind::Condvar.is_contention());
        assert!(Kind::Mutex.is_contention());
    }

    /// Issue 17: Rust std waits all use FUTEX_WAIT_BITSET; the functions tell them apart.
    #[test]
    fn rust_names() {
        assert_eq!(
            classify(
                [
                    "std::sys::pal::unix::futex::futex_wait",
                    "std::sys::sync::mutex::futex::Mutex::lock_contended",
                ],
                137
            ),
            Kind::Mutex
        );
        assert_eq!(
            classify(
                [
                    "std::sys::pal::unix::futex::futex_wait",
                    "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
                ],
                137
            ),
            Kind::Condvar
        );
        assert_eq!(
            classify(
                [
                    "std::sys::pal::unix::futex::futex_wait",
                    "<std::sys::sync::mutex::futex::Mutex>::lock_contended",
                ],
                137
            ),
            Kind::Mutex
        );
        assert_eq!(classify(["fun_1234"], 137), Kind::Other);
        assert_eq!(classify(["fun_1234"], 6 | 128), Kind::Mutex);
    }

    #[test]
    fn wait_ops() {
        assert!(is_wait_op(128));
        assert!(is_wait_op(137));
        assert!(is_wait_op(9 | 256));
        assert!(!is_wait_op(129));
        assert!(!is_wait_op(138));
    }

    #[test]
    fn machinery() {
        assert!(is_machinery("__lll_lock_wait", "libc.so.6"));
        assert!(is_machinery(
            "<std::sync::poison::mutex::MutexGuard<T> as core::ops::drop::Drop>::drop",
            "app"
        ));
        assert!(is_machinery("core::ptr::drop_in_place<T>", "app"));
        assert!(!is_machinery("locks_rust::update_book", "app"));
        assert!(!is_machinery("update_order_book", "locks"));
    }
}
