//! Integration tests of `rprof export` (issue 12, exports): every format is read back by a
//! reader nobody here wrote. `go tool pprof -top` must list the hottest functions `rprof report`
//! lists, with the same samples; speedscope (its own files, from the npm package that .ci/run
//! installs into `target/speedscope`) must open the export in headless Chromium and show the
//! profile's name, its threads and its functions; the Firefox Profiler export must hold the
//! processed format's tables, consistent with each other and with the report. Then bad input:
//! unknown formats, unwritable outputs, missing, corrupt, cut-short and empty profiles, and
//! names that need escaping.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::report::{record, report_fixture, saved};
use crate::util::{build_c, fixture_out_dir, run_rprof, skip, stderr, stdout, tempdir};

/// Runs `rprof export ARGS` in `dir` and requires success.
fn export(dir: &Path, args: &[&str]) -> Output {
    crate::util::rprof_ok(dir, "export", args)
}

/// `rprof report --json ARGS` in `dir`.
fn report_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["report", "--json"];
    all.extend_from_slice(args);
    let out = run_rprof(dir, &all);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

/// The report's `n` hottest functions by self samples: (name, self samples).
fn report_top(doc: &Value, n: usize) -> Vec<(String, u64)> {
    doc["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .take(n)
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["self"].as_u64().unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// pprof, read by go tool pprof

/// The `go` command, or `None` (after a visible SKIP) when it is not installed.
fn go() -> Option<PathBuf> {
    let found = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        Some(PathBuf::from("go"))
    } else {
        skip("go is not installed (apt-get install golang-go; .ci/run does)");
        None
    }
}

/// `go tool pprof ARGS FILE`, which must succeed; its stdout.
fn pprof(go: &Path, args: &[&str], file: &Path) -> String {
    let home = tempdir();
    let out = Command::new(go)
        .arg("tool")
        .arg("pprof")
        .args(args)
        .arg(file)
        // pprof keeps nothing for -top, but must not write into the real home if it did.
        .env("HOME", home.path())
        .env("PPROF_TMPDIR", home.path())
        .output()
        .expect("go tool pprof runs");
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The rows of `go tool pprof -top`: (function, flat, flat%), with pprof's ` (inline)` mark
/// taken off the name.
fn pprof_top(text: &str) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("flat  flat%") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let number = |s: &str| -> f64 {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            digits.parse().unwrap_or_else(|_| panic!("{s} in {line}"))
        };
        let name = fields[5..].join(" ");
        let name = name.strip_suffix(" (inline)").unwrap_or(&name).to_string();
        rows.push((
            name,
            number(fields[0]),
            number(fields[1].trim_end_matches('%')),
        ));
    }
    assert!(
        !rows.is_empty(),
        "no table in go tool pprof's output:\n{text}"
    );
    rows
}

