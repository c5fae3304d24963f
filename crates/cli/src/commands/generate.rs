//! `lstm-lm generate`: stream text from a trained run; with sampling controls, beam search,
//! stop strings, token probabilities, many samples, prompts from a file (as JSON lines) and an
//! interactive session.
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_infer::{
    GenerateOptions, GeneratedToken, Generation, InferError, LoadedRun, SamplingConfig,
};
use serde_json::json;

use super::device_args::DeviceArgs;
use super::input::Lines;
use super::interactive;

/// Prompts generated at once by `--prompts`, before their results are printed in order.
const PROMPTS_PER_BLOCK: usize = 256;

/// Generate text from a prompt, token by token.
#[derive(Debug, Args)]
// A negative number after a flag is its value (refused by validation with a clear
// message), not an unknown flag.
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm generate --model runs/sample --prompt 'the keeper' --max-tokens 30
  lstm-lm generate --model runs/sample --prompt 'the lamp' --temperature 0.7 --top-p 0.9 --seed 3
  lstm-lm generate --model runs/sample --prompt 'the' --beams 4 --no-repeat-ngram 3 --stop '.'
  lstm-lm generate --model runs/sample --prompts prompts.txt --json > continuations.jsonl
  lstm-lm generate --model runs/sample --interactive"
)]
pub struct GenerateArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Text to continue (empty: start from nothing; -: read it from standard input, or an
    /// interactive session when standard input is a terminal).
    #[arg(long, default_value = "", conflicts_with = "prompts")]
    pub prompt: String,
    /// Continue every line of FILE (- for standard input), each from a fresh state, generated
    /// in parallel and printed in input order (one JSON object per line with --json).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Read prompts from the terminal and stream each continuation; the model state carries
    /// from one prompt to the next. In-line commands: /temp T, /topk K, /topp P, /seed N,
    /// /reset, /help, /quit. Ctrl-C stops the current continuation.
    #[arg(long, short = 'i', conflicts_with_all = ["prompts", "json", "num_samples"])]
    pub interactive: bool,
    /// Tokens to generate.
    #[arg(long, default_value_t = 50)]
    pub max_tokens: usize,
    /// Softmax temperature (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities add up to P (0 < P <= 1).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Always take the most likely token.
    #[arg(long)]
    pub greedy: bool,
    /// Seed of the sampler (sample K of --num-samples uses SEED + K).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Beam search with N hypotheses, ranked by log-probability per token (1: sample).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub beams: usize,
    /// Never repeat an n-gram of this many tokens (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub no_repeat_ngram: usize,
    /// Make tokens already in the text less likely (CTRL's penalty; 1: off, 1.2: typical).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Stop as soon as the text contains this string (not printed); repeatable. Escapes \n,
    /// \t and \\ are understood.
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Stop at the end-of-text token (word tokenizers: the end of a line).
    #[arg(long)]
    pub stop_at_eos: bool,
    /// Generate N continuations with seeds SEED, SEED+1, ...
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub num_samples: usize,
    /// Print each generated token with its probability under the model instead of the text
    /// (coloured by probability on a terminal); with --json, add per-token log-probabilities.
    #[arg(long)]
    pub show_probs: bool,
    /// One JSON object per continuation on stdout (prompt, text, stop_reason, ids; see
    /// docs/json-events.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `lstm-lm generate`; returns the exit status.
pub fn run(args: GenerateArgs) -> Result<i32> {
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            greedy: args.greedy,
        },
        seed: args.seed,
        stop: args.stop.iter().map(|s| unescape(s)).collect(),
        stop_at_eos: args.stop_at_eos,
        repetition_penalty: args.repetition_penalty,
        no_repeat_ngram: args.no_repeat_ngram,
        beams: args.beams,
        probabilities: args.show_probs,
    };
    opts.validate()?;
    if super::ngram::is_ngram_run(&args.model) {
        let lstm_only = args.beams > 1
            || !args.stop.is_empty()
            || args.stop_at_eos
            || args.repetition_penalty != 1.0
            || args.no_repeat_ngram > 0
            || args.show_probs
            || args.json
            || args.prompts.is_some()
            || args.interactive
            || args.num_samples > 1;
        if lstm_only {
            bail!(
                "\"{}\" is an n-gram run: it takes --prompt, --max-tokens and the sampling flags (--temperature, --top-k, --top-p, --greedy, --seed); the other generation controls are for LSTM runs",
                args.model.display()
            );
        }
        let (model, prompt) = (&args.model, &args.prompt);
        super::ngram::generate(model, prompt, args.max_tokens, &opts.sampling, args.seed)?;
        return Ok(0);
    }
    if args.num_samples == 0 {
        bail!("--num-samples must be at least 1");
    }
    if args.num_samples > 1 && args.beams > 1 {
        bail!(
            "--num-samples with --beams: beam search is deterministic and gives one continuation; sample instead (drop --beams)"
        );
    }
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let interactive = args.interactive || (args.prompt == "-" && stdin_is_terminal);
    if interactive && args.json {
        bail!("--json is for scripts: drop it for an interactive session, or use --prompts FILE");
    }
    let mut prompt = args.prompt.clone();
    if !interactive && prompt == "-" {
        std::io::stdin()
            .read_to_string(&mut prompt)
            .map_err(|e| anyhow::anyhow!("cannot read the prompt from standard input: {e}"))?;
        prompt = prompt.trim_end_matches(['\n', '\r']).to_string();
        if prompt == "-" {
            prompt.clear();
        }
    }
    let device = args.device.device()?;
    // On a pool thread, like training: see `lstm_lm_infer::on_pool`.
    lstm_lm_infer::on_pool(move || {
        let run = LoadedRun::load(&args.model, device)?;
        if opts.stop_at_eos && run.tokenizer.eos_id().is_none() {
            bail!(
                "--stop-at-eos: this model's {} tokenizer has no end-of-text token; stop at a string instead (e.g. --stop '\\n')",
                run.tokenizer.kind().name()
            );
        }
        if interactive {
            return interactive::run(&run, &args.model, opts);
        }
        let out = Printer::new(args.show_probs, args.json);
        match &args.prompts {
            Some(file) => from_file(&run, file, &opts, args.num_samples, out),
            None => {
                let mut out = out;
                for k in 0..args.num_samples as u64 {
                    let sample = GenerateOptions {
                        seed: opts.seed.wrapping_add(k),
                        ..opts.clone()
                    };
                    if k > 0 && !args.json && !args.show_probs {
                        out.text("\n")?;
                    }
                    one(&run, &prompt, &sample, k, &mut out)?;
                }
                Ok(0)
            }
        }
    })
}

