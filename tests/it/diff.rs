//! Integration tests of `rprof diff` (issue 12): live recordings of `fixtures/regress.c`, a
//! designed regression (f_double twice the work in NEW, f_same the same, f_removed gone),
//! expected outputs on the saved pair `fixtures/profiles/regress-{base,new}.rprof` (made by
//! `scripts/make-golden-profiles.sh`; `RPROF_BLESS=1` rewrites the expected files), and bad
//! input.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use rprof_profile::ModuleKind;
use rprof_report::synth::Synth;
use serde_json::Value;

use crate::report::saved;
use crate::util::{assert_golden, build_c, repo_root, run_rprof, stderr, stdout, tempdir};

/// The fixture, built the way the saved profiles are made.
fn regress() -> PathBuf {
    build_c(
        "regress.c",
        "regress",
        &["-O2", "-g", "-fomit-frame-pointer"],
    )
}

/// BASE and NEW recorded live once for every test of this module: 1.0 s and 1.3 s of CPU.
fn recorded() -> &'static (PathBuf, PathBuf) {
    static PAIR: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let bin = regress();
        // Kept for the whole test run (the process ends before anything could remove it).
        let dir = tempdir().keep();
        let mut paths = Vec::new();
        for mode in ["base", "new"] {
            let path = dir.join(format!("{mode}.rprof"));
            let out = run_rprof(
                &dir,
                &[
                    "record",
                    "-o",
                    path.to_str().unwrap(),
                    "--",
                    bin.to_str().unwrap(),
                    mode,
                ],
            );
            assert!(out.status.success(), "record {mode}: {}", stderr(&out));
            paths.push(path);
        }
        (paths[0].clone(), paths[1].clone())
    })
}

fn diff(dir: &Path, base: &Path, new: &Path, args: &[&str]) -> Output {
    let mut all = vec!["diff", base.to_str().unwrap(), new.to_str().unwrap()];
    all.extend_from_slice(args);
    run_rprof(dir, &all)
}