/// A name as `go tool pprof` shows it: it leaves out template and generic arguments (`<...>`),
/// so `<Vec<T> as Extend<&T>>::extend` is `::extend`.
fn as_pprof_shows(name: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::new();
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// pprof's samples of the hottest functions are the report's, sample for sample, and their
/// CPU time shares are the report's shares (periods vary a little between samples).
fn assert_pprof_matches_report(go: &Path, dir: &Path, profile: &str, n: usize) {
    export(dir, &["-f", "pprof", "-i", profile, "-o", "out.pb.gz"]);
    let file = dir.join("out.pb.gz");
    let doc = report_json(dir, &["-i", profile]);
    let top = report_top(&doc, n);
    let by_samples = pprof_top(&pprof(go, &["-top", "-sample_index=samples"], &file));
    let by_time = pprof_top(&pprof(go, &["-top"], &file));
    for (rank, (name, samples)) in top.iter().enumerate() {
        let name = &as_pprof_shows(name);
        let row = by_samples
            .iter()
            .find(|r| &r.0 == name)
            .unwrap_or_else(|| panic!("{name} is not in go tool pprof -top: {by_samples:?}"));
        assert_eq!(row.1, *samples as f64, "samples of {name}");
        // The same rank, unless tied with a neighbour.
        let tied = top.iter().filter(|(_, s)| s == samples).count() > 1;
        assert!(
            tied || by_samples[rank].0 == *name,
            "rank {rank}: report {name}, pprof {:?}",
            by_samples[rank]
        );
        let share = doc["functions"][rank]["self_percent"].as_f64().unwrap();
        let time_row = by_time.iter().find(|r| &r.0 == name).unwrap();
        assert!(
            (time_row.2 - share).abs() < 2.0,
            "{name}: pprof {}% of CPU time, report {share}% of samples",
            time_row.2
        );
    }
}

/// The saved profile: pprof lists square, ::extend (pprof shortens the Rust name), fib, compute
/// with the report's samples, labels samples with thread names, tids and pids, and keeps the
/// build ids and the recording's start and period.
#[test]
fn go_tool_pprof_reads_the_saved_profile_as_the_report_does() {
    let Some(go) = go() else { return };
    let dir = tempdir();
    let profile = saved("basic.rprof");
    let out = export(
        dir.path(),
        &["--format", "pprof", "-i", &profile, "-o", "basic.pb.gz"],
    );
    assert_eq!(
        stderr(&out),
        "rprof: wrote the pprof profile to basic.pb.gz\n"
    );
    let file = dir.path().join("basic.pb.gz");
    let rows = pprof_top(&pprof(&go, &["-top", "-sample_index=samples"], &file));
    let names: Vec<&str> = rows.iter().take(4).map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["square", "::extend", "fib", "compute"], "{rows:?}");
    let tags = pprof(&go, &["-tags", "-sample_index=samples"], &file);
    for tag in [
        "640.0 (64.00%): app",
        "300.0 (30.00%): worker",
        "200.0 (20.00%): 101",
    ] {
        assert!(tags.contains(tag), "no `{tag}` in:\n{tags}");
    }
    let raw = pprof(&go, &["-raw"], &file);
    assert!(raw.contains("PeriodType: cpu nanoseconds"), "{raw}");
    assert!(raw.contains("Period: 1000000"), "{raw}");
    assert!(raw.contains("Time: 2026-11-28 02:50:13 +0000 UTC"), "{raw}");
    assert!(
        raw.contains("/nonexistent/rprof-fixture/app b11d00 [FN][FL][LN][IN]"),
        "{raw}"
    );
    // square was inlined into compute: one location, two lines.
    let top = pprof(&go, &["-top", "-sample_index=samples"], &file);
    assert!(top.contains("square (inline)"), "{top}");
    assert_pprof_matches_report(&go, dir.path(), &profile, 6);
}

/// A live recording of a C program with designed shares: pprof's hottest functions are the
/// report's, with the same samples each.
#[test]
fn go_tool_pprof_lists_the_hottest_functions_of_a_recording() {
    let Some(go) = go() else { return };
    let bin = report_fixture("report_shares");
    let dir = tempdir();
    record(dir.path(), &bin);
    let doc = report_json(dir.path(), &[]);
    // mix (~65 %) and spin_b (~24 %) lead; spin_a (~6 %) can trail a kernel scheduler function
    // when the machine is loaded (finish_task_switch was third once under stress-ng), so it
    // only has to be in the report. pprof must agree with whatever the report's top is.
    let names: Vec<String> = report_top(&doc, 3).into_iter().map(|r| r.0).collect();
    for expected in ["mix", "spin_b"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    let all: Vec<String> = report_top(&doc, usize::MAX)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(all.iter().any(|n| n == "spin_a"), "{all:?}");
    assert_pprof_matches_report(&go, dir.path(), "rprof.data", 3);
    // The main binary is pprof's main file.
    let top = pprof(&go, &["-top"], &dir.path().join("out.pb.gz"));
    assert!(top.starts_with("File: report_shares\n"), "{top}");
}

/// A duration as `go tool pprof` prints it (`672.18ms`, `1.21s`, `12us`, `0`), in nanoseconds.
fn pprof_ns(s: &str) -> f64 {
    let (digits, scale) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1e6)
    } else if let Some(d) = s.strip_suffix("us") {
        (d, 1e3)
    } else if let Some(d) = s.strip_suffix("ns") {
        (d, 1.0)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1e9)
    } else {
        (s, 1.0)
    };
    digits
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("not a duration: {s}"))
        * scale
}