/// Generates one continuation of `prompt`, streaming it (or its token probabilities), or as
/// one JSON line.
fn one(
    run: &LoadedRun,
    prompt: &str,
    opts: &GenerateOptions,
    sample: u64,
    out: &mut Printer,
) -> Result<()> {
    // A prompt the model cannot take fails before anything is printed.
    run.prompt_ids(prompt)?;
    if !out.json && !out.probs {
        out.text(prompt)?;
    }
    let result = run.generate_with(prompt, opts, |t| out.token(t));
    out.check()?;
    let generation = result?;
    if out.json {
        out.json_line(&generation_json(0, sample, opts.seed, prompt, &generation))?;
    } else if !out.probs {
        out.text("\n")?;
    }
    Ok(())
}

/// `--prompts FILE`: every line continued, in blocks generated in parallel, printed in order.
/// A prompt that fails is reported (a JSON `error` field, or a line on stderr) and the others
/// go on; the exit status is then 1.
fn from_file(
    run: &LoadedRun,
    file: &std::path::Path,
    opts: &GenerateOptions,
    samples: usize,
    mut out: Printer,
) -> Result<i32> {
    let mut lines = Lines::open(Some(file))?;
    let mut index = 0usize;
    let mut failed = 0usize;
    loop {
        let mut block = Vec::with_capacity(PROMPTS_PER_BLOCK);
        while block.len() < PROMPTS_PER_BLOCK {
            match lines.next_line()? {
                Some(line) => block.push(line.to_string()),
                None => break,
            }
        }
        if block.is_empty() {
            break;
        }
        for k in 0..samples as u64 {
            let sample = GenerateOptions {
                seed: opts.seed.wrapping_add(k),
                ..opts.clone()
            };
            let results = run.generate_many(&block, &sample);
            for (i, (prompt, result)) in block.iter().zip(results).enumerate() {
                let index = index + i;
                match result {
                    Ok(g) if out.json => {
                        out.json_line(&generation_json(index, k, sample.seed, prompt, &g))?
                    }
                    Ok(g) => out.text(&format!("{prompt}{}\n", g.text))?,
                    Err(e) => {
                        failed += 1;
                        if out.json {
                            out.json_line(&json!({
                                "index": index, "sample": k, "prompt": prompt,
                                "error": e.to_string(),
                            }))?;
                        } else {
                            eprintln!("{} line {}: {e}", lines.name(), index + 1);
                        }
                    }
                }
            }
        }
        index += block.len();
    }
    if failed > 0 {
        eprintln!("error: {failed} of {index} prompts failed (see the messages above)");
        return Ok(1);
    }
    Ok(0)
}

