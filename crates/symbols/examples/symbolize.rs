//! Prints what rprof-symbols finds for addresses of a module, one line per frame.
//!
//! Usage: `symbolize FILE|--vdso|--kernel|--jit=PID ADDR...` (addresses in hex, lookup addresses:
//! SVMAs for files and the vDSO, absolute for the kernel and JIT maps).

use rprof_symbols::{ModuleSource, Symbolizer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((module, addrs)) = args.split_first() else {
        eprintln!("usage: symbolize FILE|--vdso|--kernel|--jit=PID ADDR...");
        std::process::exit(2);
    };
    let source = match module.as_str() {
        "--vdso" => ModuleSource::Vdso,
        "--kernel" => ModuleSource::Kernel,
        m => match m.strip_prefix("--jit=").map(str::parse) {
            Some(Ok(pid)) => ModuleSource::JitMap { pid },
            Some(Err(e)) => {
                eprintln!("symbolize: bad pid in {m}: {e}");
                std::process::exit(2);
            }
            None => ModuleSource::Elf {
                path: m,
                build_id: None,
            },
        },
    };
    let mut parsed = Vec::new();
    for a in addrs {
        match u64::from_str_radix(a.trim_start_matches("0x"), 16) {
            Ok(v) => parsed.push(v),
            Err(e) => {
                eprintln!("symbolize: bad address {a}: {e}");
                std::process::exit(2);
            }
        }
    }
    let mut sym = Symbolizer::new();
    let status = sym.module_status(&source);
    eprintln!("{status:?}");
    for (addr, loc) in parsed.iter().zip(sym.symbolize(&source, &parsed)) {
        if loc.frames.is_empty() {
            println!("{addr:#x}\t??");
        }
        for f in &loc.frames {
            println!(
                "{addr:#x}\t{}{}\t{}:{}",
                if f.inlined { "(inlined) " } else { "" },
                f.function.as_deref().unwrap_or("??"),
                f.file.as_deref().unwrap_or("??"),
                f.line.map_or_else(|| "?".to_owned(), |l| l.to_string()),
            );
        }
    }
}
