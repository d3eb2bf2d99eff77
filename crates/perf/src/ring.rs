//! The mmap'ed perf ring buffer: one metadata page followed by a power-of-two data area that
//! the kernel fills and we drain. The one ring-buffer reader of rprof (`rprof record` and
//! `rprof stat --per-thread` both use it).
//!
//! Protocol (`include/uapi/linux/perf_event.h`, and the barrier pairing spelled out in
//! `kernel/events/ring_buffer.c` and `tools/include/linux/ring_buffer.h`): the kernel writes
//! records, then advances `data_head`; we load `data_head` with acquire ordering
//! (`ring_buffer_read_head`: `smp_load_acquire`), so that the record bytes before it are
//! visible, read the records between our `data_tail` and that head, and then store the new
//! `data_tail` with release ordering (`ring_buffer_write_tail`: `smp_store_release`), so that
//! our reads of the records happen before the kernel may reuse their space. Records are handed
//! out in place; the one record that may wrap around the end of the data area is copied into a
//! scratch buffer.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use perf_event_open_sys::bindings::perf_event_mmap_page;

use crate::parse::{parse_header, HEADER_SIZE};

/// The kernel refused to map a ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// The `errno` of the failed `mmap`.
    pub errno: i32,
    /// Data pages asked for.
    pub data_pages: usize,
    /// Bytes asked for (metadata page included).
    pub bytes: usize,
}

impl MapError {
    /// True when the kernel refused because of the locked-memory limit (`perf_event_mlock_kb`
    /// and `RLIMIT_MEMLOCK`): the fix is a smaller buffer or a higher limit.
    pub fn is_mlock_limit(&self) -> bool {
        self.errno == libc::EPERM || self.errno == libc::ENOMEM
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot map a perf ring buffer of {} data pages ({} KiB): {}",
            self.data_pages,
            self.bytes / 1024,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for MapError {}

/// The buffer's own bookkeeping was inconsistent (a kernel bug or memory corruption): the
/// records after the bad spot were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingError {
    /// What was wrong.
    pub message: String,
    /// Bytes that were skipped.
    pub skipped: u64,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "perf ring buffer: {} ({} bytes skipped)",
            self.message, self.skipped
        )
    }
}

impl std::error::Error for RingError {}

/// Waits up to `timeout` (at most one second) for records on any of the rings `fds` belong to
/// (POLLIN). Returns true when every ring has hung up (POLLHUP: all the tasks it followed are
/// gone), so that a caller's loop can tell the end from a quiet moment.
pub fn wait_for_records(fds: &[BorrowedFd<'_>], timeout: std::time::Duration) -> bool {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let n = unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            timeout.as_millis().min(1000) as libc::c_int,
        )
    };
    n > 0 && pfds.iter().all(|p| p.revents & libc::POLLHUP != 0)
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// A mapped perf ring buffer.
pub struct RingBuffer {
    base: NonNull<u8>,
    map_len: usize,
    data_offset: usize,
    data_size: usize,
    scratch: Vec<u8>,
}

// SAFETY: the mapping is owned by this value; nothing else in the process refers to it.
unsafe impl Send for RingBuffer {}

impl fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuffer")
            .field("data_size", &self.data_size)
            .finish_non_exhaustive()
    }
}

