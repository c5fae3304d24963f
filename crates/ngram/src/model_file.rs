//! The model file (`RUN/ngram.bin`): a format-tagged JSON header line, then the tables as
//! little-endian arrays.
//!
//! ```text
//! {"format":"lstm-lm-ngram-model","version":1,"order":N,"symbols":{…},"ngrams":[c1,…,cN],"estimation":{…}}\n
//! for each order k = 1..N:
//!     keys        ck × u64   (k ≥ 2 only: prefix index × symbols + last symbol)
//!     log10_prob  ck × f32
//!     log10_bo    ck × f32   (k < N only)
//! ```
//! Unigrams are indexed by symbol (`c1` is the number of symbols). Loading checks the tag,
//! the version, every size against the file's length, and every key against the order below,
//! before anything is built.
use std::path::Path;

use lstm_lm_text_prep::write_atomic;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::count::check_order;
use crate::error::{NgramError, Result};
use crate::estimate::Estimation;
use crate::model::{KneserNeyModel, ModelTable};
use crate::symbols::Symbols;

/// The format tag of the model file.
pub const MODEL_FORMAT: &str = "lstm-lm-ngram-model";
/// The current model file version.
pub const MODEL_FORMAT_VERSION: u32 = 1;
/// Most bytes the header line may take.
const MAX_HEADER_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct FileHeader {
    format: String,
    version: u32,
    order: usize,
    symbols: Symbols,
    ngrams: Vec<u64>,
    estimation: Estimation,
}

impl KneserNeyModel {
    /// The model as the bytes of a model file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = FileHeader {
            format: MODEL_FORMAT.into(),
            version: MODEL_FORMAT_VERSION,
            order: self.order(),
            symbols: self.symbols().clone(),
            ngrams: self.ngram_counts().iter().map(|&n| n as u64).collect(),
            estimation: self.estimation().clone(),
        };
        let mut out = serde_json::to_vec(&header)
            .map_err(|e| NgramError::Input(format!("cannot serialize the model header: {e}")))?;
        out.push(b'\n');
        let body: usize = self.tables.iter().map(|t| t.len() * 16).sum();
        out.reserve(body);
        for t in &self.tables {
            for &k in &t.keys {
                out.extend_from_slice(&k.to_le_bytes());
            }
            for &p in &t.log10_prob {
                out.extend_from_slice(&p.to_le_bytes());
            }
            for &b in &t.log10_backoff {
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Writes the model file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(write_atomic(path, &self.to_bytes()?)?)
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| NgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|reason| NgramError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses model-file bytes; the error says what is wrong and what to do.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let damaged = |what: &str| format!("{what}; the file is damaged: train the model again");
        let end = bytes
            .iter()
            .take(MAX_HEADER_BYTES)
            .position(|&b| b == b'\n')
            .ok_or_else(|| damaged("it has no header line"))?;
        let header: FileHeader = serde_json::from_slice(&bytes[..end])
            .map_err(|e| damaged(&format!("its header cannot be read ({e})")))?;
        if header.format != MODEL_FORMAT {
            return Err(format!(
                "it is format '{}', not '{MODEL_FORMAT}': pass a model written by `lstm-lm ngram train`",
                header.format
            ));
        }
        if header.version > MODEL_FORMAT_VERSION {
            return Err(format!(
                "it is version {}, this lstm-lm reads up to version {MODEL_FORMAT_VERSION}: use the lstm-lm that wrote it",
                header.version
            ));
        }
        let order = header.order;
        check_order(order).map_err(|e| damaged(&e.to_string()))?;
        let symbols = header.symbols;
        let width = u64::from(symbols.len());
        let sane = symbols.bos < u32::MAX
            && symbols.eos < symbols.bos
            && symbols.excluded.iter().all(|&x| x < symbols.bos)
            && symbols.predictable() > 0
            && header.ngrams.len() == order
            && header.ngrams[0] == width
            && header.estimation.discounts.len() == order;
        if !sane {
            return Err(damaged("its header does not hold together"));
        }
        let mut need = end as u64 + 1;
        for (k, &n) in header.ngrams.iter().enumerate() {
            let per = 4 + if k > 0 { 8 } else { 0 } + if k + 1 < order { 4 } else { 0 };
            need = n
                .checked_mul(per)
                .and_then(|b| need.checked_add(b))
                .ok_or_else(|| damaged("its sizes overflow"))?;
        }
        if need != bytes.len() as u64 {
            return Err(damaged(&format!(
                "it should be {need} bytes long but is {}",
                bytes.len()
            )));
        }
        let mut at = end + 1;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let mut tables: Vec<ModelTable> = Vec::with_capacity(order);
        for k in 0..order {
            let n = header.ngrams[k] as usize;
            let keys: Vec<u64> = if k > 0 {
                take(n * 8)
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect()
            } else {
                Vec::new()
            };
            let floats = |s: &[u8]| -> Vec<f32> {
                s.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect()
            };
            let log10_prob = floats(take(n * 4));
            let log10_backoff = if k + 1 < order {
                floats(take(n * 4))
            } else {
                Vec::new()
            };
            if log10_prob
                .iter()
                .chain(&log10_backoff)
                .any(|x| !x.is_finite())
            {
                return Err(damaged(&format!(
                    "order {} holds a non-finite value",
                    k + 1
                )));
            }
            let mut index = FxHashMap::default();
            if k > 0 {
                let below = header.ngrams[k - 1];
                index.reserve(n);
                for (i, &key) in keys.iter().enumerate() {
                    if key / width >= below || index.insert(key, i as u32).is_some() {
                        return Err(damaged(&format!(
                            "{}-gram {i} has a key that does not fit",
                            k + 1
                        )));
                    }
                }
            }
            tables.push(ModelTable {
                index,
                keys,
                log10_prob,
                log10_backoff,
            });
        }
        Ok(KneserNeyModel::from_parts(
            order,
            symbols,
            tables,
            header.estimation,
        ))
    }
}
