//! The subcommands: one module each, with a clap `Args` struct and a `run` function.

pub mod completions;
pub mod decode;
mod device_args;
pub mod embed;
pub mod encode;
pub mod eval;
pub mod eval_adapt;
pub mod export;
pub mod generate;
pub mod import;
pub mod info;
mod input;
mod interactive;
pub mod neighbors;
pub mod ngram;
pub mod plot;
pub mod runs;
pub mod score;
pub mod serve;
pub mod similar;
mod stop_signals;
pub mod tokenize;
pub mod train;

use anyhow::Result;
use clap::Subcommand;

/// Every subcommand of `lstm-lm`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a tokenizer on text files and save it as a Hugging Face tokenizer.json.
    Tokenize(tokenize::TokenizeArgs),
    /// Print the token ids of each line of a text.
    Encode(encode::EncodeArgs),
    /// Print the text of each line of token ids.
    Decode(decode::DecodeArgs),
    /// Train a language model on text files and save it in a run folder.
    Train(Box<train::TrainArgs>),
    /// Generate text from a prompt with a trained run, token by token.
    Generate(generate::GenerateArgs),
    /// Train an n-gram (Kneser-Ney) model into a run folder, or export one as ARPA.
    Ngram(ngram::NgramArgs),
    /// Loss, perplexity and accuracy of a trained run on a text file.
    Eval(eval::EvalArgs),
    /// Log-probabilities of a text under a trained run's model.
    Score(score::ScoreArgs),
    /// Serve runs over HTTP: OpenAI-style completions and embeddings, scoring, a page.
    Serve(serve::ServeArgs),
    /// Sentence vectors: one vector per text from the recurrent states.
    Embed(embed::EmbedArgs),
    /// The lines of a file nearest to a query by the cosine of their sentence vectors.
    Similar(similar::SimilarArgs),
    /// Nearest words (cosine of word vectors) and word2vec analogies.
    Neighbors(neighbors::NeighborsArgs),
    /// Write a run's weights (PyTorch safetensors) or word vectors (word2vec, projector).
    Export(export::ExportArgs),
    /// Make a run folder from a PyTorch state dict (safetensors) and a tokenizer.json.
    Import(import::ImportArgs),
    /// What a run folder holds: configuration, size, vocabulary, training history.
    Info(info::InfoArgs),
    /// Draw training curves of one or more runs as SVG or PNG.
    Plot(plot::PlotArgs),
    /// A table of the run folders under a directory (default runs/).
    Runs(runs::RunsArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::CompletionsArgs),
    /// Write man pages into a folder.
    #[command(hide = true)]
    Man(completions::ManArgs),
}

/// Runs one subcommand; returns the process exit status. `cli` builds the whole command line's
/// description, for the commands that print it (completions, man pages).
pub fn run(command: Command, cli: fn() -> clap::Command) -> Result<i32> {
    let done = |r: Result<()>| r.map(|()| 0);
    match command {
        Command::Tokenize(args) => done(tokenize::run(args)),
        Command::Encode(args) => done(encode::run(args)),
        Command::Decode(args) => done(decode::run(args)),
        Command::Train(args) => train::run(*args),
        Command::Generate(args) => generate::run(args),
        Command::Ngram(args) => done(ngram::run(args)),
        Command::Eval(args) => done(eval::run(args)),
        Command::Score(args) => done(score::run(args)),
        Command::Serve(args) => done(serve::run(args)),
        Command::Embed(args) => done(embed::run(args)),
        Command::Similar(args) => done(similar::run(args)),
        Command::Neighbors(args) => done(neighbors::run(args)),
        Command::Export(args) => done(export::run(args)),
        Command::Import(args) => done(import::run(args)),
        Command::Info(args) => done(info::run(args)),
        Command::Plot(args) => done(plot::run(args)),
        Command::Runs(args) => done(runs::run(args)),
        Command::Completions(args) => done(completions::completions(args, cli())),
        Command::Man(args) => done(completions::man(args, cli())),
    }
}
