//! `lstm-lm ngram`: train an interpolated modified Kneser-Ney n-gram model into a run folder,
//! and export it as ARPA. `eval`, `score` and `generate` use n-gram run folders through the
//! functions at the end of this file.
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use lstm_lm_infer::{InferError, LoadedNgramRun, SamplingConfig};
use lstm_lm_ngram::{DEFAULT_ORDER, NgramRun, NgramTrainConfig};
use lstm_lm_text_prep::TokenizerConfig;

use super::tokenize::KindArg;

/// Train or export an n-gram language model.
#[derive(Debug, Args)]
pub struct NgramArgs {
    #[command(subcommand)]
    pub command: NgramCommand,
}

/// The `ngram` subcommands.
#[derive(Debug, Subcommand)]
pub enum NgramCommand {
    /// Count n-grams in text files and estimate an interpolated modified Kneser-Ney model.
    Train(NgramTrainArgs),
    /// Write an n-gram run's model in another format (ARPA).
    Export(NgramExportArgs),
}

/// `lstm-lm ngram train`.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm ngram train --data data/wikitext-2/train.txt --order 5 --out runs/kn5
  lstm-lm eval --model runs/kn5 --data data/wikitext-2/test.txt
  lstm-lm ngram export --model runs/kn5 --format arpa --out kn5.arpa"
)]
pub struct NgramTrainArgs {
    /// Training text files (UTF-8; every line is one sentence, `<s> … </s>`).
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// The order N: predictions condition on up to N − 1 tokens.
    #[arg(long, default_value_t = DEFAULT_ORDER, value_name = "N")]
    pub order: usize,
    /// The run folder to write (tokenizer.json, ngram.bin).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Tokenizer kind, fitted on the training files.
    #[arg(long, value_enum, default_value = "word")]
    pub tokenizer: KindArg,
    /// Vocabulary size of a bpe tokenizer (at least 256) [default: 8000].
    #[arg(long)]
    pub vocab_size: Option<usize>,
}

/// The `--format` values of `ngram export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The ARPA backoff format (log10 probabilities and backoffs) read by KenLM and SRILM.
    Arpa,
}

/// `lstm-lm ngram export`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm ngram export --model runs/kn5 --format arpa --out kn5.arpa
  python3 -c \"import kenlm; print(kenlm.Model('kn5.arpa').score('the cat', bos=True, eos=True))\"")]
pub struct NgramExportArgs {
    /// Run folder written by `lstm-lm ngram train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "arpa")]
    pub format: ExportFormat,
    /// The file to write (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `lstm-lm ngram`.
pub fn run(args: NgramArgs) -> Result<()> {
    match args.command {
        NgramCommand::Train(a) => train(a),
        NgramCommand::Export(a) => export(a),
    }
}

fn train(args: NgramTrainArgs) -> Result<()> {
    let mut tokenizer = TokenizerConfig::new(args.tokenizer.into());
    tokenizer.vocab_size = args.vocab_size;
    let config = NgramTrainConfig {
        tokenizer,
        order: args.order,
    };
    NgramRun::check_destination(&args.out)?;
    let started = Instant::now();
    let run = NgramRun::train(&args.data, &config)?;
    let seconds = started.elapsed().as_secs_f64();
    run.save(&args.out)?;
    let model = &run.model;
    for fallback in &model.estimation().fallbacks {
        eprintln!("note: {}", fallback.describe());
    }
    let counts: Vec<String> = model
        .ngram_counts()
        .iter()
        .enumerate()
        .map(|(k, n)| format!("{}-grams {n}", k + 1))
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}-gram Kneser-Ney model of {} tokens ({} lines, vocabulary {}): {} in {seconds:.1}s",
        model.order(),
        model.estimation().tokens,
        model.estimation().sentences,
        run.tokenizer.vocab_size(),
        counts.join(", "),
    )?;
    writeln!(out, "saved in \"{}\"", args.out.display())?;
    out.flush()?;
    Ok(())
}

fn export(args: NgramExportArgs) -> Result<()> {
    let run = NgramRun::load(&args.model)?;
    let names = run.symbol_names();
    let ExportFormat::Arpa = args.format;
    if args.out.as_os_str() == "-" {
        let mut out = BufWriter::new(std::io::stdout().lock());
        run.model.write_arpa(&names, &mut out)?;
        out.flush()?;
        return Ok(());
    }
    let mut bytes = Vec::new();
    run.model.write_arpa(&names, &mut bytes)?;
    lstm_lm_infer::write_atomic(&args.out, &bytes)
        .with_context(|| format!("cannot write the ARPA file \"{}\"", args.out.display()))?;
    let total: usize = run.model.ngram_counts().iter().sum();
    println!(
        "wrote \"{}\": ARPA, order {}, {total} n-grams",
        args.out.display(),
        run.model.order()
    );
    Ok(())
}

/// Whether `--model` names an n-gram run folder (it holds `ngram.bin`).
pub fn is_ngram_run(model: &Path) -> bool {
    lstm_lm_ngram::is_ngram_run(model)
}

/// `eval` on an n-gram run: the LSTM's line without accuracy.
pub fn eval(args: super::eval::EvalArgs) -> Result<()> {
    if args.mix.is_some() {
        anyhow::bail!(
            "--mix goes with an LSTM run as --model (\"{}\" is an n-gram run): lstm-lm eval --model LSTM_RUN --mix NGRAM_RUN:λ",
            args.model.display()
        );
    }
    let r = LoadedNgramRun::load(&args.model)?.evaluate_file(&args.data)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    } else {
        writeln!(
            out,
            "loss {:.4}  perplexity {:.2}  tokens {}",
            r.loss, r.ppl, r.tokens
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `score` on an n-gram run: the same output as for an LSTM run.
pub fn score(args: &super::score::ScoreArgs, texts: &[String]) -> Result<()> {
    let run = LoadedNgramRun::load(&args.model)?;
    let scores = texts.iter().map(|t| run.score(t).map(|s| (t.as_str(), s)));
    super::score::print_scores(scores, args.json)
}

/// `generate` on an n-gram run: the prompt, then the sampled text as it comes.
pub fn generate(
    model: &Path,
    prompt: &str,
    max_tokens: usize,
    sampling: &SamplingConfig,
    seed: u64,
) -> Result<()> {
    let run = LoadedNgramRun::load(model)?;
    let mut out = std::io::stdout().lock();
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    // As in `generate`: the write error itself is kept so that `main` recognises a closed pipe.
    let mut write_error: Option<std::io::Error> = None;
    let result = run.generate(prompt, max_tokens, sampling, seed, |piece| {
        out.write_all(piece.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| {
                let stop = InferError::Input(format!("cannot write to standard output: {e}"));
                write_error = Some(e);
                stop
            })
    });
    if let Some(e) = write_error {
        return Err(
            anyhow::Error::new(e).context("cannot write the generated text to standard output")
        );
    }
    result?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
