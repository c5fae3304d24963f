//! Sentence vectors from a trained run, and the nearest sentences to a query by cosine
//! similarity: what `lstm-lm similar` does, in a program of its own.
//!
//! ```text
//! cargo run --release -p lstm-lm-infer --example nearest_sentences -- RUN_DIR "a query" FILE
//! ```
use lstm_lm_infer::{EmbedOptions, LoadedRun, Pooling};
use lstm_lm_model::burn::tensor::Device;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [run_dir, query, file] = args.as_slice() else {
        eprintln!("usage: nearest_sentences RUN_DIR QUERY FILE");
        std::process::exit(2);
    };
    let run = LoadedRun::load(run_dir.as_ref(), Device::flex())?;
    let opts = EmbedOptions {
        pooling: Pooling::Mean,
        ..EmbedOptions::default()
    };
    let lines: Vec<String> = std::fs::read_to_string(file)?
        .lines()
        .map(str::to_string)
        .collect();
    let query = run
        .embed_many(std::slice::from_ref(query), &opts)
        .remove(0)?;
    // One batched pass over the whole file (texts sorted by length inside).
    let mut ranked: Vec<(f32, &str)> = run
        .embed_many(&lines, &opts)
        .into_iter()
        .zip(&lines)
        .filter_map(|(v, line)| v.ok().map(|v| (cosine(&query, &v), line.as_str())))
        .filter(|(sim, _)| sim.is_finite())
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (sim, line) in ranked.iter().take(5) {
        println!("{sim:.4}  {line}");
    }
    Ok(())
}
