//! `lstm-lm completions SHELL` and the hidden `lstm-lm man`: the command line describing itself.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm completions bash > ~/.local/share/bash-completion/completions/lstm-lm
  lstm-lm completions zsh > ~/.zfunc/_lstm-lm
  lstm-lm completions fish > ~/.config/fish/completions/lstm-lm.fish")]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Write man pages (used by `cargo xtask man`).
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder for `lstm-lm.1` and one `lstm-lm-COMMAND.1` per subcommand.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Prints the completion script of `command` for `args.shell` on standard output.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "lstm-lm", &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

/// Writes the man pages of `command` and its subcommands into `args.out`.
pub fn man(args: ManArgs, command: clap::Command) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out \"{}\"", args.out.display()))?;
    clap_mangen::generate_to(command, &args.out)
        .with_context(|| format!("cannot write man pages into \"{}\"", args.out.display()))?;
    Ok(())
}
