//! `rprof completions SHELL` and `rprof man DIR`: shell completions (clap_complete) and man pages
//! (clap_mangen) generated from rprof's own command-line definition, so they always match it.
//!
//! Completions go to stdout; man pages are written into DIR (created if missing) as `rprof.1`
//! and one `rprof-COMMAND.1` per command, each through `rprof-fs` like every other output.

use std::io::{self, Write};
use std::path::PathBuf;

use clap_complete::Shell;
use rprof_fs::{Access, NewFile};

use crate::report::stdout_error;

/// Arguments of `rprof completions`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Install, e.g.:\n  \
    bash: rprof completions bash > ~/.local/share/bash-completion/completions/rprof\n  \
    zsh:  rprof completions zsh > ~/.zfunc/_rprof   (with fpath+=~/.zfunc before compinit)\n  \
    fish: rprof completions fish > ~/.config/fish/completions/rprof.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Arguments of `rprof man`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Read them with `man -l DIR/rprof.1`, or install them into a man \
    directory, e.g. `rprof man /usr/local/share/man/man1`."
)]
pub struct ManArgs {
    /// The directory the pages are written into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Runs `rprof completions`: the script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "rprof", &mut script);
    let mut out = io::stdout().lock();
    out.write_all(&script).map_err(stdout_error)?;
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

/// The man pages of `cli`: `(file name, page)` for rprof and each of its commands.
pub fn man_pages(cli: clap::Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cli = cli;
    cli.build();
    let name = cli.get_name().to_string();
    let mut pages = Vec::new();
    let mut page = Vec::new();
    clap_mangen::Man::new(cli.clone()).render(&mut page)?;
    pages.push((format!("{name}.1"), page));
    for sub in cli.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let full = format!("{name}-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(full.clone())
            .bin_name(format!("{name} {}", sub.get_name()));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        pages.push((format!("{full}.1"), page));
    }
    Ok(pages)
}

/// Runs `rprof man`: writes every page into `args.dir`.
pub fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<i32> {
    let pages = man_pages(cli)?;
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the directory {}: {e}; name another with rprof man DIR",
            args.dir.display()
        )
    })?;
    for (file, page) in &pages {
        let mut new = NewFile::create(&args.dir.join(file), Access::Shared)?;
        if let Some(problem) = new.handover_problem() {
            eprintln!("rprof: note: {problem}");
        }
        new.write_all(page)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", new.path().display()))?;
        new.commit()?;
    }
    eprintln!(
        "rprof: wrote {} man pages to {} (read one with `man -l {}`)",
        pages.len(),
        args.dir.display(),
        args.dir.join("rprof.1").display()
    );
    Ok(0)
}
