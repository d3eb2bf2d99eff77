use std::os::unix::fs::PermissionsExt;

use rprof_profile::StoredFrame;

use super::*;

const ID: [u8; 20] = [0xab; 20];

fn frame(names: &mut ModuleNames, function: &str, line: u32, inlined: bool) -> StoredFrame {
    StoredFrame {
        function: names.intern(Some(function)),
        file: names.intern(Some("/src/a.c")),
        line,
        inlined,
    }
}

/// Two adjacent pieces of one function (the first with an inlined call), and a lone address.
fn names() -> ModuleNames {
    let mut n = ModuleNames::default();
    let frames = vec![
        frame(&mut n, "inlined", 3, true),
        frame(&mut n, "main", 9, false),
    ];
    n.push(0x1000, 0x1010, frames);
    let frames = vec![frame(&mut n, "main", 10, false)];
    n.push(0x1010, 0x1040, frames);
    let frames = vec![frame(&mut n, "other", 1, false)];
    n.push(0x2000, 0x2001, frames);
    n
}

#[test]
fn pieces_answer_for_every_address_inside_them() {
    let n = names();
    assert_eq!(n.len(), 3);
    assert_eq!(n.find(0xfff), None);
    assert_eq!(
        n.find(0x1000).map(|p| (p.0, p.1, p.2.len())),
        Some((0x1000, 0x1010, 2))
    );
    assert_eq!(n.find(0x100f).map(|p| p.0), Some(0x1000));
    assert_eq!(n.find(0x1010).map(|p| p.0), Some(0x1010));
    assert_eq!(n.find(0x103f).map(|p| p.0), Some(0x1010));
    assert_eq!(n.find(0x1040), None, "the gap after a piece");
    assert_eq!(n.find(0x2000).map(|p| p.1), Some(0x2001));
    assert_eq!(n.find(0x2001), None);
    let mut m = ModuleNames::default();
    let f = frame(&mut m, "f", 1, false);
    m.push(0x10, 0x20, vec![f.clone()]);
    m.push(0x18, 0x30, vec![f.clone()]);
    m.push(0x30, 0x30, vec![f]);
    m.push(0x40, 0x50, Vec::new());
    assert_eq!(
        m.len(),
        1,
        "overlapping, empty and frameless pieces are not added"
    );
}

#[test]
fn newer_pieces_replace_the_ones_they_overlap() {
    let mut newer = ModuleNames::default();
    let overlapping = vec![frame(&mut newer, "fresh", 1, false)];
    newer.push(0x1008, 0x1020, overlapping);
    let apart = vec![frame(&mut newer, "apart", 7, false)];
    newer.push(0x3000, 0x3010, apart);
    let mut merged = names();
    merged.merge_newer(&newer);
    let name = |m: &ModuleNames, a: u64| {
        let (_, _, frames) = m.find(a).expect("covered");
        m.strings[frames[0].function as usize].clone()
    };
    assert_eq!(merged.len(), 3, "both old pieces of that function gave way");
    assert_eq!(name(&merged, 0x3004), "apart");
    assert_eq!(name(&merged, 0x1018), "fresh");
    assert_eq!(name(&merged, 0x2000), "other", "untouched");
    assert_eq!(merged.find(0x1030), None);
    let mut strings = merged.strings.clone();
    strings.sort();
    strings.dedup();
    assert_eq!(
        strings.len(),
        merged.strings.len(),
        "strings both had are kept once"
    );
}

/// A cache in a fresh directory, and a "module" file the names come from.
fn setup() -> (tempfile::TempDir, NameCache, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = NameCache::at(&dir.path().join("cache")).expect("a private directory is used");
    let module = dir.path().join("module");
    std::fs::write(&module, b"code").unwrap();
    (dir, cache, module)
}

fn stored(cache: &NameCache) -> PathBuf {
    cache.names_path(&ID).unwrap()
}

