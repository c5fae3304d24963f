//! Use a trained lstm-lm run: load it, generate, score, evaluate, embed and export.
//!
//! A run folder ([`RunDir`]: `config.json`, `tokenizer.json`, `model.bpk`) is what `lstm-lm
//! train` writes. [`LoadedRun`] loads one and uses it: generation with every control
//! ([`GenerateOptions`], [`Conversation`], beams, stop strings), scoring ([`LoadedRun::score`],
//! [`TextScore`]), evaluation ([`evaluate()`]), sentence vectors ([`EmbedOptions`]), nearest
//! words ([`WordSearch`]) and files other tools read ([`export_safetensors`],
//! [`export_word2vec`], [`export_projector`], [`import_torch`]). N-gram runs load as
//! [`LoadedNgramRun`]. Evaluation can adapt to the text it reads: a continuous cache
//! ([`cache_pointer`]) and dynamic evaluation ([`dynamic_eval`]), through [`evaluate_adapted`].
//! This crate does not depend on the trainer (`lstm-lm-train`), so an
//! application that only generates or embeds compiles neither the training loop nor its
//! progress bars and plots.
//!
//! Generate, score and embed from a run folder (here an untrained one, written in a few lines):
//!
//! ```
//! use lstm_lm_infer::{EmbedOptions, GenerateOptions, LoadedRun};
//! use lstm_lm_model::burn::tensor::Device;
//! # use lstm_lm_infer::{DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir, TrainSettings, data, model_bytes, write_atomic};
//! # let dir = std::env::temp_dir().join(format!("lstm-lm-infer-doc-{}", std::process::id()));
//! # let settings = TrainSettings::preset("seed").unwrap().set("model.hidden_size=16").unwrap();
//! # let tokenizer = data::fit_tokenizer(&settings.data, "the keeper lit the lamp\n").unwrap();
//! # let model_config = settings.model.model_config(tokenizer.vocab_size());
//! # let run = RunDir::new(&dir);
//! # run.create().unwrap();
//! # run.save_tokenizer(&tokenizer).unwrap();
//! # let model = model_config.init(&Device::flex()).unwrap();
//! # write_atomic(&run.model_path(), &model_bytes(&model).unwrap()).unwrap();
//! # run.save_config(&RunConfig {
//! #     format: RUN_FORMAT.into(), version: RUN_FORMAT_VERSION, settings, model: model_config,
//! #     ngram_width: None, data: DataFiles::default(), data_digests: Vec::new(), backend: "flex".into(),
//! # }).unwrap();
//!
//! let run = LoadedRun::load(&dir, Device::flex()).unwrap();
//! let opts = GenerateOptions { max_tokens: 5, ..GenerateOptions::default() };
//! let generated = run.generate_with("the keeper", &opts, |_token| Ok(())).unwrap();
//! assert_eq!(generated.ids.len(), 5);
//!
//! let score = run.score("the lamp").unwrap();
//! assert!(score.total_logprob < 0.0 && score.ppl.is_finite());
//!
//! let vectors = run.embed_many(&["the lamp".to_string()], &EmbedOptions::default());
//! assert_eq!(vectors[0].as_ref().unwrap().len(), 16);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![warn(missing_docs)]

mod adaptive_eval;
mod atomic;
mod batch_score;
mod beam;
pub mod cache_pointer;
pub mod data;
pub mod decoding;
mod device;
pub mod dynamic_eval;
mod error;
pub mod evaluate;
mod generate;
mod logit_rules;
pub mod loss;
mod mixture;
mod ngram_lm;
pub mod run_dir;
mod sentence_vectors;
mod session;
pub mod settings;
mod stop_text;
mod text_batches;
mod torch_export;
mod torch_import;
mod vector_export;
mod word_search;

pub use adaptive_eval::{
    AdaptedEval, CachedTextScore, Figures, GridPoint, StreamScores, Tuning, best_point,
    evaluate_adapted, gradient_stats_file, score_stream, stream_ids, tune_cache, tune_dynamic,
};
pub use atomic::write_atomic;
pub use decoding::{Conversation, GenerateOptions, GeneratedToken, Generation, StopReason};
pub use device::{on_pool, setup_device, setup_threads};
pub use error::InferError;
pub use evaluate::{EvalResult, evaluate};
pub use generate::{Generator, GeneratorState, SamplingConfig, score_ids};
pub use logit_rules::{apply_repetition_penalty, log_prob_of, no_repeat_ngram_bans};
pub use mixture::{MixtureResult, check_same_tokenizer, evaluate_mixture};
pub use ngram_lm::{LoadedNgramRun, NgramEvalResult, draw};
pub use run_dir::{
    DataFileDigest, DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir,
    changed_data_files, load_weights, model_bytes,
};
pub use sentence_vectors::{EmbedOptions, LayerChoice, Pooling};
pub use session::{LoadedRun, TextScore};
pub use settings::TrainSettings;
pub use stop_text::StopText;
pub use torch_export::{
    TORCH_EXPORT_FORMAT, TORCH_EXPORT_FORMAT_VERSION, export_safetensors, torch_state_dict_bytes,
};
pub use torch_import::{IMPORTED_BACKEND, ImportOptions, import_torch};
pub use vector_export::{VectorExport, escape_token, export_projector, export_word2vec};
pub use word_search::{WordNeighbor, WordSearch, word_id};
