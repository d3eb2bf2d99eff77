//! A small perf ring buffer reader for what `--per-thread` needs from a COMMAND: the READ
//! records the kernel writes when an inherited thread exits (its own counts, thanks to
//! `inherit_stat`), and the COMM/FORK records that name threads. Record parsing is a pure
//! function over bytes; the mmap part only copies bytes out.

use std::os::fd::{AsRawFd, BorrowedFd};

use perf_event_open_sys::bindings::{
    perf_event_header, perf_event_mmap_page, PERF_RECORD_COMM, PERF_RECORD_FORK, PERF_RECORD_LOST,
    PERF_RECORD_READ,
};

use crate::read::{parse_group_read, GroupRead};

/// The records `--per-thread` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A thread exited; its own counts for one group.
    Read {
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// The group's values.
        values: GroupRead,
        /// The id of the counter that wrote the record (`PERF_SAMPLE_IDENTIFIER` in the
        /// sample_id trailer), when the record has one.
        emitter: Option<u64>,
    },
    /// A thread got a (new) name.
    Comm {
        /// Thread id.
        tid: u32,
        /// Name.
        comm: String,
    },
    /// A thread or process was created.
    Fork {
        /// New thread id.
        tid: u32,
        /// Creating thread id.
        ptid: u32,
    },
    /// The kernel dropped records.
    Lost {
        /// How many.
        count: u64,
    },
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parses one record (header included). `Ok(None)` for record types we do not use; `Err` with
/// a reason for a record that is shorter than its type requires.
pub fn parse_record(bytes: &[u8]) -> Result<Option<Record>, String> {
    let ty = u32_at(bytes, 0).ok_or("record shorter than its header")?;
    let body = bytes.get(8..).ok_or("record shorter than its header")?;
    let short = |what: &str| format!("record type {ty} too short for {what}");
    match ty {
        PERF_RECORD_READ => {
            let pid = u32_at(body, 0).ok_or_else(|| short("pid"))?;
            let tid = u32_at(body, 4).ok_or_else(|| short("tid"))?;
            let rest = body.get(8..).unwrap_or(&[]);
            let (values, used) = parse_group_read(rest).map_err(|e| e.to_string())?;
            // With sample_id_all and only PERF_SAMPLE_IDENTIFIER, the trailer is one u64.
            let emitter = if rest.len() >= used + 8 {
                u64_at(rest, rest.len() - 8)
            } else {
                None
            };
            Ok(Some(Record::Read {
                pid,
                tid,
                values,
                emitter,
            }))
        }
        PERF_RECORD_COMM => {
            let tid = u32_at(body, 4).ok_or_else(|| short("tid"))?;
            let name = body.get(8..).ok_or_else(|| short("comm"))?;
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            Ok(Some(Record::Comm {
                tid,
                comm: String::from_utf8_lossy(&name[..end]).into_owned(),
            }))
        }
        PERF_RECORD_FORK => {
            let tid = u32_at(body, 8).ok_or_else(|| short("tid"))?;
            let ptid = u32_at(body, 12).ok_or_else(|| short("ptid"))?;
            Ok(Some(Record::Fork { tid, ptid }))
        }
        PERF_RECORD_LOST => {
            let count = u64_at(body, 8).ok_or_else(|| short("lost count"))?;
            Ok(Some(Record::Lost { count }))
        }
        _ => Ok(None),
    }
}

/// A mapped perf ring buffer (1 metadata page + 2^n data pages).
pub struct Ring {
    base: *mut libc::c_void,
    len: usize,
    data_size: u64,
    data_offset: usize,
}