impl RingBuffer {
    /// Maps the ring buffer of the perf event `fd` with `data_pages` data pages (a power of
    /// two; the metadata page comes on top).
    pub fn map(fd: BorrowedFd<'_>, data_pages: usize) -> Result<RingBuffer, MapError> {
        let page = page_size();
        let bytes = data_pages
            .checked_add(1)
            .and_then(|n| n.checked_mul(page))
            .unwrap_or(usize::MAX);
        let fail = |errno| MapError {
            errno,
            data_pages,
            bytes,
        };
        if !data_pages.is_power_of_two() || bytes == usize::MAX {
            return Err(fail(libc::EINVAL));
        }
        // SAFETY: a fresh shared mapping of the perf fd; the kernel validates the size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(fail(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        let Some(base) = NonNull::new(ptr.cast::<u8>()) else {
            return Err(fail(libc::ENOMEM));
        };
        let mut ring = RingBuffer {
            base,
            map_len: bytes,
            data_offset: page,
            data_size: data_pages * page,
            scratch: Vec::new(),
        };
        // Kernels since 4.1 say where the data area is; older ones put it right after the page.
        let meta = ring.meta();
        // SAFETY: the metadata page is mapped and at least as large as perf_event_mmap_page.
        let (offset, size) = unsafe {
            (
                std::ptr::addr_of!((*meta).data_offset).read_volatile(),
                std::ptr::addr_of!((*meta).data_size).read_volatile(),
            )
        };
        if size != 0 {
            let end = offset.checked_add(size);
            if end.is_some_and(|end| end <= bytes as u64) && size.is_power_of_two() {
                ring.data_offset = offset as usize;
                ring.data_size = size as usize;
            }
        }
        Ok(ring)
    }

    /// Bytes in the data area.
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    fn meta(&self) -> *mut perf_event_mmap_page {
        self.base.as_ptr().cast()
    }

    fn head_atomic(&self) -> &AtomicU64 {
        // SAFETY: data_head is an aligned u64 in the mapped metadata page, shared with the
        // kernel, which only ever writes it whole; it lives as long as `self`.
        unsafe { AtomicU64::from_ptr(std::ptr::addr_of_mut!((*self.meta()).data_head)) }
    }

    fn tail_atomic(&self) -> &AtomicU64 {
        // SAFETY: as for data_head; data_tail is written only by us.
        unsafe { AtomicU64::from_ptr(std::ptr::addr_of_mut!((*self.meta()).data_tail)) }
    }

    /// Bytes written by the kernel and not read yet.
    pub fn pending(&self) -> u64 {
        let head = self.head_atomic().load(Ordering::Acquire);
        head.wrapping_sub(self.tail_atomic().load(Ordering::Relaxed))
    }

    /// `len` bytes of the data area from `start`, if they lie inside it. Callers ask only for
    /// published bytes (between data_tail and data_head), which the kernel does not write.
    fn slice(&self, start: usize, len: usize) -> Option<&[u8]> {
        if start.checked_add(len)? > self.data_size {
            return None;
        }
        // SAFETY: the range lies inside the mapped data area (checked above and in `map`), and
        // the kernel leaves published bytes alone until we advance data_tail, which happens
        // only when the Batch that borrows `self` is dropped.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(self.data_offset + start), len)
        })
    }

    /// Copies `len` published bytes starting at ring position `pos` (which may wrap) into `out`.
    fn copy_wrapped(&self, pos: u64, len: usize, out: &mut Vec<u8>) {
        out.clear();
        let size = self.data_size;
        let start = (pos % size as u64) as usize;
        let first = len.min(size - start);
        if let (Some(a), Some(b)) = (self.slice(start, first), self.slice(0, len - first)) {
            out.extend_from_slice(a);
            out.extend_from_slice(b);
        }
    }

    /// Takes the records written so far. They stay readable (and the kernel does not overwrite
    /// them) until the returned [`Batch`] is dropped, which hands the space back to the kernel.
    pub fn read(&mut self) -> Batch<'_> {
        let head = self.head_atomic().load(Ordering::Acquire);
        let tail = self.tail_atomic().load(Ordering::Relaxed);
        let size = self.data_size as u64;
        let mut error = None;
        let mut end = head;
        let mut wrapped_at = None;
        let available = head.wrapping_sub(tail);
        if available > size {
            error = Some(RingError {
                message: format!("head {head} is more than the buffer size past tail {tail}"),
                skipped: available,
            });
            end = tail;
        } else {
            let mut scratch = std::mem::take(&mut self.scratch);
            let mut pos = tail;
            let mut header = Vec::with_capacity(HEADER_SIZE);
            while pos != head {
                let left = head.wrapping_sub(pos);
                if left < HEADER_SIZE as u64 {
                    error = Some(RingError {
                        message: format!("{left} stray bytes at the end"),
                        skipped: left,
                    });
                    end = pos;
                    break;
                }
                self.copy_wrapped(pos, HEADER_SIZE, &mut header);
                let record_size = match parse_header(&header) {
                    Ok((_, _, record_size)) => record_size as u64,
                    Err(_) => 0,
                };
                if record_size < HEADER_SIZE as u64 || record_size > left {
                    error = Some(RingError {
                        message: format!("record of size {record_size} with {left} bytes left"),
                        skipped: left,
                    });
                    end = pos;
                    break;
                }
                let start = pos % size;
                if start + record_size > size {
                    self.copy_wrapped(pos, record_size as usize, &mut scratch);
                    wrapped_at = Some(pos);
                }
                pos = pos.wrapping_add(record_size);
            }
            self.scratch = scratch;
        }
        Batch {
            ring: self,
            tail,
            end,
            head,
            wrapped_at,
            error,
        }
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns; no record slices outlive `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}

/// The records of one [`RingBuffer::read`]. Dropping it releases their space to the kernel.
pub struct Batch<'a> {
    ring: &'a mut RingBuffer,
    tail: u64,
    end: u64,
    head: u64,
    wrapped_at: Option<u64>,
    error: Option<RingError>,
}

impl<'a> Batch<'a> {
    /// The records, oldest first, each a slice starting with its header and `header.size`
    /// bytes long.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            ring: self.ring,
            pos: self.tail,
            end: self.end,
            wrapped_at: self.wrapped_at,
        }
    }

    /// Bytes in this batch.
    pub fn len(&self) -> u64 {
        self.end.wrapping_sub(self.tail)
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inconsistency found while reading, if any (records after it were skipped).
    pub fn error(&self) -> Option<&RingError> {
        self.error.as_ref()
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // Release: every read of the records above happens before the kernel sees the space
        // as free. Skipped (corrupt) bytes are released too, so reading can resume after them.
        self.ring.tail_atomic().store(self.head, Ordering::Release);
    }
}

/// Iterator over the records of a [`Batch`].
pub struct BatchIter<'b> {
    ring: &'b RingBuffer,
    pos: u64,
    end: u64,
    wrapped_at: Option<u64>,
}

impl<'b> Iterator for BatchIter<'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        if self.pos == self.end {
            return None;
        }
        let ring = self.ring;
        let record = if Some(self.pos) == self.wrapped_at {
            &ring.scratch[..]
        } else {
            let start = (self.pos % ring.data_size as u64) as usize;
            let (_, _, len) = parse_header(ring.slice(start, HEADER_SIZE)?).ok()?;
            ring.slice(start, len)?
        };
        if record.is_empty() {
            return None;
        }
        self.pos = self.pos.wrapping_add(record.len() as u64);
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    impl RingBuffer {
        /// A ring over anonymous memory, playing the kernel's part in tests.
        fn anonymous(data_pages: usize) -> RingBuffer {
            let page = page_size();
            let bytes = (data_pages + 1) * page;
            // SAFETY: a fresh private anonymous mapping.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            RingBuffer {
                base: NonNull::new(ptr.cast()).unwrap(),
                map_len: bytes,
                data_offset: page,
                data_size: data_pages * page,
                scratch: Vec::new(),
            }
        }

        /// Writes `bytes` at ring position `head` (wrapping) and publishes the new head.
        fn kernel_write(&mut self, bytes: &[u8]) {
            let head = self.head_atomic().load(Ordering::Relaxed);
            for (i, b) in bytes.iter().enumerate() {
                let pos = (head as usize + i) % self.data_size;
                // SAFETY: pos is inside the data area.
                unsafe { *self.base.as_ptr().add(self.data_offset + pos) = *b };
            }
            self.head_atomic()
                .store(head + bytes.len() as u64, Ordering::Release);
        }

        fn tail(&self) -> u64 {
            self.tail_atomic().load(Ordering::Relaxed)
        }
    }

    fn record(kind: u32, fill: u8, size: usize) -> Vec<u8> {
        let mut r = vec![fill; size];
        r[0..4].copy_from_slice(&kind.to_ne_bytes());
        r[4..6].copy_from_slice(&0u16.to_ne_bytes());
        r[6..8].copy_from_slice(&(size as u16).to_ne_bytes());
        r
    }

    #[test]
    fn reads_records_in_place_and_releases_them() {
        let mut ring = RingBuffer::anonymous(1);
        let a = record(9, 0xaa, 24);
        let b = record(3, 0xbb, 40);
        ring.kernel_write(&a);
        ring.kernel_write(&b);
        assert_eq!(ring.pending(), 64);
        {
            let batch = ring.read();
            let records: Vec<&[u8]> = batch.iter().collect();
            assert_eq!(records, [&a[..], &b[..]]);
            assert_eq!(batch.len(), 64);
            assert!(batch.error().is_none());
        }
        assert_eq!(ring.tail(), 64);
        assert_eq!(ring.pending(), 0);
        assert!(ring.read().is_empty());
    }

    #[test]
    fn a_record_across_the_end_is_copied_whole() {
        let mut ring = RingBuffer::anonymous(1);
        let size = ring.data_size();
        // Fill up to 16 bytes before the end, release, then write a record that wraps.
        let filler = record(9, 1, size - 16);
        ring.kernel_write(&filler);
        drop(ring.read());
        let wrapped = record(9, 0xcc, 48);
        let after = record(4, 0xdd, 16);
        ring.kernel_write(&wrapped);
        ring.kernel_write(&after);
        let batch = ring.read();
        let records: Vec<&[u8]> = batch.iter().collect();
        assert_eq!(records, [&wrapped[..], &after[..]]);
    }

    #[test]
    fn a_header_across_the_end_is_read() {
        let mut ring = RingBuffer::anonymous(1);
        let size = ring.data_size();
        // An unaligned position, so that the 8-byte header itself straddles the end.
        let filler = record(9, 1, size - 4);
        ring.kernel_write(&filler);
        drop(ring.read());
        let wrapped = record(9, 0xee, 32);
        ring.kernel_write(&wrapped);
        let batch = ring.read();
        let records: Vec<&[u8]> = batch.iter().collect();
        assert_eq!(records, [&wrapped[..]]);
    }

    #[test]
    fn corrupt_sizes_are_skipped_not_followed() {
        let mut ring = RingBuffer::anonymous(1);
        let good = record(9, 1, 16);
        let mut bad = record(9, 2, 16);
        bad[6..8].copy_from_slice(&4u16.to_ne_bytes());
        ring.kernel_write(&good);
        ring.kernel_write(&bad);
        {
            let batch = ring.read();
            assert_eq!(batch.iter().count(), 1);
            let err = batch.error().unwrap();
            assert_eq!(err.skipped, 16);
            assert!(err.to_string().contains("record of size 4"), "{err}");
        }
        // Reading resumes after the skipped bytes.
        assert_eq!(ring.tail(), 32);
        let next = record(9, 3, 8);
        ring.kernel_write(&next);
        assert_eq!(ring.read().iter().collect::<Vec<_>>(), [&next[..]]);
    }

    #[test]
    fn a_record_claiming_more_than_published_is_refused() {
        let mut ring = RingBuffer::anonymous(1);
        let mut r = record(9, 1, 16);
        r[6..8].copy_from_slice(&64u16.to_ne_bytes());
        ring.kernel_write(&r);
        let batch = ring.read();
        assert_eq!(batch.iter().count(), 0);
        assert!(batch.error().is_some());
    }

    #[test]
    fn a_head_beyond_the_buffer_is_an_error() {
        let mut ring = RingBuffer::anonymous(1);
        let size = ring.data_size() as u64;
        ring.head_atomic().store(size + 8, Ordering::Release);
        let batch = ring.read();
        assert_eq!(batch.iter().count(), 0);
        assert_eq!(batch.error().unwrap().skipped, size + 8);
    }

    #[test]
    fn many_rounds_through_the_end() {
        let mut ring = RingBuffer::anonymous(1);
        let mut expected_total = 0u64;
        for round in 0..1000usize {
            let sizes = [8 + (round % 7) * 8, 200, 16 + (round % 13) * 8];
            let written: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| record(9, (round + i) as u8, s))
                .collect();
            for r in &written {
                ring.kernel_write(r);
                expected_total += r.len() as u64;
            }
            let batch = ring.read();
            let got: Vec<Vec<u8>> = batch.iter().map(<[u8]>::to_vec).collect();
            assert_eq!(got, written, "round {round}");
        }
        assert_eq!(ring.tail(), expected_total);
    }

    #[test]
    fn mapping_a_non_perf_fd_fails_cleanly() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let err = RingBuffer::map(file.as_fd(), 1).unwrap_err();
        assert_eq!(err.data_pages, 1);
        let err = RingBuffer::map(file.as_fd(), 3).unwrap_err();
        assert_eq!(err.errno, libc::EINVAL);
    }
}
