//! Word vectors read from a model's weight tables, and whole-vocabulary cosine search.
//!
//! A language model holds two tables of word vectors: the input embedding (`[vocab,
//! embedding]`) and the rows of the output projection (`[vocab, hidden]`; the same matrix when
//! the weights are tied). [`WordVectors`] normalises a table once, so that a query costs one
//! matrix-vector product over the whole vocabulary (run on the rayon pool) and a partial sort.
//! The product runs on a bfloat16 copy of the table (half the memory traffic), and only the rows
//! that its error bound leaves in the running are scored again exactly (`coarse_search`), so
//! the answer is the exact top `k`.
use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use crate::coarse_search::{CoarseTable, candidate_floor};
use crate::{LanguageModel, ModelError};

/// Which weight table holds the word vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorTable {
    /// The input embedding, `encoder.weight` in PyTorch's names (the default).
    #[default]
    Input,
    /// The output projection's rows, `decoder.weight` (the embedding when tied).
    Output,
}

impl VectorTable {
    /// `input` or `output`, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            VectorTable::Input => "input",
            VectorTable::Output => "output",
        }
    }
}

impl fmt::Display for VectorTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VectorTable {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "input" => Ok(VectorTable::Input),
            "output" => Ok(VectorTable::Output),
            other => Err(ModelError::InvalidConfig(format!(
                "unknown vector table '{other}': use input or output"
            ))),
        }
    }
}

/// A table of word vectors as it is stored: one row per id, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTable {
    /// Values, `rows × dim`, row `id` at `id * dim`.
    pub values: Vec<f32>,
    /// Width of a row.
    pub dim: usize,
}

impl WordTable {
    /// Number of rows (the vocabulary size).
    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// The vector of `id`.
    ///
    /// # Panics
    /// When `id` is not below [`rows`](Self::rows).
    pub fn row(&self, id: usize) -> &[f32] {
        &self.values[id * self.dim..(id + 1) * self.dim]
    }
}

impl LanguageModel {
    /// The word vectors of `table`, copied from the device.
    pub fn word_table(&self, table: VectorTable) -> Result<WordTable, ModelError> {
        let tensor = match table {
            VectorTable::Input => self.embedding.val(),
            VectorTable::Output => self.output_projection().0,
        };
        let [_, dim] = tensor.dims();
        let values = tensor
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| {
                ModelError::Backend(format!(
                    "cannot read the {table} vectors back from the device: {e:?}"
                ))
            })?;
        Ok(WordTable { values, dim })
    }
}

/// One id found by a search, with its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The row's id.
    pub id: u32,
    /// Cosine similarity in [-1, 1].
    pub similarity: f32,
}

/// A word-vector table normalised to unit length, for cosine search over every row.
#[derive(Debug, Clone)]
pub struct WordVectors {
    unit: Vec<f32>,
    coarse: CoarseTable,
    dim: usize,
}

/// Rows per parallel task: large enough that a task's work (rows × dim multiply-adds) dwarfs
/// the cost of scheduling it.
const ROWS_PER_TASK: usize = 512;

