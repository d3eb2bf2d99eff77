//! `rprof report` on profiles that are joined, repeated, from a newer rprof, or of a process
//! that ran `exec` (issues 9.4, 9.11 and 10), through the real binary.

use crate::report::saved;
use crate::util::{run_rprof, stderr, stdout, tempdir};

/// Issue 9.4, as filed: `d + d[102:]` (102: where the header block of the reporter's file ended)
/// reported every sample twice without a word.
#[test]
fn a_profile_joined_to_itself_counts_every_sample_once_and_says_so() {
    let d = std::fs::read(saved("basic.rprof")).unwrap();
    let header_end = 16 + 8 + u32::from_le_bytes(d[16..20].try_into().unwrap()) as usize;
    let mut doubled = d.clone();
    doubled.extend_from_slice(&d[header_end..]);
    let dir = tempdir();
    std::fs::write(dir.path().join("doubled.rprof"), &doubled).unwrap();
    let out = run_rprof(dir.path(), &["report", "-i", "doubled.rprof"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(", 1,000 samples, "),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.starts_with("rprof: warning: doubled.rprof: skipped ")
            && err.contains("repeating earlier ones"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Issue 10: a profile with record and block kinds from a newer rprof is read, with one line
/// saying how many records were skipped.
#[test]
fn records_of_a_newer_rprof_are_skipped_with_a_warning() {
    let dir = tempdir();
    let path = saved("future-kinds.rprof");
    let out = run_rprof(dir.path(), &["report", "-i", &path, "--threads"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("4 records of unknown kinds skipped (written by a newer rprof)"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains(", 6 samples, 2 threads in 1 process"),
        "{text}"
    );
    assert!(text.contains("serve"), "{text}");
}

/// Issue 9.11: samples taken before an `exec` are shown under the name the thread had then.
#[test]
fn thread_table_shows_the_name_before_exec() {
    let dir = tempdir();
    let path = saved("exec.rprof");
    let out = run_rprof(dir.path(), &["report", "-i", &path, "--threads"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Tid"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        rows,
        [
            "300  300       70  70.00%   70.0 ms  busy",
            "300  300       30  30.00%   30.0 ms  launcher",
        ],
        "{text}"
    );
}