impl Ring {
    /// Maps `data_pages` (a power of two) data pages of the ring of `fd`.
    pub fn map(fd: BorrowedFd<'_>, data_pages: usize) -> std::io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("cannot get the page size"))?;
        let len = page * (1 + data_pages);
        // SAFETY: mapping a perf fd shared read-write as the perf_event_open man page says;
        // the result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Ring {
            base,
            len,
            data_size: (page * data_pages) as u64,
            data_offset: page,
        })
    }

    fn meta(&self) -> *mut perf_event_mmap_page {
        self.base.cast()
    }

    /// Copies out every complete record now in the buffer and frees the space.
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        let meta = self.meta();
        // SAFETY: meta points to the mapped metadata page; data_head is written by the
        // kernel, so read it volatile and then fence before reading the data (man page).
        let head = unsafe { std::ptr::addr_of!((*meta).data_head).read_volatile() };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // SAFETY: as above; data_tail is ours.
        let mut tail = unsafe { std::ptr::addr_of!((*meta).data_tail).read_volatile() };
        let mut records = Vec::new();
        // SAFETY: the data area is data_size bytes right after the metadata page.
        let data = unsafe {
            std::slice::from_raw_parts(
                self.base.cast::<u8>().add(self.data_offset),
                self.data_size as usize,
            )
        };
        let header_len = std::mem::size_of::<perf_event_header>() as u64;
        while head.wrapping_sub(tail) >= header_len {
            let mut header = [0u8; 8];
            copy_wrapped(data, tail, &mut header);
            let size = u64::from(u16::from_ne_bytes([header[6], header[7]]));
            if size < header_len || head.wrapping_sub(tail) < size || size > self.data_size {
                break;
            }
            let mut record = vec![0u8; size as usize];
            copy_wrapped(data, tail, &mut record);
            records.push(record);
            tail = tail.wrapping_add(size);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        // SAFETY: publishing how far we read, as the man page describes.
        unsafe { std::ptr::addr_of_mut!((*meta).data_tail).write_volatile(tail) };
        records
    }
}

fn copy_wrapped(data: &[u8], pos: u64, out: &mut [u8]) {
    if data.is_empty() {
        return;
    }
    let size = data.len();
    let start = (pos % size as u64) as usize;
    let first = out.len().min(size - start);
    out[..first].copy_from_slice(&data[start..start + first]);
    let rest = (out.len() - first).min(size);
    out[first..first + rest].copy_from_slice(&data[..rest]);
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ty: u32, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ty.to_ne_bytes());
        r.extend_from_slice(&0u16.to_ne_bytes());
        r.extend_from_slice(&((8 + body.len()) as u16).to_ne_bytes());
        r.extend_from_slice(body);
        r
    }

    fn words32(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    fn words64(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn read_comm_fork_lost() {
        let mut body = words32(&[10, 11]);
        body.extend(words64(&[1, 500, 400, 42, 7]));
        match parse_record(&record(PERF_RECORD_READ, &body)).unwrap() {
            Some(Record::Read {
                pid,
                tid,
                values,
                emitter,
            }) => {
                assert_eq!((pid, tid), (10, 11));
                assert_eq!(emitter, None);
                assert_eq!(values.values, [(7, 42)]);
                assert_eq!((values.enabled, values.running), (500, 400));
            }
            other => panic!("{other:?}"),
        }
        let mut body = words32(&[10, 12]);
        body.extend_from_slice(b"worker\0\0");
        assert_eq!(
            parse_record(&record(PERF_RECORD_COMM, &body)).unwrap(),
            Some(Record::Comm {
                tid: 12,
                comm: "worker".into()
            })
        );
        let body = words32(&[10, 10, 12, 11, 0, 0]);
        assert_eq!(
            parse_record(&record(PERF_RECORD_FORK, &body)).unwrap(),
            Some(Record::Fork { tid: 12, ptid: 11 })
        );
        let body = words64(&[1, 5]);
        assert_eq!(
            parse_record(&record(PERF_RECORD_LOST, &body)).unwrap(),
            Some(Record::Lost { count: 5 })
        );
        assert_eq!(parse_record(&record(9, &[])).unwrap(), None);
    }

    #[test]
    fn read_with_identifier_trailer() {
        let mut body = words32(&[10, 11]);
        body.extend(words64(&[1, 500, 400, 42, 7, 7]));
        match parse_record(&record(PERF_RECORD_READ, &body)).unwrap() {
            Some(Record::Read { emitter, .. }) => assert_eq!(emitter, Some(7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut body = words32(&[10, 11]);
        body.extend(words64(&[1, 500, 400, 42, 7]));
        let full = record(PERF_RECORD_READ, &body);
        for len in 0..full.len() {
            assert!(parse_record(&full[..len]).is_err(), "len {len}");
        }
        assert!(parse_record(&record(PERF_RECORD_FORK, &words32(&[1, 2, 3]))).is_err());
    }

    #[test]
    fn wrapped_copy() {
        let data = [0u8, 1, 2, 3, 4, 5, 6, 7];
        let mut out = [0u8; 4];
        copy_wrapped(&data, 6, &mut out);
        assert_eq!(out, [6, 7, 0, 1]);
        copy_wrapped(&data, 8 + 2, &mut out);
        assert_eq!(out, [2, 3, 4, 5]);
    }
}