/// The rows of `go tool pprof -top` on a time type: (function, flat ns, cum ns).
fn pprof_time_rows(text: &str) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("flat  flat%") {
            in_table = true;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !in_table || fields.len() < 6 {
            continue;
        }
        let name = fields[5..].join(" ");
        let name = name.strip_suffix(" (inline)").unwrap_or(&name).to_string();
        rows.push((name, pprof_ns(fields[0]), pprof_ns(fields[3])));
    }
    assert!(
        !rows.is_empty(),
        "no table in go tool pprof's output:\n{text}"
    );
    rows
}

/// Issue 12 (b): the pprof export of an `--off-cpu` recording (report_threads: the main thread
/// waits ~0.67 s in `lock` in pthread_join) carries `off_cpu/nanoseconds`, and
/// `go tool pprof -sample_index=off_cpu` ranks the functions as `rprof report --off-cpu` does,
/// with the same off-CPU totals: in all, per function (cum = the report's total) and per
/// reason (the reason frames, `[lock]`, are the leaves). The on-CPU types are untouched: the
/// default type is still `cpu` and the samples are the report's 600.
#[test]
fn go_tool_pprof_reads_off_cpu_time_as_the_report_does() {
    let Some(go) = go() else { return };
    let dir = tempdir();
    let profile = saved("threads-offcpu.rprof");
    export(
        dir.path(),
        &["-f", "pprof", "-i", &profile, "-o", "off.pb.gz"],
    );
    let file = dir.path().join("off.pb.gz");
    let doc = report_json(dir.path(), &["--off-cpu", "-i", &profile]);
    assert_eq!(doc["weight"], "off_cpu_ns");
    let threads = doc["threads"].as_array().expect("threads");
    let off_total: u64 = threads
        .iter()
        .map(|t| t["off_cpu_ns"].as_u64().unwrap())
        .sum();
    let lock_total: u64 = threads
        .iter()
        .map(|t| t["wait_ns"]["lock"].as_u64().unwrap())
        .sum();
    assert!(
        lock_total > 500_000_000,
        "the fixture waits ~0.67 s: {lock_total}"
    );
    let close = |pprof: f64, report: u64, what: &str| {
        // pprof prints 2 decimals of ms (or of s above 10 s): 0.5 % is its rounding and more.
        assert!(
            (pprof - report as f64).abs() <= report as f64 * 0.005 + 10_000.0,
            "{what}: pprof {pprof} ns, report {report} ns"
        );
    };

    let text = pprof(&go, &["-top", "-cum", "-sample_index=off_cpu"], &file);
    assert!(text.contains("Type: off_cpu\n"), "{text}");
    let total = text
        .lines()
        .find_map(|l| l.split("Total samples = ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no total in {text}"));
    close(pprof_ns(total), off_total, "off-CPU time in all");
    let rows = pprof_time_rows(&text);
    let lock = rows
        .iter()
        .find(|r| r.0 == "[lock]")
        .unwrap_or_else(|| panic!("no [lock] leaf: {rows:?}"));
    close(lock.1, lock_total, "[lock]");
    // The report's functions by total off-CPU time, against pprof's by cum (the reason frames
    // are pprof's leaves, and the report's columns, not its rows).
    let mut functions: Vec<(String, u64)> = doc["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["total"].as_u64().unwrap(),
            )
        })
        .collect();
    functions.sort_by_key(|f| std::cmp::Reverse(f.1));
    let by_cum: Vec<&(String, f64, f64)> = rows.iter().filter(|r| !r.0.starts_with('[')).collect();
    for (rank, (name, ns)) in functions.iter().take(5).enumerate() {
        let row = by_cum
            .iter()
            .find(|r| &r.0 == name)
            .unwrap_or_else(|| panic!("{name} is not in pprof -top -cum: {by_cum:?}"));
        close(row.2, *ns, name);
        let tied = functions.iter().filter(|(_, n)| n == ns).count() > 1;
        assert!(
            tied || by_cum[rank].0 == *name,
            "rank {rank}: report {name}, pprof {:?}",
            by_cum[rank]
        );
    }
    assert_eq!(functions[0].0, "schedule", "{functions:?}");

    let cpu = pprof(&go, &["-top"], &file);
    assert!(cpu.contains("Type: cpu\n"), "{cpu}");
    let samples = pprof(&go, &["-top", "-sample_index=samples"], &file);
    assert!(samples.contains("Total samples = 600 "), "{samples}");
}

