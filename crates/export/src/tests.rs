//! Unit tests of the exporters on the synthetic `basic` profile (1,000 cpu-clock samples of
//! 1 ms: `square` inlined into `compute`, kernel frames, three threads, two processes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Read;

use prost::Message;
use rprof_profile::Profile;
use rprof_report::{parse_thread_filter, Selection};

use crate::pprof::proto;
use crate::{ExportError, ExportOptions};

fn basic() -> Profile {
    let bytes = rprof_report::synth::basic(true, 64).unwrap();
    Profile::read(&bytes[..], "basic").unwrap()
}

fn all() -> ExportOptions {
    ExportOptions::default()
}

/// The pprof message of `profile`, through the gzip and protobuf encoding and back.
fn pprof_round_trip(profile: &Profile, options: &ExportOptions) -> proto::Profile {
    let mut gz = Vec::new();
    crate::pprof::render(profile, options, &mut gz).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    proto::Profile::decode(&raw[..]).unwrap()
}

fn string(p: &proto::Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

/// Self values (second sample type) by leaf function name, inline frames included.
fn pprof_self(p: &proto::Profile) -> HashMap<String, i64> {
    let functions: HashMap<u64, &proto::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let mut out = HashMap::new();
    for s in &p.sample {
        let leaf = locations[&s.location_id[0]];
        let name = string(p, functions[&leaf.line[0].function_id].name).to_string();
        *out.entry(name).or_insert(0) += s.value[1];
    }
    out
}

#[test]
fn pprof_has_the_sample_types_times_and_period() {
    let p = pprof_round_trip(&basic(), &all());
    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (string(&p, t.r#type), string(&p, t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let period_type = p.period_type.as_ref().unwrap();
    assert_eq!(string(&p, period_type.r#type), "cpu");
    assert_eq!(p.period, 1_000_000, "1000 Hz is 1 ms a sample");
    assert_eq!(p.time_nanos, 1_795_834_213_000_000_000);
    assert!(p.duration_nanos > 0);
    let samples: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    let cpu: i64 = p.sample.iter().map(|s| s.value[1]).sum();
    assert_eq!(samples, 1000);
    assert_eq!(cpu, 1000 * 1_000_000);
}

#[test]
fn pprof_inline_frames_are_lines_of_one_location() {
    let p = pprof_round_trip(&basic(), &all());
    let functions: HashMap<u64, &proto::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    // square was inlined into compute: one location, square first, compute last.
    let inline = p
        .location
        .iter()
        .find(|l| l.line.len() == 2)
        .expect("a location with an inline frame");
    let names: Vec<&str> = inline
        .line
        .iter()
        .map(|l| string(&p, functions[&l.function_id].name))
        .collect();
    assert_eq!(names, ["square", "compute"]);
    assert_eq!(inline.line[0].line, 10);
    assert_eq!(inline.line[1].line, 22);
    let square = functions[&inline.line[0].function_id];
    assert_eq!(string(&p, square.filename), "/src/app/app.c");
    // Its mapping is the app with its build id.
    let mapping = p
        .mapping
        .iter()
        .find(|m| m.id == inline.mapping_id)
        .unwrap();
    assert_eq!(
        string(&p, mapping.filename),
        "/nonexistent/rprof-fixture/app"
    );
    assert_eq!(string(&p, mapping.build_id), "b11d00");
    assert!(mapping.has_functions && mapping.has_inline_frames);
    // Self CPU time of the leaves, as the report counts it.
    let leaves = pprof_self(&p);
    assert_eq!(leaves["square"], 300 * 1_000_000);
    assert_eq!(leaves["clear_page_erms"], 40 * 1_000_000);
    assert!(!leaves.contains_key("[truncated]"), "never a leaf");
}

#[test]
fn pprof_labels_thread_tid_and_pid() {
    let p = pprof_round_trip(&basic(), &all());
    let mut by_thread: HashMap<(String, i64, i64), i64> = HashMap::new();
    for s in &p.sample {
        let label = |key: &str| s.label.iter().find(|l| string(&p, l.key) == key).unwrap();
        let name = string(&p, label("thread").str).to_string();
        *by_thread
            .entry((name, label("tid").num, label("pid").num))
            .or_insert(0) += s.value[0];
    }
    assert_eq!(by_thread[&("app".to_string(), 100, 100)], 640);
    assert_eq!(by_thread[&("worker".to_string(), 101, 100)], 200);
    assert_eq!(by_thread[&("helper-tool".to_string(), 200, 200)], 60);
}

#[test]
fn a_thread_selection_reaches_every_format() {
    let profile = basic();
    let options = ExportOptions {
        selection: Selection {
            threads: Some(parse_thread_filter(&profile, "helper-tool").unwrap()),
            ..Selection::default()
        },
    };
    let p = pprof_round_trip(&profile, &options);
    assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 60);
    let file = crate::speedscope::build(&profile, &options).unwrap();
    assert_eq!(file.profiles.len(), 1);
    assert_eq!(file.profiles[0].samples.len(), 60);
    let fx = serde_json::to_value(crate::firefox::build(&profile, &options).unwrap()).unwrap();
    assert_eq!(fx["threads"].as_array().unwrap().len(), 1);
}

#[test]
fn no_samples_is_an_error_not_an_empty_file() {
    let bytes = rprof_report::synth::empty().unwrap();
    let profile = Profile::read(&bytes[..], "empty").unwrap();
    let mut out = Vec::new();
    for result in [
        crate::pprof::render(&profile, &all(), &mut out),
        crate::speedscope::render(&profile, &all(), &mut out),
        crate::firefox::render(&profile, &all(), &mut out),
    ] {
        assert!(matches!(result, Err(ExportError::NoSamples)), "{result:?}");
    }
    assert!(out.is_empty());
}

#[test]
fn speedscope_has_shared_frames_and_one_profile_per_thread() {
    let profile = basic();
    let mut out = Vec::new();
    crate::speedscope::render(&profile, &all(), &mut out).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["$schema"], crate::speedscope::SCHEMA);
    assert_eq!(doc["name"], "rprof: ./app --fast");
    let frames = doc["shared"]["frames"].as_array().unwrap();
    let square = frames
        .iter()
        .position(|f| f["name"] == "square")
        .expect("square frame");
    assert_eq!(frames[square]["file"], "/src/app/app.c");
    assert_eq!(frames[square]["line"], 10);
    // One frame per function: compute's samples at lines 22 (square inlined there) and 25 add
    // up in speedscope; the frame has the first of its lines.
    let computes: Vec<&serde_json::Value> =
        frames.iter().filter(|f| f["name"] == "compute").collect();
    assert_eq!(computes.len(), 1, "{frames:?}");
    assert_eq!(computes[0]["line"], 22);
    let profiles = doc["profiles"].as_array().unwrap();
    let names: Vec<&str> = profiles
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "app (tid 100, pid 100)",
            "worker (tid 101, pid 100)",
            "worker (tid 102, pid 100)",
            "helper-tool (tid 200, pid 200)"
        ]
    );
    assert_eq!(doc["activeProfileIndex"], 0, "app has the most samples");
    let app = &profiles[0];
    assert_eq!(app["type"], "sampled");
    assert_eq!(app["unit"], "nanoseconds");
    let samples = app["samples"].as_array().unwrap();
    let weights = app["weights"].as_array().unwrap();
    assert_eq!(samples.len(), 640);
    assert_eq!(weights.len(), 640);
    assert!(weights.iter().all(|w| w == 1_000_000));
    // Root first: every stack of the app starts at main and the square ones end there.
    let square_leaf = samples
        .iter()
        .filter(|s| s.as_array().unwrap().last().unwrap() == square)
        .count();
    assert_eq!(square_leaf, 300);
    let main = frames.iter().position(|f| f["name"] == "main").unwrap();
    assert!(samples.iter().all(|s| s[0] == main));
    assert!(app["endValue"].as_u64().unwrap() > app["startValue"].as_u64().unwrap());
}

#[test]
fn firefox_has_processes_threads_categories_and_times() {
    let profile = basic();
    let mut out = Vec::new();
    crate::firefox::render(&profile, &all(), &mut out).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let meta = &doc["meta"];
    assert!(meta["version"].is_number(), "{meta}");
    assert!(meta["preprocessedProfileVersion"].is_number(), "{meta}");
    assert_eq!(meta["product"], "rprof: ./app --fast");
    assert_eq!(meta["interval"], 1.0, "milliseconds");
    let categories: Vec<&str> = meta["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["User", "Kernel", "Inlined", "Truncated"] {
        assert_eq!(
            categories.iter().filter(|&&c| c == name).count(),
            1,
            "{categories:?}"
        );
    }
    assert_eq!(meta["symbolicated"], true, "frames are names already");
    let threads = doc["threads"].as_array().unwrap();
    let names: Vec<(&str, &str)> = threads
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["tid"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(threads.len(), 4, "{names:?}");
    let app = threads.iter().find(|t| t["name"] == "app").unwrap();
    assert_eq!(app["samples"]["length"], 640);
    assert_eq!(app["isMainThread"], true);
}

/// Issue 12 (b): an off-CPU profile's pprof export has a third type `off_cpu/nanoseconds`; each
/// block is a sample with its reason as leaf frame, its length in `off_cpu` and 0 in the
/// on-CPU types; on-CPU samples are 0 in `off_cpu`; `cpu` stays the default type.
#[test]
fn pprof_carries_off_cpu_blocks() {
    use rprof_profile::ModuleKind;
    let mut s = rprof_report::synth::Synth::new(&["./waits"]);
    let app = s.module("/bin/waits", ModuleKind::Elf);
    let main = s.code(app, &[("main", "w.c", 1)]);
    let work = s.code(app, &[("work", "w.c", 2)]);
    let wait = s.code(app, &[("wait_here", "w.c", 3)]);
    s.thread(10, 10, "waits");
    for _ in 0..5 {
        s.sample(10, 10, &[work, main], &[], false);
    }
    s.off_cpu(10, 10, 30, &[wait, main], &[], false);
    s.off_cpu(10, 10, 12, &[wait, main], &[], false);
    let bytes = s.bytes(true, 64).unwrap();
    let profile = Profile::read(&bytes[..], "waits").unwrap();
    assert!(profile.has_off_cpu());
    let p = pprof_round_trip(&profile, &all());
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (string(&p, t.r#type), string(&p, t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("samples", "count"),
            ("cpu", "nanoseconds"),
            ("off_cpu", "nanoseconds")
        ]
    );
    assert_eq!(string(&p, p.default_sample_type), "cpu");
    let functions: HashMap<u64, &proto::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let name = |id: u64| string(&p, functions[&locations[&id].line[0].function_id].name);
    let mut off = 0;
    for sample in &p.sample {
        let leaf = name(sample.location_id[0]);
        if sample.value[2] > 0 {
            assert_eq!(&sample.value[..2], &[0, 0], "{leaf}");
            assert!(leaf.starts_with('['), "the reason is the leaf: {leaf}");
            assert_eq!(name(sample.location_id[1]), "wait_here");
            off += sample.value[2];
        } else {
            assert_eq!(leaf, "work");
            assert_eq!(sample.value[0], 5);
        }
    }
    assert_eq!(off, 42_000_000);
}