/// The table's rows (not the header lines, not the column names), each split at whitespace.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains("Base self"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Issue 12: in the live recordings the doubled function is the top row and significant, the
/// unchanged one is not significant, the removed one is listed as gone.
#[test]
fn live_designed_regression_table() {
    let (base, new) = recorded();
    let dir = tempdir();
    let out = diff(dir.path(), base, new, &["--top", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let rows = rows(&table);
    let top = &rows[0];
    assert_eq!(top.last().unwrap(), "f_double", "{table}");
    assert!(top[0].starts_with('+'), "{table}");
    assert!(top.contains(&"yes".to_string()), "{table}");
    let same = rows
        .iter()
        .find(|r| r.last().unwrap() == "f_same")
        .unwrap_or_else(|| panic!("{table}"));
    assert!(same.contains(&"no".to_string()), "{table}");
    let removed = rows
        .iter()
        .find(|r| r.iter().any(|c| c == "f_removed"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(removed.last().unwrap(), "[gone]", "{table}");
    assert!(
        table.contains("# compared: estimated time of self samples"),
        "{table}"
    );
    assert!(
        table.contains("# BASE ") && table.contains("/regress base: cpu-clock"),
        "{table}"
    );
}

fn function<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no function {name} in {doc:#}"))
}

/// Issue 12: `--json` carries every field per function, in samples and nanoseconds.
#[test]
fn live_json_fields() {
    let (base, new) = recorded();
    let dir = tempdir();
    let out = diff(dir.path(), base, new, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(doc["compared"], "time");
    let top = &doc["functions"][0];
    assert_eq!(top["name"], "f_double", "{doc:#}");
    assert_eq!(top["module"], "regress");
    assert_eq!(top["significant"], true);
    let (b, n) = (
        top["base_self"].as_u64().unwrap(),
        top["new_self"].as_u64().unwrap(),
    );
    // 0.5 s against 1.0 s of CPU at 999 Hz: about 500 and 1,000 samples.
    assert!(n > b * 3 / 2 && b > 300, "{top}");
    assert!(top["base_total"].as_u64().unwrap() >= b);
    assert!(top["new_total"].as_u64().unwrap() >= n);
    let delta = top["delta_ns"].as_i64().unwrap();
    assert!((350_000_000..650_000_000).contains(&delta), "{top}");
    assert_eq!(function(&doc, "f_same")["significant"], false, "{doc:#}");
    let removed = function(&doc, "f_removed");
    assert_eq!(removed["status"], "gone");
    assert_eq!(removed["new_total"], 0);
    assert!(
        removed["delta_ns"].as_i64().unwrap() < -100_000_000,
        "{removed}"
    );
}

/// Issue 12: `--fail-if-slower` exits 1 past the limit (NEW is 30% slower by design) with one
/// line naming f_double, and 0 within it.
#[test]
fn live_fail_if_slower_exit_codes() {
    let (base, new) = recorded();
    let dir = tempdir();
    let out = diff(
        dir.path(),
        base,
        new,
        &["--fail-if-slower", "10", "--top", "3"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("rprof: NEW's estimated time is ")
            && lines[0].contains("% above BASE's")
            && lines[0].contains("most of it: f_double +"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("f_double"),
        "the table is printed too"
    );
    let out = diff(dir.path(), base, new, &["--fail-if-slower", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    // BASE against NEW the other way round is faster: never a failure.
    let out = diff(dir.path(), new, base, &["--fail-if-slower", "0", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// The fill of the first frame whose tooltip starts with `name (`.
fn fill_of(svg: &str, name: &str) -> (u8, u8, u8) {
    let at = svg
        .find(&format!("<title>{name} ("))
        .unwrap_or_else(|| panic!("no frame {name}"));
    let rest = &svg[at..];
    let fill = &rest[rest.find("fill=\"rgb(").unwrap() + 10..];
    let v: Vec<u8> = fill[..fill.find(')').unwrap()]
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

/// Checks `svg` with a strict XML 1.0 parser (Python's expat).
fn assert_xml(svg: &Path) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])",
        ])
        .arg(svg)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "not XML: {}", stderr(&out));
}

/// Issue 12: the differential flame graph is valid XML; f_double's whole path is red (its
/// stack grew), f_same's grey (within noise).
#[test]
fn live_differential_flame_graph() {
    let (base, new) = recorded();
    let dir = tempdir();
    let svg_path = dir.path().join("diff.svg");
    let out = diff(
        dir.path(),
        base,
        new,
        &["--flame", "-o", svg_path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrote the differential flame graph to"));
    assert_xml(&svg_path);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for name in ["f_double", "main"] {
        let (r, g, b) = fill_of(&svg, name);
        assert!(r == 255 && g < 200 && b == g, "{name}: rgb({r},{g},{b})");
    }
    assert_eq!(fill_of(&svg, "f_same"), (222, 222, 222));
    assert!(!svg.contains("<title>f_removed"), "drawn on NEW's stacks");
    assert!(svg.contains("BASE samples are in stacks NEW does not have"));
    // The default output is diff.svg in the current directory.
    let out = diff(dir.path(), base, new, &["--flame"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_xml(&dir.path().join("diff.svg"));
}

/// Runs `rprof diff` on the saved pair, named relative to the repository (as the header shows
/// them); it must succeed without a word on stderr.
fn saved_diff(args: &[&str]) -> String {
    let out = diff(
        &repo_root(),
        Path::new("fixtures/profiles/regress-base.rprof"),
        Path::new("fixtures/profiles/regress-new.rprof"),
        args,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    stdout(&out)
}

#[test]
fn golden_table() {
    assert_golden("diff/regress.txt", &saved_diff(&["--top", "12"]));
}

#[test]
fn golden_normalized_totals() {
    assert_golden(
        "diff/regress-normalize-total.txt",
        &saved_diff(&["--normalize", "--sort", "total", "--top", "12"]),
    );
}

#[test]
fn golden_json() {
    assert_golden("diff/regress.json", &saved_diff(&["--json", "--top", "5"]));
}

/// A page-faults profile, made here.
fn page_faults(dir: &Path) -> PathBuf {
    let mut s = Synth::new(&["./touch"]);
    s.header_mut().event = "page-faults".into();
    let app = s.module("/bin/touch", ModuleKind::Elf);
    let main = s.code(app, &[("main", "touch.c", 3)]);
    s.thread(7, 7, "touch");
    for _ in 0..20 {
        s.sample(7, 7, &[main], &[], false);
    }
    let path = dir.join("faults.rprof");
    std::fs::write(&path, s.bytes(true, 8).unwrap()).unwrap();
    path
}

/// Issue 12 (bad input): profiles of different events are refused in one line, exit 2.
#[test]
fn different_events_are_refused() {
    let dir = tempdir();
    let faults = page_faults(dir.path());
    let base = PathBuf::from(saved("regress-base.rprof"));
    let out = diff(dir.path(), &base, &faults, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "rprof: cannot compare {} with {}: the profiles sampled different events (BASE \
             cpu-clock, NEW page-faults): their samples cannot be compared; record both with the \
             same -e EVENT\n",
            base.display(),
            faults.display()
        )
    );
    assert_eq!(stdout(&out), "");
}

/// Issue 12 (bad input): a cut-short NEW is read up to its last good block, with report's
/// note.
#[test]
fn truncated_profile_is_read_with_a_note() {
    let dir = tempdir();
    let whole = std::fs::read(saved("regress-new.rprof")).unwrap();
    let cut = dir.path().join("cut.rprof");
    std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
    let out = diff(
        dir.path(),
        Path::new(&saved("regress-base.rprof")),
        &cut,
        &["--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.starts_with("rprof: warning: ")
            && l.contains("cut.rprof is cut short at byte")
            && l.contains("showing what was written before")),
        "{err}"
    );
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    let samples = doc["new"]["samples"].as_u64().unwrap();
    assert!(samples > 0 && samples < 1300, "{doc:#}");
}

/// Issue 12 (bad input): an unwritable `-o` fails before any work (here, before BASE — which
/// does not exist — is even looked at), in one line, exit 1; a missing profile gives the very
/// message of `rprof report`.
#[test]
fn unwritable_output_and_missing_profiles() {
    let dir = tempdir();
    let missing = dir.path().join("missing.rprof");
    let new = PathBuf::from(saved("regress-new.rprof"));
    let out = diff(
        dir.path(),
        &missing,
        &new,
        &["--flame", "-o", "/nonexistent-dir/diff.svg"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rprof: cannot write /nonexistent-dir/diff.svg: "),
        "{err}"
    );

    let out = diff(dir.path(), &missing, &new, &[]);
    assert_eq!(out.status.code(), Some(1));
    let report = run_rprof(dir.path(), &["report", "-i", missing.to_str().unwrap()]);
    assert_eq!(stderr(&out), stderr(&report));
    assert!(
        stderr(&out).starts_with("rprof: no profile at "),
        "{}",
        stderr(&out)
    );

    // A thread neither profile has: a usage error saying which profile.
    let out = diff(
        dir.path(),
        Path::new(&saved("regress-base.rprof")),
        &new,
        &["--thread", "nosuch"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("rprof: BASE ")
            && stderr(&out).contains("no thread named or numbered 'nosuch'"),
        "{}",
        stderr(&out)
    );
    // A negative percentage is a usage error.
    let out = diff(dir.path(), &missing, &new, &["--fail-if-slower", "-5"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `--thread NAME` keeps the samples of that thread name in both profiles.
#[test]
fn thread_filter_applies_to_both() {
    let out = saved_diff(&["--thread", "regress", "--json"]);
    let doc: Value = serde_json::from_str(&out).expect("valid JSON");
    assert!(doc["base"]["samples"].as_u64().unwrap() > 0);
    assert_eq!(doc["functions"][0]["name"], "f_double");
}

/// A profile without samples: one line naming both files and which is empty, exit 1.
#[test]
fn empty_profile_is_refused() {
    let dir = tempdir();
    let base = PathBuf::from(saved("regress-base.rprof"));
    let empty = PathBuf::from(saved("empty.rprof"));
    let out = diff(dir.path(), &base, &empty, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "rprof: cannot compare {} with {}: NEW has no samples: nothing to compare\n",
            base.display(),
            empty.display()
        )
    );
}

/// The differential flame graph's zoom works in a browser: headless Chromium opens it with
/// `?z=f_same` (the script's zoom to the first frame of that name), f_same then spans the
/// whole width, its callers stay below it, and f_double — beside it — is hidden.
#[test]
fn differential_flame_graph_zooms_in_chromium() {
    let dir = tempdir();
    let svg = dir.path().join("diff.svg");
    let out = diff(
        dir.path(),
        Path::new(&saved("regress-base.rprof")),
        Path::new(&saved("regress-new.rprof")),
        &["--flame", "-o", svg.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|c| Path::new(c).exists())
        .expect(
            "chromium is not installed, and this test opens the SVG in headless Chromium: \
             install it with `apt-get install -y chromium` (.ci/run does)",
        );
    let scratch = tempdir();
    let out = crate::util::headless_chromium(std::path::Path::new(chromium), scratch.path())
        .arg("--dump-dom")
        .arg(format!("file://{}?z=f_same", svg.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let dom = stdout(&out);
    let frame = |name: &str| -> String {
        let at = dom
            .find(&format!("data-n=\"{name}\""))
            .unwrap_or_else(|| panic!("no frame {name}: {dom}"));
        let rest = &dom[at..];
        rest[..rest.find("</g>").unwrap()].to_string()
    };
    let same = frame("f_same");
    assert!(same.contains("width=\"1180.00\""), "{same}");
    assert!(same.contains(">f_same</text>"), "{same}");
    let main = frame("main");
    assert!(
        main.contains("width=\"1180.00\"") && main.contains("opacity: 0.6"),
        "{main}"
    );
    let double = frame("f_double");
    assert!(double.contains("display: none"), "{double}");
}

// ---------------------------------------------------------------------------------------------
// --off-cpu / --wall (issue 12 a)

/// `fixtures/regress_wait.c` recorded live with `--off-cpu`, once per test run, BASE then NEW:
/// wait_step sleeps 0.3 s then 0.6 s, spin burns the same 60 ms of CPU in both. With each
/// path, how long wait_step took by the program's own clock (its stderr line): on a loaded
/// machine, more than the sleeps, since a woken thread waits for a CPU (off-CPU too).
fn recorded_waits() -> &'static ((PathBuf, u64), (PathBuf, u64)) {
    static PAIR: OnceLock<((PathBuf, u64), (PathBuf, u64))> = OnceLock::new();
    PAIR.get_or_init(|| {
        let bin = build_c(
            "regress_wait.c",
            "regress_wait",
            &["-O2", "-g", "-fomit-frame-pointer"],
        );
        let dir = tempdir().keep();
        let mut paths = Vec::new();
        for mode in ["base", "new"] {
            let path = dir.join(format!("wait-{mode}.rprof"));
            let out = run_rprof(
                &dir,
                &[
                    "record",
                    "--off-cpu",
                    "-o",
                    path.to_str().unwrap(),
                    "--",
                    bin.to_str().unwrap(),
                    mode,
                ],
            );
            let err = stderr(&out);
            assert!(out.status.success(), "record {mode}: {err}");
            let waited: u64 = err
                .lines()
                .find_map(|l| l.strip_prefix("regress_wait: waited "))
                .and_then(|rest| rest.strip_suffix(" ns"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no `waited` line in {err}"));
            paths.push((path, waited));
        }
        (paths[0].clone(), paths[1].clone())
    })
}

/// rprof's change of wait_step's off-CPU time against the program's own: within 30 % (and
/// 0.3 s more or less on a quiet machine: the sleeps add 10 × 30 ms).
fn assert_wait_delta(wait: &Value, base_waited: u64, new_waited: u64) {
    let measured = new_waited as f64 - base_waited as f64;
    // The sleeps add 0.3 s, but on a loaded machine the wake-ups of either run are late by
    // different amounts (287 ms was seen under stress-ng): the program's own figure is the
    // truth rprof is held to; this only checks that the doubling shows at all.
    assert!(
        measured >= 150_000_000.0,
        "the sleeps add about 0.3 s: {measured}"
    );
    let delta = wait["delta_ns"].as_i64().unwrap() as f64;
    assert!(
        (delta - measured).abs() <= measured * 0.3,
        "rprof {delta} ns, the program {measured} ns: {wait}"
    );
}

/// Issue 12 (a): `diff --off-cpu --sort total` finds the doubled wait: wait_step is
/// significant with about +0.3 s of off-CPU time (the program's own measure of it, ±30 %), and in the fixture's own module only
/// its callers (main, _start) can rank above it; the JSON is in nanoseconds, with no p-value
/// (measured, not sampled) and the threshold it was judged by.
#[test]
fn off_cpu_diff_finds_the_doubled_wait() {
    let ((base, base_waited), (new, new_waited)) = recorded_waits();
    let dir = tempdir();
    let out = diff(
        dir.path(),
        base,
        new,
        &["--off-cpu", "--sort", "total", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(doc["weight"], "off_cpu_ns");
    assert_eq!(doc["time"], true);
    let threshold = doc["off_cpu_threshold_ns"].as_u64().unwrap();
    assert!(threshold >= 1_000_000, "{doc:#}");
    let wait = function(&doc, "wait_step");
    assert_eq!(wait["significant"], true, "{wait}");
    assert_eq!(wait["p_value"], Value::Null, "{wait}");
    assert_wait_delta(wait, *base_waited, *new_waited);
    let (b, n) = (
        wait["base_total"].as_u64().unwrap(),
        wait["new_total"].as_u64().unwrap(),
    );
    assert!(b >= 270_000_000 && n > b, "{wait}");
    let own: Vec<&str> = doc["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["module"] == "regress_wait")
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let rank = own.iter().position(|&f| f == "wait_step").unwrap();
    assert!(
        own[..rank].iter().all(|f| ["main", "_start"].contains(f)),
        "{own:?}"
    );
    // The table says how it judged.
    let out = diff(dir.path(), base, new, &["--off-cpu", "--sort", "total"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("# significant: off-CPU time (measured, not sampled) changed by"),
        "{table}"
    );
    let row = rows(&table)
        .into_iter()
        .find(|r| r.last().map(String::as_str) == Some("wait_step"))
        .unwrap_or_else(|| panic!("no wait_step row:\n{table}"));
    assert!(
        row[0].starts_with('+') && row.contains(&"yes".to_string()),
        "{row:?}"
    );
}

/// Issue 12 (a): `diff --wall`: with `--sort total` wait_step's wall-clock time grew by about
/// 0.3 s (the program's own measure, ±30 %), significant (by its off-CPU part); spin's self time (its on-CPU samples, the same CPU
/// time in both runs) is judged by the binomial test of its samples: not significant.
#[test]
fn wall_diff_tests_the_busy_part_by_its_samples() {
    let ((base, base_waited), (new, new_waited)) = recorded_waits();
    let dir = tempdir();
    let out = diff(
        dir.path(),
        base,
        new,
        &["--wall", "--sort", "total", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(doc["weight"], "wall_ns");
    let wait = function(&doc, "wait_step");
    assert_eq!(wait["significant"], true, "{wait}");
    assert_wait_delta(wait, *base_waited, *new_waited);
    let out = diff(dir.path(), base, new, &["--wall", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    let spin = function(&doc, "spin");
    // 60 ms of CPU in both: about 60 samples of 1 ms each.
    assert!(spin["base_self"].as_u64().unwrap() > 30_000_000, "{spin}");
    assert_eq!(spin["significant"], false, "{spin}");
    assert!(spin["p_value"].as_f64().unwrap() > 0.001, "{spin}");
}

/// Issue 12 (a, bad input): `--off-cpu`/`--wall` with a profile recorded without
/// `--off-cpu` is refused in one line, exit 2, nothing on stdout.
#[test]
fn off_cpu_diff_needs_off_cpu_data() {
    let dir = tempdir();
    let plain = PathBuf::from(saved("regress-base.rprof"));
    let off = PathBuf::from(saved("threads-offcpu.rprof"));
    for flag in ["--off-cpu", "--wall"] {
        for (base, new, which) in [(&plain, &off, "BASE"), (&off, &plain, "NEW")] {
            let out = diff(dir.path(), base, new, &[flag]);
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with(&format!("rprof: {which} ")), "{err}");
            assert!(
                err.contains(&format!("diff {flag}: the profile holds no off-CPU data")),
                "{err}"
            );
            assert_eq!(stdout(&out), "");
        }
    }
}

/// Issue 12 (a): `--fail-if-slower` with `--off-cpu` compares the whole off-CPU time and names
/// the wait in the kernel function the thread left the CPU in (self time), exit 1.
#[test]
fn off_cpu_fail_if_slower_names_off_cpu_time() {
    let ((base, _), (new, _)) = recorded_waits();
    let dir = tempdir();
    let out = diff(
        dir.path(),
        base,
        new,
        &["--off-cpu", "--fail-if-slower", "10"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rprof: NEW's off-CPU time is ") && err.contains("most of it: "),
        "{err}"
    );
}
