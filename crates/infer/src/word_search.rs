//! Nearest words and analogies in a run's word-vector tables: words in, words out, with the
//! run's tokenizer between them and [`WordVectors`] doing the search.
use lstm_lm_model::{VectorTable, WordVectors};
use lstm_lm_text_prep::TextTokenizer;
use serde::Serialize;

use crate::{InferError, LoadedRun};

/// A word found by a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordNeighbor {
    /// The token as the tokenizer spells it.
    pub word: String,
    /// Its id.
    pub id: u32,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
}

/// A run's word vectors, normalised once, ready for any number of queries.
///
/// The query words themselves are never listed (gensim's `most_similar` convention): a word
/// is always its own nearest neighbour, with similarity 1. Keras' padding id (not a word) is
/// never listed either.
pub struct WordSearch<'a> {
    tokenizer: &'a TextTokenizer,
    vectors: WordVectors,
    table: VectorTable,
    never: Vec<u32>,
}

impl<'a> WordSearch<'a> {
    /// Reads and normalises `table` of `run`'s model.
    pub fn new(run: &'a LoadedRun, table: VectorTable) -> Result<Self, InferError> {
        let vectors = WordVectors::new(run.model.word_table(table)?);
        Ok(WordSearch {
            tokenizer: &run.tokenizer,
            vectors,
            table,
            never: run.tokenizer.pad_id().into_iter().collect(),
        })
    }

    /// The table searched.
    pub fn table(&self) -> VectorTable {
        self.table
    }

    /// The normalised vectors.
    pub fn vectors(&self) -> &WordVectors {
        &self.vectors
    }

    /// The id of `word`: the token itself, or else the single token the tokenizer makes of it
    /// (Keras lowercases, BPE may mark a word start). A word the vocabulary lacks, or one the
    /// tokenizer cuts into several pieces, is an error that says so.
    pub fn word_id(&self, word: &str) -> Result<u32, InferError> {
        word_id(self.tokenizer, word)
    }

    /// The `k` words nearest to `word`, best first, `word` itself left out.
    pub fn neighbors(&self, word: &str, k: usize) -> Result<Vec<WordNeighbor>, InferError> {
        let id = self.word_id(word)?;
        Ok(self.named(self.vectors.neighbors(id, k, &self.never)))
    }

    /// "`a` is to `b` as `c` is to ?": the `k` words nearest to b − a + c (unit vectors), the
    /// three words left out.
    pub fn analogy(
        &self,
        a: &str,
        b: &str,
        c: &str,
        k: usize,
    ) -> Result<Vec<WordNeighbor>, InferError> {
        let (a, b, c) = (self.word_id(a)?, self.word_id(b)?, self.word_id(c)?);
        Ok(self.named(self.vectors.analogy(a, b, c, k, &self.never)))
    }

    fn named(&self, found: Vec<lstm_lm_model::Neighbor>) -> Vec<WordNeighbor> {
        found
            .into_iter()
            .map(|n| WordNeighbor {
                word: self.tokenizer.id_to_token(n.id).unwrap_or_default(),
                id: n.id,
                similarity: n.similarity,
            })
            .collect()
    }
}

/// See [`WordSearch::word_id`].
pub fn word_id(tokenizer: &TextTokenizer, word: &str) -> Result<u32, InferError> {
    let pad = tokenizer.pad_id();
    if let Some(id) = tokenizer.token_to_id(word)
        && Some(id) != pad
    {
        return Ok(id);
    }
    let mut ids = tokenizer.encode_line(word)?;
    if let Some(eos) = tokenizer.eos_id()
        && ids.last() == Some(&eos)
    {
        ids.pop();
    }
    let kind = tokenizer.kind();
    let unknown = || {
        InferError::Input(format!(
            "{word:?} is not in the vocabulary of this run's {kind} tokenizer ({} ids): ask for a word of the training text",
            tokenizer.vocab_size()
        ))
    };
    match ids.as_slice() {
        [id] if Some(*id) != tokenizer.unk_id() && Some(*id) != pad => Ok(*id),
        [] | [_] => Err(unknown()),
        pieces if pieces.iter().all(|&id| Some(id) == tokenizer.unk_id()) => Err(unknown()),
        pieces => {
            let shown: Vec<String> = pieces
                .iter()
                .map(|&id| format!("{:?}", tokenizer.id_to_token(id).unwrap_or_default()))
                .collect();
            Err(InferError::Input(format!(
                "{word:?} is not in the vocabulary as one token: this run's {kind} tokenizer splits it into {} pieces {}; ask for one of them",
                pieces.len(),
                shown.join(" ")
            )))
        }
    }
}