#[test]
fn names_come_back_as_stored_while_the_files_are_unchanged() {
    let (_dir, cache, module) = setup();
    assert_eq!(cache.module_names(&ID, &module), None, "nothing stored yet");
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    let back = cache
        .module_names(&ID, &module)
        .expect("stored names read back");
    assert_eq!(back, names());
    let mode = std::fs::metadata(stored(&cache))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    assert_eq!(
        cache.module_names(&[0xcd; 20], &module),
        None,
        "another build id"
    );
    let copy = module.with_file_name("copy");
    std::fs::copy(&module, &copy).unwrap();
    assert_eq!(
        cache.module_names(&ID, &copy),
        None,
        "another file, same build id"
    );
}

#[test]
fn a_changed_or_missing_source_file_retires_the_names() {
    let (dir, cache, module) = setup();
    let debug = dir.path().join("module.debug");
    std::fs::write(&debug, b"dwarf").unwrap();
    cache
        .store_module_names(&ID, &[&module, &debug], &names())
        .unwrap();
    assert!(cache.module_names(&ID, &module).is_some());
    std::fs::write(&debug, b"other dwarf").unwrap();
    assert_eq!(
        cache.module_names(&ID, &module),
        None,
        "debug file rewritten"
    );

    cache
        .store_module_names(&ID, &[&module, &debug], &names())
        .unwrap();
    assert!(cache.module_names(&ID, &module).is_some());
    // Replaced by a copy (a stripped binary keeps its build id): another inode.
    let copy = dir.path().join("copy");
    std::fs::copy(&module, &copy).unwrap();
    std::fs::rename(&copy, &module).unwrap();
    assert_eq!(cache.module_names(&ID, &module), None, "module replaced");

    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    std::fs::remove_file(&module).unwrap();
    assert_eq!(cache.module_names(&ID, &module), None, "module gone");
}

#[test]
fn damaged_files_are_ignored_and_replaced() {
    let (_dir, cache, module) = setup();
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    let path = stored(&cache);
    let good = std::fs::read(&path).unwrap();
    for cut in [0, 3, 16, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert_eq!(cache.module_names(&ID, &module), None, "cut at {cut}");
    }
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(&path, &flipped).unwrap();
    assert_eq!(cache.module_names(&ID, &module), None, "a flipped byte");
    std::fs::write(&path, vec![0xff; 4096]).unwrap();
    assert_eq!(cache.module_names(&ID, &module), None, "garbage");
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    assert!(
        cache.module_names(&ID, &module).is_some(),
        "replaced by the next store"
    );
}

/// Names of one more function, at `start`, called `name`.
fn more(start: u64, name: &str) -> ModuleNames {
    let mut n = ModuleNames::default();
    let frames = vec![frame(&mut n, name, 5, false)];
    n.push(start, start + 0x10, frames);
    n
}

/// `name` where `address` is, in `names`.
fn name_at(names: &ModuleNames, address: u64) -> Option<String> {
    let (_, _, frames) = names.find(address)?;
    names.strings.get(frames[0].function as usize).cloned()
}

#[test]
fn additions_are_appended_and_read_back_merged() {
    let (_dir, cache, module) = setup();
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    let path = stored(&cache);
    let inode = std::fs::metadata(&path).unwrap().ino();
    let mut expected = names();
    for i in 0..3u64 {
        let old = cache.module_names(&ID, &module).expect("read");
        let fresh = more(0x4000 + i * 0x100, &format!("f{i}"));
        let before = std::fs::metadata(&path).unwrap().len();
        cache
            .add_module_names(&ID, &[&module], Some(old), &fresh)
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.ino(), inode, "appended in place, not written anew");
        assert_eq!(
            meta.len(),
            before + file::encode_addition(cache.namer().unwrap(), &fresh).len() as u64
        );
        expected.merge_newer(&fresh);
    }
    let back = cache.module_names(&ID, &module).expect("read back");
    assert_eq!(back, expected);
    assert_eq!(back.stored.as_ref().map(|s| s.additions), Some(3));
    assert_eq!(name_at(&back, 0x4208).as_deref(), Some("f2"));
    assert_eq!(name_at(&back, 0x1010).as_deref(), Some("main"));

    // A newer addition wins where it overlaps.
    let old = cache.module_names(&ID, &module).unwrap();
    cache
        .add_module_names(&ID, &[&module], Some(old), &more(0x1008, "newer"))
        .unwrap();
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(name_at(&back, 0x1010).as_deref(), Some("newer"));
    assert_eq!(
        name_at(&back, 0x1000),
        None,
        "the piece it overlapped gave way"
    );
    assert_eq!(name_at(&back, 0x4008).as_deref(), Some("f0"));
}

