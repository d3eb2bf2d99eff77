//! Issue 13: the recorder names one module after the other and drops each once named, so that
//! its memory peaks at the largest module rather than at all of them together.

use rprof_symbols::{ModuleSource, Options, Symbolizer};

fn name(symbolizer: &mut Symbolizer, address: u64) -> Option<String> {
    symbolizer
        .symbolize(&ModuleSource::Kernel, &[address])
        .remove(0)
        .frames
        .first()
        .and_then(|f| f.function.clone())
}

/// A forgotten module is loaded again (from the file as it is now) when asked for again; one
/// that is not forgotten keeps what it loaded.
#[test]
fn a_forgotten_module_is_loaded_again_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let kallsyms = dir.path().join("kallsyms");
    std::fs::write(
        &kallsyms,
        "ffffffff81000000 T first_name\nffffffff81000100 t data [m]\n",
    )
    .unwrap();
    let mut symbolizer = Symbolizer::with_options(Options {
        kallsyms: kallsyms.clone(),
        ..Options::default()
    });
    assert_eq!(
        name(&mut symbolizer, 0xffffffff81000010).as_deref(),
        Some("first_name")
    );
    assert_eq!(
        name(&mut symbolizer, 0xffffffff81000110).as_deref(),
        Some("data [m]")
    );
    std::fs::write(&kallsyms, "ffffffff81000000 T second_name\n").unwrap();
    assert_eq!(
        name(&mut symbolizer, 0xffffffff81000010).as_deref(),
        Some("first_name"),
        "kept until forgotten"
    );
    symbolizer.forget(&ModuleSource::Kernel);
    assert_eq!(
        name(&mut symbolizer, 0xffffffff81000010).as_deref(),
        Some("second_name")
    );
    // Forgetting what was never loaded is harmless.
    symbolizer.forget(&ModuleSource::Elf {
        path: "/nonexistent",
        build_id: None,
    });
    symbolizer.forget(&ModuleSource::JitMap { pid: 1 });
    symbolizer.forget(&ModuleSource::Vdso);
}
