//! Generation inside another application: a [`Conversation`] keeps the model state from one
//! prompt to the next and hands every token over as soon as it is picked, so the caller can
//! show it, stop early, or cut the text at a stop string.
//!
//! ```text
//! cargo run --release -p lstm-lm-infer --example streaming_generation -- RUN_DIR
//! ```
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use lstm_lm_infer::{Conversation, GenerateOptions, LoadedRun, SamplingConfig};
use lstm_lm_model::burn::tensor::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(run_dir) = std::env::args().nth(1) else {
        eprintln!("usage: streaming_generation RUN_DIR");
        std::process::exit(2);
    };
    let run = LoadedRun::load(run_dir.as_ref(), Device::flex())?;
    let mut conversation = Conversation::new(&run)?;
    let opts = GenerateOptions {
        max_tokens: 40,
        sampling: SamplingConfig {
            temperature: 0.8,
            top_k: Some(40),
            ..SamplingConfig::default()
        },
        stop: vec![".".into()],
        ..GenerateOptions::default()
    };
    // The application decides when enough is enough: here, after 25 tokens in all.
    let tokens = AtomicUsize::new(0);
    let enough = || tokens.load(Ordering::Relaxed) >= 25;
    for prompt in ["the keeper", "and then", "at night"] {
        print!("{prompt}");
        let generation = conversation.turn(prompt, &opts, &enough, |token| {
            tokens.fetch_add(1, Ordering::Relaxed);
            print!("{}", token.text);
            std::io::stdout().flush().map_err(|e| {
                lstm_lm_infer::InferError::Input(format!("cannot write to standard output: {e}"))
            })
        })?;
        println!("  [{}]", generation.stop_reason.name());
    }
    Ok(())
}