#[test]
fn a_file_full_of_additions_is_written_anew_merged() {
    let (_dir, cache, module) = setup();
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    let path = stored(&cache);
    for i in 0..=MAX_ADDITIONS as u64 {
        let old = cache.module_names(&ID, &module).unwrap();
        cache
            .add_module_names(&ID, &[&module], Some(old), &more(0x4000 + i * 0x100, "f"))
            .unwrap();
    }
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(
        back.stored.as_ref().map(|s| s.additions),
        Some(0),
        "the addition past the limit rewrote the file"
    );
    assert_eq!(back.len(), 3 + MAX_ADDITIONS + 1);
    let mut expected = names();
    for i in 0..=MAX_ADDITIONS as u64 {
        expected.merge_newer(&more(0x4000 + i * 0x100, "f"));
    }
    assert_eq!(back, expected);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        file::encode(
            &file::Header {
                build_id: hex(&ID),
                namer: cache.namer().unwrap().to_string(),
                sources: back.stored.clone().unwrap().sources,
            },
            &expected
        )
    );
}

#[test]
fn a_cut_or_foreign_addition_ends_the_file_there() {
    let (_dir, cache, module) = setup();
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    let path = stored(&cache);
    let first = std::fs::read(&path).unwrap();
    let old = cache.module_names(&ID, &module).unwrap();
    cache
        .add_module_names(&ID, &[&module], Some(old), &more(0x4000, "kept"))
        .unwrap();
    let one = std::fs::read(&path).unwrap();
    let old = cache.module_names(&ID, &module).unwrap();
    cache
        .add_module_names(&ID, &[&module], Some(old), &more(0x5000, "cut"))
        .unwrap();
    let two = std::fs::read(&path).unwrap();
    for cut in [one.len() + 1, one.len() + 4, two.len() - 1] {
        std::fs::write(&path, &two[..cut]).unwrap();
        let back = cache
            .module_names(&ID, &module)
            .expect("the blocks before the cut");
        assert_eq!(
            name_at(&back, 0x4000).as_deref(),
            Some("kept"),
            "cut at {cut}"
        );
        assert_eq!(name_at(&back, 0x5000), None, "cut at {cut}");
        assert_eq!(back.stored.as_ref().map(|s| s.additions), Some(1));
    }
    let mut flipped = two.clone();
    let at = two.len() - 6;
    flipped[at] ^= 0x55;
    std::fs::write(&path, &flipped).unwrap();
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(
        name_at(&back, 0x5000),
        None,
        "a flipped byte in the last addition"
    );
    // What the next recording adds is not lost behind the bad block: the file is written anew.
    cache
        .add_module_names(&ID, &[&module], Some(back), &more(0x6000, "next"))
        .unwrap();
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(name_at(&back, 0x6000).as_deref(), Some("next"));
    assert_eq!(name_at(&back, 0x4000).as_deref(), Some("kept"));
    assert_eq!(back.stored.as_ref().map(|s| s.additions), Some(0));

    // An addition by another build of rprof is not used, nor anything after it.
    let mut foreign = first.clone();
    foreign.extend(file::encode_addition(
        "another rprof",
        &more(0x4000, "foreign"),
    ));
    foreign.extend(file::encode_addition(
        cache.namer().unwrap(),
        &more(0x5000, "after"),
    ));
    std::fs::write(&path, &foreign).unwrap();
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(back, names());
}

