//! `lstm-lm generate --interactive`: read a prompt, stream its continuation, repeat. The model
//! state carries from one prompt to the next until `/reset`; in-line commands change the
//! sampling; Ctrl-C stops the continuation being printed, not the session.
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use lstm_lm_infer::{Conversation, GenerateOptions, InferError, LoadedRun};

const HELP: &str = "commands: /temp T (temperature), /topk K (0: off), /topp P (1: off), /seed N, \
/tokens N (tokens per continuation), /greedy, /sample, /reset (forget the text so far), \
/settings, /help, /quit (or Ctrl-D); Ctrl-C stops a continuation";

/// Runs the session on the terminal; returns the exit status.
pub fn run(run: &LoadedRun, model_dir: &Path, mut opts: GenerateOptions) -> Result<i32> {
    let generating = Arc::new(AtomicBool::new(false));
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let (generating, interrupt) = (generating.clone(), interrupt.clone());
        // Ctrl-C during a continuation stops it; at the prompt, the terminal has dropped the
        // line being typed, so a fresh prompt is shown.
        let installed = ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                interrupt.store(true, Ordering::SeqCst);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(b"\n> ").and_then(|()| out.flush());
            }
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C cannot be caught ({e}): it will end the session");
        }
    }
    let mut conversation = Conversation::new(run)?;
    eprintln!(
        "lstm-lm: {} ({} tokenizer, {} tokens in the vocabulary). Type a prompt and press Enter.",
        model_dir.display(),
        run.tokenizer.kind().name(),
        run.tokenizer.vocab_size()
    );
    eprintln!("{HELP}");
    let stdin = std::io::stdin();
    let mut line = String::new();
    let mut turn = 0u64;
    loop {
        {
            let mut out = std::io::stdout().lock();
            out.write_all(b"> ")?;
            out.flush()?;
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            // Ctrl-D: leave on a fresh line.
            println!();
            return Ok(0);
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if let Some(command) = text.strip_prefix('/') {
            match command_line(command, &mut opts, &mut conversation) {
                Ok(Some(reply)) => eprintln!("{reply}"),
                Ok(None) => return Ok(0),
                Err(e) => eprintln!("{e}"),
            }
            continue;
        }
        interrupt.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        // Every turn draws its own random stream, reproducibly from the seed.
        let turn_opts = GenerateOptions {
            seed: opts.seed.wrapping_add(turn),
            ..opts.clone()
        };
        turn += 1;
        let mut out = std::io::stdout().lock();
        let result = conversation.turn(
            text,
            &turn_opts,
            &|| interrupt.load(Ordering::SeqCst),
            |t| {
                out.write_all(t.text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| InferError::Input(format!("cannot write to standard output: {e}")))
            },
        );
        generating.store(false, Ordering::SeqCst);
        drop(out);
        match result {
            Ok(g) if g.stop_reason == lstm_lm_infer::StopReason::Interrupted => {
                println!();
                eprintln!("(stopped)");
            }
            Ok(_) => println!(),
            // A prompt of unknown words, say: the session goes on.
            Err(e) => eprintln!("{e}"),
        }
    }
}

/// Carries out an in-line command; `Ok(None)` ends the session, `Ok(Some(reply))` is printed.
fn command_line(
    command: &str,
    opts: &mut GenerateOptions,
    conversation: &mut Conversation<'_>,
) -> Result<Option<String>, String> {
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or_default();
    let value = words.next();
    let number = |what: &str| -> Result<f64, String> {
        value
            .ok_or_else(|| format!("/{name} takes {what}, e.g. /{name} {}", example(name)))?
            .parse::<f64>()
            .map_err(|_| format!("/{name} takes {what}, e.g. /{name} {}", example(name)))
    };
    let mut next = opts.clone();
    match name {
        "quit" | "exit" | "q" => return Ok(None),
        "help" | "?" => return Ok(Some(HELP.to_string())),
        "reset" => {
            conversation.reset().map_err(|e| e.to_string())?;
            return Ok(Some(
                "state reset: the next prompt starts a new text".into(),
            ));
        }
        "settings" => {}
        "temp" | "temperature" => {
            next.sampling.temperature = number("a temperature above 0")?;
            next.sampling.greedy = false;
        }
        "topk" => {
            let k = number("a whole number of tokens")?;
            if k < 0.0 || k.fract() != 0.0 {
                return Err(format!("/topk {k}: give a whole number (0 turns it off)"));
            }
            next.sampling.top_k = (k >= 1.0).then_some(k as usize);
        }
        "topp" => next.sampling.top_p = Some(number("a probability in (0, 1]")?),
        "seed" => {
            let s = number("a whole number")?;
            if s < 0.0 || s.fract() != 0.0 {
                return Err(format!("/seed {s}: give a whole number"));
            }
            next.seed = s as u64;
        }
        "tokens" => {
            let n = number("a whole number of tokens")?;
            if n < 1.0 || n.fract() != 0.0 {
                return Err(format!("/tokens {n}: give a whole number of at least 1"));
            }
            next.max_tokens = n as usize;
        }
        "greedy" => next.sampling.greedy = true,
        "sample" => next.sampling.greedy = false,
        other => return Err(format!("unknown command /{other}; {HELP}")),
    }
    next.validate().map_err(|e| e.to_string())?;
    *opts = next;
    Ok(Some(settings_line(opts)))
}

fn example(name: &str) -> &'static str {
    match name {
        "temp" | "temperature" => "0.7",
        "topk" => "40",
        "topp" => "0.9",
        "tokens" => "100",
        _ => "3",
    }
}

/// `temperature 0.7, top-k 40, top-p off, seed 3, 50 tokens`.
fn settings_line(opts: &GenerateOptions) -> String {
    let s = &opts.sampling;
    if s.greedy {
        return format!("greedy, {} tokens", opts.max_tokens);
    }
    format!(
        "temperature {}, top-k {}, top-p {}, seed {}, {} tokens",
        s.temperature,
        s.top_k.map_or("off".into(), |k| k.to_string()),
        s.top_p.map_or("off".into(), |p| p.to_string()),
        opts.seed,
        opts.max_tokens
    )
}
