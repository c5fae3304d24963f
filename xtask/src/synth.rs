//! `cargo xtask synth`: write the synthetic corpus of known entropy.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use lstm_lm_text_prep::synthetic::{SplitSizes, SyntheticConfig, SyntheticCorpus};

/// Write train/valid/test text from the seeded Markov source, with its exact entropy rate.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (train.txt, valid.txt, test.txt, synthetic.json).
    #[arg(long, default_value = "data/synthetic")]
    pub out: PathBuf,
    /// Tokens in train.txt (valid and test get a tenth each).
    #[arg(long, default_value_t = 200_000)]
    pub train_tokens: usize,
    /// Seed of the chain (which words follow which).
    #[arg(long, default_value_t = 1)]
    pub chain_seed: u64,
    /// Seed of the sampled text.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Runs `cargo xtask synth`.
pub fn run(args: &SynthArgs) -> Result<()> {
    let corpus = SyntheticCorpus::new(SyntheticConfig {
        seed: args.chain_seed,
        ..SyntheticConfig::default()
    })?;
    let sizes = SplitSizes {
        train_tokens: args.train_tokens,
        valid_tokens: args.train_tokens / 10,
        test_tokens: args.train_tokens / 10,
    };
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        crate::project_root().join(&args.out)
    };
    let meta = corpus.write_splits(&out, &sizes, args.seed)?;
    println!(
        "wrote \"{}\": {} / {} / {} tokens; entropy rate {:.4} nats/token, best possible perplexity {:.3}",
        out.display(),
        meta.tokens[0],
        meta.tokens[1],
        meta.tokens[2],
        meta.entropy_rate_nats,
        meta.perplexity
    );
    Ok(())
}