#[test]
fn names_are_appended_only_to_the_file_they_were_read_from() {
    let (dir, cache, module) = setup();
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    let path = stored(&cache);
    let old = cache.module_names(&ID, &module).unwrap();
    // Another recording wrote the file anew meanwhile (another inode).
    let copy = dir.path().join("copy");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::rename(&copy, &path).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    cache
        .add_module_names(&ID, &[&module], Some(old), &more(0x4000, "f"))
        .unwrap();
    assert_ne!(
        std::fs::metadata(&path).unwrap().ino(),
        inode,
        "written anew"
    );
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(back.stored.as_ref().map(|s| s.additions), Some(0));
    assert_eq!(name_at(&back, 0x4000).as_deref(), Some("f"));

    // Nothing read (no file yet): stored whole.
    std::fs::remove_file(&path).unwrap();
    cache
        .add_module_names(&ID, &[&module], None, &more(0x4000, "g"))
        .unwrap();
    let back = cache.module_names(&ID, &module).unwrap();
    assert_eq!(back, more(0x4000, "g"));
}

#[test]
fn planted_links_are_neither_read_nor_written_through() {
    let (dir, cache, module) = setup();
    let elsewhere = dir.path().join("elsewhere");
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    std::fs::rename(stored(&cache), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, stored(&cache)).unwrap();
    assert_eq!(cache.module_names(&ID, &module), None, "a link is not read");
    let before = std::fs::read(&elsewhere).unwrap();
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        before,
        "target untouched"
    );
    assert!(!std::fs::symlink_metadata(stored(&cache))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn only_a_private_directory_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(NameCache::at(&open).is_none(), "writable by others");
    let link = dir.path().join("link");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&private, &link).unwrap();
    assert!(NameCache::at(&link).is_none(), "a link");
    assert!(NameCache::at(Path::new("relative/dir")).is_none());
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(NameCache::at(&file).is_none(), "a file");
    let made = dir.path().join("a/b/rprof");
    assert!(NameCache::at(&made).is_some(), "created when missing");
    let mode = std::fs::metadata(&made).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn odd_build_ids_are_not_cached() {
    let (_dir, cache, module) = setup();
    assert!(cache
        .store_module_names(&[1, 2], &[&module], &names())
        .is_err());
    assert_eq!(cache.module_names(&[1, 2], &module), None);
    assert!(cache
        .store_module_names(&[7; 65], &[&module], &names())
        .is_err());
}

/// A file that checks out (its CRC is right) but whose pieces overlap, point past the frames,
/// or whose frames name strings that are not there, is not used.
#[test]
fn well_checksummed_nonsense_is_refused() {
    let header = file::Header {
        build_id: "ab".repeat(20),
        namer: "tag".into(),
        sources: vec![("/bin/true".into(), "1:2:3:4.000000005".into())],
    };
    let good = names();
    assert!(file::decode(&file::encode(&header, &good)).is_some());
    let mut overlapping = good.clone();
    overlapping.pieces[1].0 = overlapping.pieces[0].0;
    assert!(file::decode(&file::encode(&header, &overlapping)).is_none());
    let mut past = good.clone();
    past.pieces[2].3 = 100;
    assert!(file::decode(&file::encode(&header, &past)).is_none());
    let mut unknown = good.clone();
    unknown.frames[0].function = 999;
    assert!(file::decode(&file::encode(&header, &unknown)).is_none());
    let mut empty = good;
    empty.pieces[0].3 = 0;
    assert!(file::decode(&file::encode(&header, &empty)).is_none());
}

/// Past the limit, the least recently written files go first, down to three quarters of it;
/// files rprof did not write are left alone.
#[test]
fn the_oldest_files_go_when_the_cache_is_too_large() {
    let (dir, cache, module) = setup();
    let old = cache.dir().join("units-0011");
    let newer = cache.dir().join("names-0022");
    let foreign = cache.dir().join("notes.txt");
    std::fs::write(&old, vec![0u8; 600]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&newer, vec![0u8; 300]).unwrap();
    std::fs::write(&foreign, vec![0u8; 5000]).unwrap();
    cache.trim(1000);
    assert!(old.exists() && newer.exists(), "900 bytes: under the limit");
    cache.trim(800);
    assert!(!old.exists(), "the oldest went");
    assert!(newer.exists(), "300 bytes are under 600");
    assert!(foreign.exists(), "not rprof's");
    cache.store_module_names(&ID, &[&module], &names()).unwrap();
    assert!(cache.module_names(&ID, &module).is_some());
    drop(dir);
}