impl WordVectors {
    /// Normalises every row of `table` to length 1 (a row of length 0, or one that is not
    /// finite, stays as it is and is never found: its similarity is not a finite number or 0).
    pub fn new(table: WordTable) -> Self {
        let WordTable { mut values, dim } = table;
        if dim > 0 {
            values.par_chunks_mut(dim).for_each(|row| {
                let norm = dot(row, row).sqrt();
                if norm > 0.0 && norm.is_finite() {
                    row.iter_mut().for_each(|v| *v /= norm);
                }
            });
        }
        let coarse = CoarseTable::new(&values, dim);
        WordVectors {
            unit: values,
            coarse,
            dim,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.unit.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of a vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The unit vector of `id`.
    ///
    /// # Panics
    /// When `id` is not below [`len`](Self::len).
    pub fn unit(&self, id: u32) -> &[f32] {
        let start = id as usize * self.dim;
        &self.unit[start..start + self.dim]
    }

    /// The cosine similarity of `query` with every row, in id order (0 for every row when the
    /// query has length 0).
    ///
    /// # Panics
    /// When `query` is not [`dim`](Self::dim) long.
    pub fn similarities(&self, query: &[f32]) -> Vec<f32> {
        assert_eq!(query.len(), self.dim, "query width");
        let norm = dot(query, query).sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        let mut out = vec![0.0f32; self.len()];
        if self.dim == 0 {
            return out;
        }
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(self.unit.par_chunks(ROWS_PER_TASK * self.dim))
            .for_each(|(sims, rows)| {
                for (s, row) in sims.iter_mut().zip(rows.chunks_exact(self.dim)) {
                    *s = dot(row, query) * scale;
                }
            });
        out
    }

    /// The `k` rows most similar to `query`, best first, leaving out the ids in `exclude` and
    /// rows whose similarity is not a finite number. Ties go to the lower id.
    pub fn nearest(&self, query: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
        assert_eq!(query.len(), self.dim, "query width");
        let norm = dot(query, query).sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        let coarse = self.coarse.similarities(query, scale);
        let kept = |id: usize| !exclude.contains(&(id as u32));
        let floor = candidate_floor(&coarse, k, kept).unwrap_or(f32::NEG_INFINITY);
        // Exact similarities for the rows still in the running; NaN (never found) elsewhere.
        let exact: Vec<f32> = coarse
            .iter()
            .enumerate()
            .map(|(id, &c)| {
                if c >= floor {
                    let start = id * self.dim;
                    dot(&self.unit[start..start + self.dim], query) * scale
                } else {
                    f32::NAN
                }
            })
            .collect();
        top_k(&exact, k, exclude)
    }

    /// The `k` rows nearest to row `id`, the row itself left out along with `exclude`.
    ///
    /// # Panics
    /// When `id` is not below [`len`](Self::len).
    pub fn neighbors(&self, id: u32, k: usize, exclude: &[u32]) -> Vec<Neighbor> {
        let mut skip = exclude.to_vec();
        skip.push(id);
        self.nearest(self.unit(id), k, &skip)
    }

    /// The word2vec analogy "a is to b as c is to ?": the `k` rows nearest to
    /// `unit(b) − unit(a) + unit(c)` (unit vectors, as word2vec and gensim add them), leaving
    /// out `a`, `b`, `c` and `exclude`.
    ///
    /// # Panics
    /// When an id is not below [`len`](Self::len).
    pub fn analogy(&self, a: u32, b: u32, c: u32, k: usize, exclude: &[u32]) -> Vec<Neighbor> {
        let query: Vec<f32> = self
            .unit(b)
            .iter()
            .zip(self.unit(a))
            .zip(self.unit(c))
            .map(|((vb, va), vc)| vb - va + vc)
            .collect();
        let mut skip = exclude.to_vec();
        skip.extend([a, b, c]);
        self.nearest(&query, k, &skip)
    }
}

/// The `k` best finite similarities, best first, ties to the lower id, without `exclude`.
fn top_k(sims: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
    let mut candidates: Vec<Neighbor> = sims
        .iter()
        .enumerate()
        .filter(|(id, s)| s.is_finite() && !exclude.contains(&(*id as u32)))
        .map(|(id, &similarity)| Neighbor {
            id: id as u32,
            similarity,
        })
        .collect();
    let order = |x: &Neighbor, y: &Neighbor| {
        y.similarity
            .total_cmp(&x.similarity)
            .then_with(|| x.id.cmp(&y.id))
    };
    if k == 0 {
        return Vec::new();
    }
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, order);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(order);
    candidates
}

/// Dot product with sixteen independent sums, so the compiler keeps them in vector registers
/// (one running sum would be a chain of dependent additions).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[f32]]) -> WordVectors {
        let dim = rows[0].len();
        WordVectors::new(WordTable {
            values: rows.iter().flat_map(|r| r.iter().copied()).collect(),
            dim,
        })
    }

    #[test]
    fn a_row_is_its_own_nearest_with_similarity_one_unless_left_out() {
        let v = table(&[
            &[1.0, 0.0, 0.0],
            &[0.9, 0.1, 0.0],
            &[0.0, 1.0, 0.0],
            &[0.0, 0.0, 2.0],
        ]);
        let found = v.nearest(v.unit(1), 2, &[]);
        assert_eq!(found[0].id, 1);
        assert!((found[0].similarity - 1.0).abs() < 1e-6);
        assert_eq!(found[1].id, 0);
        let found = v.neighbors(1, 10, &[]);
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|n| n.id != 1));
        assert_eq!(found[0].id, 0);
        assert!(found.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    }

    /// The bfloat16 first pass never changes the answer: the same ids and similarities as the
    /// top `k` of the exact similarities, on a table whose rows crowd together (many near
    /// ties), with and without exclusions.
    #[test]
    fn nearest_equals_the_exact_top_k() {
        let (rows, dim) = (4000usize, 48usize);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let base: Vec<f32> = (0..dim).map(|_| next()).collect();
        let values: Vec<f32> = (0..rows * dim)
            .map(|i| base[i % dim] + 0.05 * next())
            .collect();
        let v = WordVectors::new(WordTable { values, dim });
        for q in 0..20u32 {
            let exclude = [q * 7 + 1, q * 11 + 3];
            for k in [1, 10, 50] {
                let want = top_k(&v.similarities(v.unit(q)), k, &exclude);
                assert_eq!(v.nearest(v.unit(q), k, &exclude), want, "query {q}, k {k}");
            }
        }
    }

    #[test]
    fn similarities_match_a_plain_cosine() {
        let rows: Vec<Vec<f32>> = (0..1100)
            .map(|i| {
                (0..37)
                    .map(|j| ((i * 31 + j * 7) % 13) as f32 - 6.0)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let v = table(&refs);
        let query: Vec<f32> = (0..37).map(|j| (j as f32 * 0.3).sin()).collect();
        let sims = v.similarities(&query);
        for (row, s) in rows.iter().zip(&sims) {
            let dot: f64 = row.iter().zip(&query).map(|(a, b)| (a * b) as f64).sum();
            let na: f64 = row.iter().map(|a| (a * a) as f64).sum::<f64>().sqrt();
            let nb: f64 = query.iter().map(|a| (a * a) as f64).sum::<f64>().sqrt();
            let expected = if na == 0.0 { 0.0 } else { dot / (na * nb) };
            assert!((*s as f64 - expected).abs() < 1e-5, "{s} vs {expected}");
        }
    }

    #[test]
    fn analogy_leaves_out_its_three_words() {
        // king - man + woman = queen, in a toy space.
        let v = table(&[
            &[1.0, 1.0, 0.0],  // 0 king: royal + male
            &[0.0, 1.0, 0.0],  // 1 man
            &[0.0, 0.0, 1.0],  // 2 woman
            &[1.0, 0.0, 1.0],  // 3 queen
            &[1.0, 0.0, 0.0],  // 4 crown
            &[-1.0, 0.0, 0.0], // 5 anti
        ]);
        let found = v.analogy(1, 0, 2, 3, &[]);
        assert_eq!(found[0].id, 3);
        assert!(found.iter().all(|n| ![0, 1, 2].contains(&n.id)));
    }

    #[test]
    fn zero_and_non_finite_rows_are_never_best() {
        let v = table(&[&[0.0, 0.0], &[f32::NAN, 1.0], &[1.0, 0.0]]);
        let found = v.nearest(&[1.0, 0.0], 3, &[]);
        assert_eq!(found[0].id, 2);
        assert!(found.iter().all(|n| n.id != 1 && n.similarity.is_finite()));
        assert!(
            v.nearest(&[0.0, 0.0], 3, &[])
                .iter()
                .all(|n| n.similarity == 0.0)
        );
        assert!(v.nearest(&[1.0, 0.0], 0, &[]).is_empty());
    }

    #[test]
    fn table_names_parse() {
        assert_eq!("input".parse::<VectorTable>().unwrap(), VectorTable::Input);
        assert_eq!(
            "output".parse::<VectorTable>().unwrap(),
            VectorTable::Output
        );
        assert!("hidden".parse::<VectorTable>().is_err());
    }
}