/// One continuation as a JSON object (the `--json` output of `generate`).
fn generation_json(
    index: usize,
    sample: u64,
    seed: u64,
    prompt: &str,
    g: &Generation,
) -> serde_json::Value {
    let mut v = json!({
        "index": index,
        "sample": sample,
        "seed": seed,
        "prompt": prompt,
        "text": g.text,
        "stop_reason": g.stop_reason.name(),
        "tokens": g.ids.len(),
        "ids": g.ids,
    });
    if let Some(lp) = &g.logprobs {
        v["logprobs"] = json!(lp);
    }
    v
}

/// Standard output for generation: text, token lines with probabilities, or JSON lines. A
/// write that fails is kept whole, so that `main` recognises a closed pipe by it.
struct Printer {
    out: std::io::Stdout,
    probs: bool,
    json: bool,
    colour: bool,
    error: Option<std::io::Error>,
}

impl Printer {
    fn new(probs: bool, json: bool) -> Self {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            out: std::io::stdout(),
            probs,
            json,
            colour,
            error: None,
        }
    }

    fn write(&mut self, s: &str) -> Result<(), InferError> {
        let mut out = self.out.lock();
        out.write_all(s.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| {
                let stop = InferError::Input(format!("cannot write to standard output: {e}"));
                self.error = Some(e);
                stop
            })
    }

    fn text(&mut self, s: &str) -> Result<()> {
        match self.write(s) {
            Ok(()) => Ok(()),
            // The io error itself, so that a closed pipe is recognised.
            Err(stop) => Err(self.check().err().unwrap_or_else(|| stop.into())),
        }
    }

    /// One generated token: its text (plain output), or its probability line (--show-probs).
    fn token(&mut self, t: &GeneratedToken) -> Result<(), InferError> {
        if self.json {
            return Ok(());
        }
        if !self.probs {
            return if t.text.is_empty() {
                Ok(())
            } else {
                self.write(&t.text)
            };
        }
        let (Some(_), Some(p)) = (t.id, t.prob) else {
            return Ok(());
        };
        let token = serde_json::to_string(&t.token).unwrap_or_default();
        let line = if self.colour {
            // Green: the model is sure; yellow: one of a few; red: a long shot.
            let code = if p >= 0.5 {
                32
            } else if p >= 0.1 {
                33
            } else {
                31
            };
            format!("\x1b[{code}m{p:.4}\t{token}\x1b[0m\n")
        } else {
            format!("{p:.4}\t{token}\n")
        };
        self.write(&line)
    }

    fn json_line(&mut self, v: &serde_json::Value) -> Result<()> {
        self.text(&format!("{v}\n"))
    }

    /// The write error that stopped generation, whole (see the type's docs).
    fn check(&mut self) -> Result<()> {
        match self.error.take() {
            Some(e) => {
                Err(anyhow::Error::new(e)
                    .context("cannot write the generated text to standard output"))
            }
            None => Ok(()),
        }
    }
}

/// `\n`, `\t`, `\r` and `\\` in a `--stop` value, as a shell user types them.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