// ---------------------------------------------------------------------------------------------
// speedscope, in headless Chromium

/// speedscope's own files (`dist/release` of the npm package), or `None` after a visible SKIP.
fn speedscope_release() -> Option<PathBuf> {
    let dir = match std::env::var_os("RPROF_SPEEDSCOPE") {
        Some(dir) => PathBuf::from(dir),
        None => fixture_out_dir()
            .parent()
            .expect("target directory")
            .join("speedscope/node_modules/speedscope/dist/release"),
    };
    if dir.join("index.html").is_file() {
        Some(dir)
    } else {
        skip(&format!(
            "speedscope is not installed at {} (npm install --prefix target/speedscope \
             speedscope; .ci/run does)",
            dir.display()
        ));
        None
    }
}

/// `python3 -m http.server` on a free loopback port serving `root`, stopped when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start(root: &Path) -> Server {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // "Serving HTTP on 127.0.0.1 port 40281 (http://127.0.0.1:40281/) ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server's first line");
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of speedscope's page (tags taken out, entities decoded) after it loaded `profile`
/// in the sandwich view (its table of functions).
fn speedscope_page(release: &Path, profile: &Path) -> String {
    let root = tempdir();
    for entry in std::fs::read_dir(release).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), root.path().join(entry.file_name())).unwrap();
        }
    }
    std::fs::copy(profile, root.path().join("profile.json")).unwrap();
    let server = Server::start(root.path());
    let base = format!("http://127.0.0.1:{}", server.port);
    let url = format!("{base}/index.html#profileURL={base}/profile.json&view=sandwich");
    let scratch = tempdir();
    let out = crate::util::headless_chromium(&chromium(), scratch.path())
        .args(["--virtual-time-budget=20000", "--dump-dom"])
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium on {url}: {}", stderr(&out));
    let dom = stdout(&out);
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push('|');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("|")
}

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium is not installed: apt-get install -y chromium (.ci/run does)");
}

/// speedscope opens the export: its title is the profile's name, its thread list has the four
/// threads with their CPU time, and its sandwich table has the app thread's functions with the
/// report's self times (300 ms of square, 47% of the thread's 640 ms).
#[test]
fn speedscope_opens_the_export_with_its_threads_and_functions() {
    let Some(release) = speedscope_release() else {
        return;
    };
    let dir = tempdir();
    let profile = saved("basic.rprof");
    export(
        dir.path(),
        &[
            "-f",
            "speedscope",
            "-i",
            &profile,
            "-o",
            "basic.speedscope.json",
        ],
    );
    let page = speedscope_page(&release, &dir.path().join("basic.speedscope.json"));
    assert!(
        page.contains("rprof: ./app --fast - speedscope"),
        "no title in {page}"
    );
    for thread in [
        "app (tid 100, pid 100)|640.00ms",
        "worker (tid 101, pid 100)|200.00ms",
        "worker (tid 102, pid 100)|100.00ms",
        "helper-tool (tid 200, pid 200)|60.00ms",
    ] {
        assert!(page.contains(thread), "no thread `{thread}` in {page}");
    }
    // Total, self, name.
    for row in [
        "300.00ms (47%)|300.00ms (47%)|square",
        "150.00ms (23%)|150.00ms (23%)|fib",
        "440.00ms (69%)|100.00ms (16%)|compute",
        "40.00ms (6.3%)|40.00ms (6.3%)|clear_page_erms",
        "640.00ms (100%)|0.00ns (<0.01%)|main",
    ] {
        assert!(page.contains(row), "no row `{row}` in {page}");
    }
}

