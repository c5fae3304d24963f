//! The Keras text-generation article, end to end, with lstm-lm's libraries: tokenize the
//! corpus, turn every line into n-gram prefixes, train an LSTM on them, then continue a seed
//! text word by word with `generate_text(seed_text, next_words)`.
//!
//! ```text
//! cargo run --release -p lstm-lm-train --example keras_article [CORPUS.txt]
//! ```
//! (default corpus: the sample shipped in `datasets/sample/corpus.txt`).
use std::path::PathBuf;

use lstm_lm_model::burn::tensor::Device;
use lstm_lm_text_prep::{KerasTokenizer, NgramDataset, text_lines};
use lstm_lm_train::{
    DataFiles, GenerateOptions, LoadedRun, ProgressMode, SamplingConfig, TrainOptions,
    TrainOutcome, TrainSettings, train,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/sample/corpus.txt")
        });
    let text = std::fs::read_to_string(&corpus)?;

    // 1. Tokenize, as Keras' Tokenizer does (lower case, punctuation filtered, ids by frequency).
    let lines: Vec<&str> = text_lines(&text).collect();
    let mut tokenizer = KerasTokenizer::new(None, None);
    tokenizer.fit_on_texts(lines.iter().copied());
    println!("{} words in the vocabulary", tokenizer.vocab_size() - 1);

    // 2. Every prefix of every line predicts its next word (pre-padded with 0).
    let sequences = tokenizer.texts_to_sequences(lines.iter().copied());
    let dataset = NgramDataset::new(sequences, None, 0)?;
    println!(
        "{} n-gram samples of width {}",
        dataset.len(),
        dataset.width()
    );

    // 3. Train the article's model (the `seed` preset: Embedding, LSTM 128, RMSprop) with the
    //    trainer, which runs the same two steps on the file and saves a run folder.
    let out = std::env::temp_dir().join(format!("keras-article-{}", std::process::id()));
    let settings = TrainSettings::preset("seed")?.set("train.epochs=20")?;
    let outcome = train(TrainOptions {
        progress: ProgressMode::Lines,
        ..TrainOptions::new(settings, DataFiles::train_only(corpus), &out)
    })?;
    if let TrainOutcome::Finished(summary) = outcome {
        println!(
            "trained {} epochs, loss {:.3}",
            summary.epochs, summary.last_train_loss
        );
    }

    // 4. The article's generate_text: the most likely next word, next_words times.
    let run = LoadedRun::load(&out, Device::flex())?;
    let generate_text = |seed_text: &str, next_words: usize| {
        let opts = GenerateOptions {
            max_tokens: next_words,
            sampling: SamplingConfig {
                greedy: true,
                ..SamplingConfig::default()
            },
            ..GenerateOptions::default()
        };
        run.generate_with(seed_text, &opts, |_| Ok(()))
            .map(|g| format!("{seed_text}{}", g.text))
    };
    println!("{}", generate_text("the keeper", 12)?);
    println!("{}", generate_text("in the morning", 12)?);
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
