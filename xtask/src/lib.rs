//! Project automation for lstm-lm (`cargo xtask …`).
//!
//! The binary (`src/main.rs`) only parses the command line; each subcommand
//! lives in its own module here so that subcommands can call each other (for
//! example `train` calls [`download::ensure_dataset`]).

use std::path::{Path, PathBuf};

pub mod bench;
pub mod bench_neighbors;
pub mod bench_use;
pub mod download;
pub mod fortune;
pub mod fuzz;
pub mod gpu_bench;
pub mod gpu_feature;
pub mod load_test;
pub mod man;
pub mod manifest;
pub mod recipes;
pub mod synth;

/// The workspace root: the parent of this crate's folder.
pub fn project_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