// ---------------------------------------------------------------------------------------------
// Firefox Profiler

/// Checks the processed-format document `doc` the way the profiler's loader relies on it:
/// `meta` with its versions, interval and categories; per thread, every table's columns as
/// long as its `length`, every index pointing into its table (a stack's prefix before it),
/// sample times not going back. Returns the samples of each leaf function, threads added up.
fn check_firefox(doc: &Value) -> std::collections::HashMap<String, u64> {
    let meta = &doc["meta"];
    assert!(meta["version"].as_u64().is_some(), "meta.version: {meta}");
    assert!(
        meta["preprocessedProfileVersion"].as_u64().is_some(),
        "meta.preprocessedProfileVersion: {meta}"
    );
    assert!(meta["interval"].as_f64().is_some_and(|i| i > 0.0), "{meta}");
    assert!(
        meta["startTime"].as_f64().is_some_and(|t| t > 0.0),
        "{meta}"
    );
    let categories = meta["categories"]
        .as_array()
        .expect("meta.categories")
        .len();
    let threads = doc["threads"].as_array().expect("threads");
    assert!(!threads.is_empty());
    let table = |thread: &Value, name: &str, columns: &[&str]| -> usize {
        let t = &thread[name];
        let length = t["length"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}.length")) as usize;
        for column in columns {
            let values = t[column]
                .as_array()
                .unwrap_or_else(|| panic!("{name}.{column}"));
            assert_eq!(values.len(), length, "{name}.{column}");
        }
        length
    };
    let index = |v: &Value, below: usize, what: &str| -> usize {
        let i = v.as_u64().unwrap_or_else(|| panic!("{what}: {v}")) as usize;
        assert!(i < below, "{what}: {i} is not below {below}");
        i
    };
    let mut leaves = std::collections::HashMap::new();
    for thread in threads {
        assert!(
            thread["name"].is_string(),
            "thread name: {}",
            thread["name"]
        );
        assert!(!thread["tid"].is_null() && !thread["pid"].is_null());
        let strings = thread["stringArray"].as_array().expect("stringArray");
        let funcs = table(thread, "funcTable", &["name", "isJS", "resource"]);
        let frames = table(thread, "frameTable", &["func", "category", "address"]);
        let stacks = table(thread, "stackTable", &["frame", "prefix"]);
        let samples = table(thread, "samples", &["stack", "weight"]);
        let times = thread["samples"]["timeDeltas"]
            .as_array()
            .or(thread["samples"]["time"].as_array())
            .expect("samples.timeDeltas or samples.time");
        assert_eq!(times.len(), samples);
        let t = &thread["funcTable"];
        for i in 0..funcs {
            index(&t["name"][i], strings.len(), "funcTable.name");
        }
        let f = &thread["frameTable"];
        for i in 0..frames {
            index(&f["func"][i], funcs, "frameTable.func");
            index(&f["category"][i], categories, "frameTable.category");
        }
        let s = &thread["stackTable"];
        for i in 0..stacks {
            index(&s["frame"][i], frames, "stackTable.frame");
            if !s["prefix"][i].is_null() {
                index(&s["prefix"][i], i, "stackTable.prefix");
            }
        }
        let sample = &thread["samples"];
        for i in 0..samples {
            let stack = index(&sample["stack"][i], stacks, "samples.stack");
            let frame = s["frame"][stack].as_u64().unwrap() as usize;
            let func = f["func"][frame].as_u64().unwrap() as usize;
            let name = strings[t["name"][func].as_u64().unwrap() as usize]
                .as_str()
                .unwrap();
            *leaves.entry(name.to_string()).or_insert(0) += sample["weight"][i].as_u64().unwrap();
            if thread["samples"]["timeDeltas"].is_array() && i > 0 {
                assert!(times[i].as_f64().unwrap() >= 0.0, "time goes back");
            }
        }
    }
    leaves
}

