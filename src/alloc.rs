//! `--alloc`: the glue of allocation profiling (`rprof record --alloc`, `rprof report` and
//! `rprof flame --alloc` on its profile). The work is in `rprof-alloc`; here: options, notes,
//! the summary printed at the end, errors → one line and an exit code.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use rprof_alloc::{AllocError, End, Options};
use rprof_profile::Profile;

use crate::exit::{with_code, FAILURE, NOT_EXECUTABLE, NOT_FOUND};

/// `--alloc-sample BYTES`: a byte count with an optional K/M/G suffix; 0 = every call.
pub fn parse_sample(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => Some(0),
        "k" | "kb" | "kib" => Some(10),
        "m" | "mb" | "mib" => Some(20),
        "g" | "gb" | "gib" => Some(30),
        _ => None,
    };
    let n = digits
        .parse::<u64>()
        .ok()
        .zip(shift)
        .and_then(|(n, s)| n.checked_mul(1 << s))
        .filter(|&n| n <= rprof_alloc::bpf::MAX_SAMPLE_BYTES);
    n.ok_or_else(|| {
        crate::exit::usage(format!(
            "--alloc-sample '{text}': give a byte count such as 512K, below 2G, or 0 for a \
             stack on every call"
        ))
    })
}

fn alloc_error(e: AllocError) -> anyhow::Error {
    match e {
        AllocError::Launch(e) => match e.exit_code() {
            Some(NOT_FOUND) => with_code(NOT_FOUND, e),
            Some(NOT_EXECUTABLE) => with_code(NOT_EXECUTABLE, e),
            Some(code) => with_code(code, e),
            None => with_code(FAILURE, e),
        },
        e => with_code(FAILURE, e),
    }
}

/// Runs `rprof record --alloc`; returns COMMAND's exit code (0 for `-p`).
pub fn record(options: &Options) -> anyhow::Result<i32> {
    let outcome = rprof_alloc::record(options, crate::naming::symbolize, |m| {
        eprintln!("rprof: note: {m}")
    })
    .map_err(alloc_error)?;
    let s = &outcome.summary;
    eprintln!("rprof: {}", rprof_alloc::report::summary_line(s));
    if s.lost > 0 {
        eprintln!(
            "rprof: warning: the kernel dropped {} records (a full ring): the totals are short",
            s.lost
        );
    }
    eprintln!(
        "rprof: wrote {} to {} (rprof report -i {} for the sites)",
        rprof_alloc::report::bytes(outcome.size),
        options.output.display(),
        options.output.display()
    );
    Ok(match outcome.end {
        End::Command(exit) => exit.shell_code(),
        End::Exited | End::Duration | End::Interrupted(_) => 0,
    })
}

/// `rprof report` of an allocation profile.
pub fn report(profile: &Profile, json: bool, top: Option<usize>) -> anyhow::Result<i32> {
    let mut out = BufWriter::new(io::stdout().lock());
    let limit = match top {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => rprof_alloc::report::DEFAULT_LIMIT,
    };
    let written = if json {
        rprof_alloc::report::render_json(profile, &mut out)
    } else {
        rprof_alloc::report::render_text(profile, limit, &mut out)
    };
    written
        .and_then(|()| out.flush())
        .map_err(crate::report::stdout_error)?;
    Ok(0)
}

/// Says why a profile has no allocation data for `--alloc`.
pub fn require(profile: &Profile, path: &Path) -> anyhow::Result<()> {
    if profile.alloc_summary.is_none() {
        return Err(crate::exit::usage(format!(
            "{} has no allocation data: record one with `rprof record --alloc -- COMMAND`",
            path.display()
        )));
    }
    Ok(())
}