/// The Firefox export of the saved profile: four thread tracks in two processes, tables that
/// hold together, and each function's samples as the report counts them.
#[test]
fn firefox_export_holds_the_processed_format_and_the_report_s_samples() {
    let dir = tempdir();
    let profile = saved("basic.rprof");
    export(
        dir.path(),
        &["-f", "firefox", "-i", &profile, "-o", "basic.json"],
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("basic.json")).unwrap()).unwrap();
    let leaves = check_firefox(&doc);
    let report = report_json(dir.path(), &["-i", &profile]);
    for (name, samples) in report_top(&report, 8) {
        assert_eq!(leaves.get(&name), Some(&samples), "{name}: {leaves:?}");
    }
    assert_eq!(doc["meta"]["product"], "rprof: ./app --fast");
    let threads: Vec<(String, String)> = doc["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["processName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        threads,
        [
            ("app".to_string(), "app".to_string()),
            ("worker".to_string(), "app".to_string()),
            ("worker".to_string(), "app".to_string()),
            ("helper-tool".to_string(), "helper-tool".to_string()),
        ]
    );
}

/// A live recording exported for the Firefox Profiler holds together too, with the report's
/// hottest functions.
#[test]
fn firefox_export_of_a_recording_holds_together() {
    let bin = report_fixture("report_shares");
    let dir = tempdir();
    record(dir.path(), &bin);
    export(dir.path(), &["-f", "firefox", "-o", "live.json"]);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("live.json")).unwrap()).unwrap();
    let leaves = check_firefox(&doc);
    let report = report_json(dir.path(), &[]);
    for (name, samples) in report_top(&report, 3) {
        assert_eq!(leaves.get(&name), Some(&samples), "{name}: {leaves:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input

fn fails(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = run_rprof(dir, args);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("rprof: "), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

/// An unknown format is a usage error that lists the known ones.
#[test]
fn an_unknown_format_lists_the_known_ones() {
    let dir = tempdir();
    let (code, err) = fails(dir.path(), &["export", "-f", "perf", "-o", "x"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value 'perf' for '--format <FORMAT>'")
            && err.contains("possible values: pprof, speedscope, firefox"),
        "{err}"
    );
    assert!(!dir.path().join("x").exists());
}

/// An output that cannot be written fails before the profile is even read: with no profile
/// there either, the error is about the output.
#[test]
fn an_unwritable_output_fails_before_any_work() {
    let dir = tempdir();
    let (code, err) = fails(
        dir.path(),
        &[
            "export",
            "-f",
            "pprof",
            "-i",
            "missing.rprof",
            "-o",
            "no/such/dir/out.pb.gz",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot write no/such/dir/out.pb.gz"), "{err}");
}

/// A missing or corrupt profile gives the very error `rprof report` gives.
#[test]
fn missing_and_corrupt_profiles_fail_as_in_the_report() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("junk.rprof"),
        b"not a profile at all, just text\n",
    )
    .unwrap();
    for input in ["missing.rprof", "junk.rprof"] {
        let report = fails(dir.path(), &["report", "-i", input]);
        for format in ["pprof", "speedscope", "firefox"] {
            let export = fails(
                dir.path(),
                &["export", "-f", format, "-i", input, "-o", "out"],
            );
            assert_eq!(export, report, "{format} of {input}");
        }
    }
    assert!(
        !dir.path().join("out").exists(),
        "no output after a failure"
    );
}

/// A cut-short profile is exported up to its last good block, with the report's warning.
#[test]
fn a_cut_short_profile_is_exported_up_to_its_last_good_block() {
    let dir = tempdir();
    let bytes = std::fs::read(saved("basic.rprof")).unwrap();
    std::fs::write(dir.path().join("cut.rprof"), &bytes[..bytes.len() / 2]).unwrap();
    let report = run_rprof(dir.path(), &["report", "--json", "-i", "cut.rprof"]);
    assert!(report.status.success());
    let warning = stderr(&report);
    assert!(warning.contains("warning"), "{warning}");
    let samples = serde_json::from_slice::<Value>(&report.stdout).unwrap()["samples"]
        .as_u64()
        .unwrap();
    assert!(samples > 0 && samples < 1000, "{samples}");
    let out = export(
        dir.path(),
        &["-f", "speedscope", "-i", "cut.rprof", "-o", "cut.json"],
    );
    assert_eq!(
        stderr(&out),
        format!("{warning}rprof: wrote the speedscope profile to cut.json\n")
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cut.json")).unwrap()).unwrap();
    let exported: usize = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["samples"].as_array().unwrap().len())
        .sum();
    assert_eq!(exported as u64, samples);
}

/// A profile without samples, or a filter that keeps none, is an error, not an empty file.
#[test]
fn nothing_to_export_is_an_error() {
    let dir = tempdir();
    let empty = saved("empty.rprof");
    let (code, err) = fails(
        dir.path(),
        &["export", "-f", "pprof", "-i", &empty, "-o", "e"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("the profile has no samples"), "{err}");
    assert!(!dir.path().join("e").exists());
    let basic = saved("basic.rprof");
    let (code, err) = fails(
        dir.path(),
        &[
            "export", "-f", "firefox", "-i", &basic, "--thread", "nobody", "-o", "e",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no thread named or numbered 'nobody'"),
        "{err}"
    );
    assert!(!dir.path().join("e").exists());
}

/// `--thread` and `--pid` select samples as in the report.
#[test]
fn thread_and_pid_filters_select_samples() {
    let dir = tempdir();
    let basic = saved("basic.rprof");
    export(
        dir.path(),
        &[
            "-f",
            "speedscope",
            "-i",
            &basic,
            "--thread",
            "worker",
            "-o",
            "w.json",
        ],
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("w.json")).unwrap()).unwrap();
    let names: Vec<&str> = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["worker (tid 101, pid 100)", "worker (tid 102, pid 100)"]
    );
    export(
        dir.path(),
        &[
            "-f",
            "speedscope",
            "-i",
            &basic,
            "--pid",
            "200",
            "-o",
            "p.json",
        ],
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("p.json")).unwrap()).unwrap();
    assert_eq!(doc["profiles"][0]["samples"].as_array().unwrap().len(), 60);
}

/// A thread named with terminal escapes: the JSON exports hold the exact name, escaped as JSON
/// (no raw control byte in the file), and pprof labels the samples with it.
#[test]
fn names_are_kept_exactly_and_escaped_where_the_format_needs_it() {
    const THREAD: &str = "\x1b]0;PWN\x07\x1b[31mX";
    let bin = build_c("hostile_names.c", "hostile_names", &["-O2", "-g"]);
    let dir = tempdir();
    record(dir.path(), &bin);
    for (format, file) in [("speedscope", "h.speedscope.json"), ("firefox", "h.json")] {
        export(dir.path(), &["-f", format, "-o", file]);
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        assert!(
            !bytes.iter().any(|&b| b < 0x20 && b != b'\n'),
            "{format}: a raw control byte"
        );
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        let names: Vec<String> = match format {
            "speedscope" => doc["profiles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect(),
            _ => doc["threads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect(),
        };
        assert!(
            names.iter().any(|n| n.starts_with(THREAD)),
            "{format}: {names:?}"
        );
    }
    let Some(go) = go() else { return };
    export(dir.path(), &["-f", "pprof", "-o", "h.pb.gz"]);
    let raw = pprof(&go, &["-raw"], &dir.path().join("h.pb.gz"));
    assert!(raw.contains(&format!("thread:[{THREAD}]")), "{raw}");
}
