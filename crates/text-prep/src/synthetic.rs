//! Synthetic corpora of known entropy.
//!
//! A [`SyntheticCorpus`] is a seeded first-order Markov source over a small
//! vocabulary of invented words plus one *end-of-line* state. Generated text
//! has one line per visit to the end state: the words emitted since the
//! previous visit, joined by single spaces, followed by `\n`.
//!
//! A word-level tokenizer that appends `<eos>` after every line (as the
//! PTB/WikiText recipes do) therefore sees exactly the chain's state sequence,
//! with `<eos>` standing for the end state. Every split starts as if it
//! followed an `<eos>`: the first word of the file is drawn from the end
//! state's row. The end state never transitions to itself, so no line is
//! ever empty and no tokenizer can drop one.
//!
//! Because the chain is known, its entropy rate
//! `H = -Σ_i π_i Σ_j P_ij ln P_ij` (nats per token, `<eos>` included) is known
//! exactly, and a well-trained model's per-token validation perplexity should
//! approach `exp(H)` ([`SyntheticCorpus::perplexity`]).
//!
//! # Shape of the default chain
//!
//! * every word moves to the end state with probability `1 / mean_line_words`,
//!   so line lengths are geometric with exactly that mean;
//! * every word has `successors` other words as possible successors, with
//!   weights drawn from a flat Dirichlet (normalised exponentials) sharing the
//!   remaining probability mass;
//! * the end state can start a line with *any* word, again with Dirichlet
//!   weights.
//!
//! Hence every state reaches the end state and the end state reaches every
//! word (irreducible), and both `end → w → end` (length 2) and
//! `end → w → w' → end` (length 3) are cycles (aperiodic). Both properties
//! are verified again numerically by [`MarkovChain::new`].
//!
//! ```
//! use lstm_lm_text_prep::synthetic::{SyntheticConfig, SyntheticCorpus};
//!
//! let corpus = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
//! let text = corpus.generate_lines(3, &mut SyntheticCorpus::rng(7));
//! assert_eq!(text.lines().count(), 3);
//! assert!(corpus.perplexity() > 1.0);
//! ```

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Tolerance for a transition row to count as summing to one.
const ROW_SUM_TOLERANCE: f64 = 1e-9;
/// Largest allowed `max_j |(πP)_j − π_j|` for a stationary distribution.
const STATIONARY_TOLERANCE: f64 = 1e-12;

/// Errors raised while building, checking or writing a synthetic corpus.
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    /// A configuration value is out of range.
    #[error("invalid synthetic corpus config: {0}")]
    InvalidConfig(String),
    /// A transition matrix is malformed (shape, negative or non-finite
    /// entries, rows not summing to one).
    #[error("invalid transition matrix: {0}")]
    InvalidMatrix(String),
    /// Some state cannot reach some other state.
    #[error("Markov chain is not irreducible: state {from} cannot reach state {to}")]
    NotIrreducible {
        /// A state from which `to` is unreachable.
        from: usize,
        /// The unreachable state.
        to: usize,
    },
    /// The chain is periodic, so it has no limiting distribution.
    #[error("Markov chain is periodic (period {0})")]
    Periodic(usize),
    /// The computed stationary distribution failed its own check.
    #[error("stationary distribution did not converge (residual {0:e})")]
    Stationary(f64),
    /// The word list does not fit the chain, or a word is unusable.
    #[error("invalid vocabulary: {0}")]
    InvalidVocabulary(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the metadata file failed.
    #[error("could not serialise corpus metadata: {0}")]
    Json(#[from] serde_json::Error),
}

/// Settings of the default synthetic chain.
///
/// All fields have defaults (see [`SyntheticConfig::default`]), so a partial
/// JSON/TOML object deserialises into a complete config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of distinct invented words (the end state comes on top).
    /// Default: 24. Allowed: 2..=1000.
    pub vocab_words: usize,
    /// Number of word successors of each word (excluding the end state and
    /// the word itself). Default: 4. Allowed: 1..=`vocab_words - 1`.
    pub successors: usize,
    /// Mean number of words per line; every word moves to the end state with
    /// probability `1 / mean_line_words`. Default: 10.0. Allowed: (1, 1000].
    pub mean_line_words: f64,
    /// Seed of the `ChaCha8Rng` that draws the words and the transition
    /// probabilities. Default: 1.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            vocab_words: 24,
            successors: 4,
            mean_line_words: 10.0,
            seed: 1,
        }
    }
}

impl SyntheticConfig {
    /// Checks that every field is in range.
    pub fn validate(&self) -> Result<(), SyntheticError> {
        let bad = |msg: String| Err(SyntheticError::InvalidConfig(msg));
        if !(2..=1000).contains(&self.vocab_words) {
            return bad(format!(
                "vocab_words must be in 2..=1000, got {}",
                self.vocab_words
            ));
        }
        if self.successors == 0 || self.successors >= self.vocab_words {
            return bad(format!(
                "successors must be in 1..={}, got {}",
                self.vocab_words - 1,
                self.successors
            ));
        }
        if !(self.mean_line_words.is_finite()
            && self.mean_line_words > 1.0
            && self.mean_line_words <= 1000.0)
        {
            return bad(format!(
                "mean_line_words must be in (1, 1000], got {}",
                self.mean_line_words
            ));
        }
        Ok(())
    }
}

/// A finite, irreducible, aperiodic Markov chain with a dense transition
/// matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkovChain {
    n: usize,
    /// Row-major `n × n` transition probabilities.
    probs: Vec<f64>,
    /// Row-major cumulative sums of `probs`, for sampling.
    cumulative: Vec<f64>,
    stationary: Vec<f64>,
}

impl MarkovChain {
    /// Builds a chain from its transition matrix (`rows[i][j]` = P(i → j)).
    ///
    /// Fails unless the matrix is square and non-empty, every entry is finite
    /// and non-negative, every row sums to one within 1e-9, the chain is
    /// irreducible and aperiodic, and its stationary distribution satisfies
    /// `πP = π` to within 1e-12.
    pub fn new(rows: Vec<Vec<f64>>) -> Result<Self, SyntheticError> {
        let n = rows.len();
        if n == 0 {
            return Err(SyntheticError::InvalidMatrix("no states".into()));
        }
        let mut probs = Vec::with_capacity(n * n);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n {
                return Err(SyntheticError::InvalidMatrix(format!(
                    "row {i} has {} entries, expected {n}",
                    row.len()
                )));
            }
            if let Some(j) = row.iter().position(|p| !p.is_finite() || *p < 0.0) {
                return Err(SyntheticError::InvalidMatrix(format!(
                    "entry ({i}, {j}) = {} is not a probability",
                    row[j]
                )));
            }
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
                return Err(SyntheticError::InvalidMatrix(format!(
                    "row {i} sums to {sum}"
                )));
            }
            probs.extend_from_slice(row);
        }
        let mut chain = Self {
            n,
            probs,
            cumulative: Vec::new(),
            stationary: Vec::new(),
        };
        chain.check_irreducible()?;
        let period = chain.period();
        if period != 1 {
            return Err(SyntheticError::Periodic(period));
        }
        chain.cumulative = chain
            .probs
            .chunks(n)
            .flat_map(|row| {
                row.iter().scan(0.0, |acc, p| {
                    *acc += p;
                    Some(*acc)
                })
            })
            .collect();
        chain.stationary = chain.solve_stationary()?;
        Ok(chain)
    }

    /// Number of states.
    pub fn num_states(&self) -> usize {
        self.n
    }

    /// The transition probability P(`from` → `to`).
    ///
    /// # Panics
    /// If either index is out of range.
    pub fn prob(&self, from: usize, to: usize) -> f64 {
        assert!(from < self.n && to < self.n, "state index out of range");
        self.probs[from * self.n + to]
    }

    /// The outgoing distribution of state `from`.
    ///
    /// # Panics
    /// If `from` is out of range.
    pub fn row(&self, from: usize) -> &[f64] {
        &self.probs[from * self.n..(from + 1) * self.n]
    }

    /// The stationary distribution π (`πP = π`, `Σ π = 1`).
    pub fn stationary(&self) -> &[f64] {
        &self.stationary
    }

    /// The entropy (nats) of the outgoing distribution of state `from`.
    pub fn row_entropy_nats(&self, from: usize) -> f64 {
        self.row(from)
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| -p * p.ln())
            .sum()
    }

    /// The entropy rate `H = -Σ_i π_i Σ_j P_ij ln P_ij`, in nats per step.
    pub fn entropy_rate_nats(&self) -> f64 {
        (0..self.n)
            .map(|i| self.stationary[i] * self.row_entropy_nats(i))
            .sum()
    }

    /// `exp(entropy_rate_nats())`: the per-step perplexity of an ideal model.
    pub fn perplexity(&self) -> f64 {
        self.entropy_rate_nats().exp()
    }

    /// Draws the successor of state `from`.
    ///
    /// # Panics
    /// If `from` is out of range.
    pub fn sample_next<R: Rng + ?Sized>(&self, from: usize, rng: &mut R) -> usize {
        let cum = &self.cumulative[from * self.n..(from + 1) * self.n];
        let u: f64 = rng.random::<f64>() * cum[self.n - 1];
        match cum.iter().position(|&c| u < c) {
            Some(j) => j,
            // Only reachable through rounding: fall back to the last state
            // that has positive probability.
            None => self
                .row(from)
                .iter()
                .rposition(|&p| p > 0.0)
                .expect("rows sum to one"),
        }
    }

    fn successors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.row(i)
            .iter()
            .enumerate()
            .filter(|(_, p)| **p > 0.0)
            .map(|(j, _)| j)
    }

    /// Breadth-first distances from state 0 along positive transitions
    /// (`None` for unreachable states).
    fn bfs_levels(&self) -> Vec<Option<usize>> {
        let mut level = vec![None; self.n];
        level[0] = Some(0);
        let mut queue = VecDeque::from([0usize]);
        while let Some(i) = queue.pop_front() {
            let next = level[i].expect("queued states have a level") + 1;
            for j in self.successors(i) {
                if level[j].is_none() {
                    level[j] = Some(next);
                    queue.push_back(j);
                }
            }
        }
        level
    }

    fn check_irreducible(&self) -> Result<(), SyntheticError> {
        // Strongly connected iff state 0 reaches everything and everything
        // reaches state 0 (search on the reversed graph).
        if let Some(to) = self.bfs_levels().iter().position(Option::is_none) {
            return Err(SyntheticError::NotIrreducible { from: 0, to });
        }
        let seen = reachable(self.n, 0, |i, j| self.probs[j * self.n + i] > 0.0);
        match seen.iter().position(|s| !s) {
            Some(from) => Err(SyntheticError::NotIrreducible { from, to: 0 }),
            None => Ok(()),
        }
    }

    /// The period of an irreducible chain: the gcd, over all positive
    /// transitions `i → j`, of `level(i) + 1 − level(j)` where `level` is the
    /// BFS distance from state 0.
    fn period(&self) -> usize {
        let level = self.bfs_levels();
        let mut g = 0usize;
        for i in 0..self.n {
            let li = level[i].expect("irreducible") as i64;
            for j in self.successors(i) {
                let lj = level[j].expect("irreducible") as i64;
                g = gcd(g, (li + 1 - lj).unsigned_abs() as usize);
            }
        }
        g
    }

    /// Solves `π (P − I) = 0`, `Σ π = 1` by Gaussian elimination with partial
    /// pivoting, then polishes with power-iteration steps until
    /// `max |πP − π| ≤ 1e-12`.
    fn solve_stationary(&self) -> Result<Vec<f64>, SyntheticError> {
        let n = self.n;
        // Unknowns π_0..π_{n-1}; equations: columns of (P − I)ᵀ, with the
        // last equation replaced by the normalisation. Augmented n × (n+1).
        let mut a = vec![0.0f64; n * (n + 1)];
        for eq in 0..n {
            for k in 0..n {
                a[eq * (n + 1) + k] = if eq + 1 == n {
                    1.0
                } else {
                    self.probs[k * n + eq] - if k == eq { 1.0 } else { 0.0 }
                };
            }
            a[eq * (n + 1) + n] = if eq + 1 == n { 1.0 } else { 0.0 };
        }
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&r, &s| {
                    a[r * (n + 1) + col]
                        .abs()
                        .total_cmp(&a[s * (n + 1) + col].abs())
                })
                .expect("non-empty range");
            if a[pivot * (n + 1) + col].abs() < 1e-300 {
                return Err(SyntheticError::Stationary(f64::NAN));
            }
            if pivot != col {
                for k in 0..=n {
                    a.swap(pivot * (n + 1) + k, col * (n + 1) + k);
                }
            }
            let d = a[col * (n + 1) + col];
            for r in 0..n {
                if r != col {
                    let f = a[r * (n + 1) + col] / d;
                    if f != 0.0 {
                        for k in col..=n {
                            a[r * (n + 1) + k] -= f * a[col * (n + 1) + k];
                        }
                    }
                }
            }
        }
        let mut pi: Vec<f64> = (0..n)
            .map(|i| (a[i * (n + 1) + n] / a[i * (n + 1) + i]).max(0.0))
            .collect();
        normalise(&mut pi);
        let mut residual = f64::INFINITY;
        for _ in 0..10_000 {
            let next = self.step(&pi);
            residual = largest_change(&next, &pi);
            pi = next;
            normalise(&mut pi);
            if residual <= STATIONARY_TOLERANCE {
                return Ok(pi);
            }
        }
        Err(SyntheticError::Stationary(residual))
    }

    /// One step of the distribution: `π ↦ πP`.
    fn step(&self, pi: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.n];
        for (i, &w) in pi.iter().enumerate() {
            for (o, p) in out.iter_mut().zip(self.row(i)) {
                *o += w * p;
            }
        }
        out
    }
}

/// The largest `|a[i] − b[i]|`; NaN when any difference is NaN (`f64::max` would drop it, and
/// a distribution gone NaN would then look converged).
fn largest_change(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |worst, d| {
            if d.is_nan() || worst.is_nan() {
                f64::NAN
            } else {
                worst.max(d)
            }
        })
}

fn normalise(v: &mut [f64]) {
    let s: f64 = v.iter().sum();
    v.iter_mut().for_each(|x| *x /= s);
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Sizes of the three splits written by [`SyntheticCorpus::write_splits`],
/// in tokens (words plus one `<eos>` per line). Each split stops at the end
/// of the line that reaches its size, so it may exceed it by one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSizes {
    /// Minimum tokens in `train.txt`.
    pub train_tokens: usize,
    /// Minimum tokens in `valid.txt`.
    pub valid_tokens: usize,
    /// Minimum tokens in `test.txt`.
    pub test_tokens: usize,
}

impl Default for SplitSizes {
    /// 200 000 / 20 000 / 20 000 tokens.
    fn default() -> Self {
        Self {
            train_tokens: 200_000,
            valid_tokens: 20_000,
            test_tokens: 20_000,
        }
    }
}

/// The generated text of the three splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitTexts {
    /// Training text.
    pub train: String,
    /// Validation text.
    pub valid: String,
    /// Test text.
    pub test: String,
}

/// What [`SyntheticCorpus::write_splits`] wrote; also saved as
/// `synthetic.json` next to the text files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticMetadata {
    /// The chain's config, when it was built from one.
    pub config: Option<SyntheticConfig>,
    /// The seed the splits were generated with.
    pub split_seed: u64,
    /// The words, in state order (the end state is not listed).
    pub words: Vec<String>,
    /// Exact entropy rate in nats per token (`<eos>` counts as a token).
    pub entropy_rate_nats: f64,
    /// `exp(entropy_rate_nats)`.
    pub perplexity: f64,
    /// Expected number of words per line.
    pub mean_line_words: f64,
    /// Tokens (words plus `<eos>`) in train, valid and test.
    pub tokens: [usize; 3],
    /// Lines in train, valid and test.
    pub lines: [usize; 3],
}

/// A Markov source of lines of invented words with a known entropy rate.
///
/// States `0..words().len()` are the words; state [`end_state`](Self::end_state)
/// (the last one) ends a line.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticCorpus {
    config: Option<SyntheticConfig>,
    words: Vec<String>,
    chain: MarkovChain,
}

impl SyntheticCorpus {
    /// Builds the chain described by `config` (see the module docs), then
    /// runs [`check`](Self::check) on it.
    pub fn new(config: SyntheticConfig) -> Result<Self, SyntheticError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let v = config.vocab_words;
        let words = invent_words(v, &mut rng);
        let p_end = 1.0 / config.mean_line_words;

        let mut rows = vec![vec![0.0f64; v + 1]; v + 1];
        for (i, row) in rows.iter_mut().enumerate().take(v) {
            // Choose `successors` distinct words other than `i`
            // (partial Fisher–Yates over the other words).
            let mut others: Vec<usize> = (0..v).filter(|&j| j != i).collect();
            for k in 0..config.successors {
                let pick = rng.random_range(k..others.len());
                others.swap(k, pick);
            }
            let weights = dirichlet_weights(config.successors, &mut rng);
            for (&j, w) in others[..config.successors].iter().zip(weights) {
                row[j] = (1.0 - p_end) * w;
            }
            row[v] = p_end;
        }
        for (j, w) in dirichlet_weights(v, &mut rng).into_iter().enumerate() {
            rows[v][j] = w;
        }
        let chain = MarkovChain::new(rows)?;
        let corpus = Self {
            config: Some(config),
            words,
            chain,
        };
        corpus.check()?;
        Ok(corpus)
    }

    /// Wraps a hand-built chain: `words[i]` names state `i`, and the chain's
    /// last state (index `words.len()`) is the end-of-line state.
    ///
    /// Words must be distinct, non-empty lowercase ASCII letters. The end
    /// state must not transition to itself (that would be an empty line).
    pub fn from_parts(words: Vec<String>, chain: MarkovChain) -> Result<Self, SyntheticError> {
        let corpus = Self {
            config: None,
            words,
            chain,
        };
        corpus.check()?;
        Ok(corpus)
    }

    /// Self-consistency check: vocabulary size matches the chain, words are
    /// distinct lowercase ASCII, rows sum to one, the end state cannot follow
    /// itself, every word can reach the end state and the end state can reach
    /// every word, and π is stationary to 1e-12.
    pub fn check(&self) -> Result<(), SyntheticError> {
        let n = self.chain.num_states();
        if self.words.len() + 1 != n {
            return Err(SyntheticError::InvalidVocabulary(format!(
                "{} words for a chain of {n} states (expected states = words + 1)",
                self.words.len()
            )));
        }
        let mut seen = HashSet::new();
        for w in &self.words {
            if w.is_empty() || !w.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(SyntheticError::InvalidVocabulary(format!(
                    "word {w:?} is not a non-empty run of lowercase ASCII letters"
                )));
            }
            if !seen.insert(w.as_str()) {
                return Err(SyntheticError::InvalidVocabulary(format!(
                    "duplicate word {w:?}"
                )));
            }
        }
        for i in 0..n {
            let sum: f64 = self.chain.row(i).iter().sum();
            if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
                return Err(SyntheticError::InvalidMatrix(format!(
                    "row {i} sums to {sum}"
                )));
            }
        }
        let end = self.end_state();
        if self.chain.prob(end, end) > 0.0 {
            return Err(SyntheticError::InvalidMatrix(
                "the end state may not follow itself (empty lines)".into(),
            ));
        }
        // Irreducibility and aperiodicity were established by
        // `MarkovChain::new`; re-check the two reachability facts this type
        // relies on, directly.
        let forward = reachable(n, end, |i, j| self.chain.prob(i, j) > 0.0);
        if let Some(to) = forward.iter().position(|r| !r) {
            return Err(SyntheticError::NotIrreducible { from: end, to });
        }
        let backward = reachable(n, end, |i, j| self.chain.prob(j, i) > 0.0);
        if let Some(from) = backward.iter().position(|r| !r) {
            return Err(SyntheticError::NotIrreducible { from, to: end });
        }
        let pi = self.chain.stationary();
        let residual = largest_change(&self.chain.step(pi), pi);
        // Written so that a NaN residual or sum fails the check.
        let stationary =
            residual <= STATIONARY_TOLERANCE && (pi.iter().sum::<f64>() - 1.0).abs() <= 1e-12;
        if !stationary {
            return Err(SyntheticError::Stationary(residual));
        }
        Ok(())
    }

    /// A `ChaCha8Rng` seeded from `seed`, the generator this module uses.
    pub fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// The config the chain was built from (`None` for
    /// [`from_parts`](Self::from_parts)).
    pub fn config(&self) -> Option<&SyntheticConfig> {
        self.config.as_ref()
    }

    /// The words, in state order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Index of the end-of-line state (`words().len()`).
    pub fn end_state(&self) -> usize {
        self.words.len()
    }

    /// The underlying chain.
    pub fn chain(&self) -> &MarkovChain {
        &self.chain
    }

    /// Exact entropy rate in nats per token, `<eos>` included.
    pub fn entropy_rate_nats(&self) -> f64 {
        self.chain.entropy_rate_nats()
    }

    /// `exp(entropy_rate_nats())`.
    pub fn perplexity(&self) -> f64 {
        self.chain.perplexity()
    }

    /// Expected words per line, `(1 − π_end) / π_end`.
    pub fn mean_line_words(&self) -> f64 {
        let p = self.chain.stationary()[self.end_state()];
        (1.0 - p) / p
    }

    /// Generates whole lines, starting from the end state, until at least
    /// `n_tokens` tokens (words plus one `<eos>` per line) have been emitted.
    /// Returns an empty string for `n_tokens == 0`.
    pub fn generate_tokens<R: Rng + ?Sized>(&self, n_tokens: usize, rng: &mut R) -> String {
        self.generate_until(rng, |tokens, _| tokens >= n_tokens)
    }

    /// Generates exactly `n_lines` lines, starting from the end state.
    pub fn generate_lines<R: Rng + ?Sized>(&self, n_lines: usize, rng: &mut R) -> String {
        self.generate_until(rng, |_, lines| lines >= n_lines)
    }

    fn generate_until<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        mut done: impl FnMut(usize, usize) -> bool,
    ) -> String {
        let end = self.end_state();
        let mut out = String::new();
        let (mut tokens, mut lines) = (0usize, 0usize);
        let mut state = end;
        let mut line_start = true;
        while !done(tokens, lines) {
            state = self.chain.sample_next(state, rng);
            tokens += 1;
            if state == end {
                out.push('\n');
                lines += 1;
                line_start = true;
            } else {
                if !line_start {
                    out.push(' ');
                }
                out.push_str(&self.words[state]);
                line_start = false;
            }
        }
        // Only reachable when `done` fired in mid-line; finish that line so
        // the text stays a sequence of complete lines.
        while !line_start {
            state = self.chain.sample_next(state, rng);
            if state == end {
                out.push('\n');
                line_start = true;
            } else {
                let _ = write!(out, " {}", self.words[state]);
            }
        }
        out
    }

    /// Generates train, valid and test text. Each split uses its own ChaCha8
    /// stream (1, 2, 3) of `seed`, so a split's text does not depend on the
    /// sizes of the others, and each starts from the end state.
    pub fn generate_splits(&self, sizes: &SplitSizes, seed: u64) -> SplitTexts {
        let gen_split = |stream: u64, n: usize| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            self.generate_tokens(n, &mut rng)
        };
        SplitTexts {
            train: gen_split(1, sizes.train_tokens),
            valid: gen_split(2, sizes.valid_tokens),
            test: gen_split(3, sizes.test_tokens),
        }
    }

    /// Writes `train.txt`, `valid.txt`, `test.txt` (see
    /// [`generate_splits`](Self::generate_splits)) and `synthetic.json`
    /// (a [`SyntheticMetadata`]) into `dir`, creating it if needed.
    pub fn write_splits(
        &self,
        dir: &Path,
        sizes: &SplitSizes,
        seed: u64,
    ) -> Result<SyntheticMetadata, SyntheticError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SyntheticError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let texts = self.generate_splits(sizes, seed);
        let parts = [
            ("train.txt", &texts.train),
            ("valid.txt", &texts.valid),
            ("test.txt", &texts.test),
        ];
        let mut tokens = [0usize; 3];
        let mut lines = [0usize; 3];
        for (k, (name, text)) in parts.iter().enumerate() {
            let path = dir.join(name);
            std::fs::write(&path, text.as_bytes()).map_err(io_err(&path))?;
            lines[k] = text.lines().count();
            tokens[k] = text.split_ascii_whitespace().count() + lines[k];
        }
        let meta = SyntheticMetadata {
            config: self.config.clone(),
            split_seed: seed,
            words: self.words.clone(),
            entropy_rate_nats: self.entropy_rate_nats(),
            perplexity: self.perplexity(),
            mean_line_words: self.mean_line_words(),
            tokens,
            lines,
        };
        let path = dir.join("synthetic.json");
        let json = serde_json::to_string_pretty(&meta)?;
        std::fs::write(&path, json + "\n").map_err(io_err(&path))?;
        Ok(meta)
    }
}

/// States reachable from `start` along edges for which `edge(i, j)` holds.
fn reachable(n: usize, start: usize, edge: impl Fn(usize, usize) -> bool) -> Vec<bool> {
    let mut seen = vec![false; n];
    seen[start] = true;
    let mut stack = vec![start];
    while let Some(i) = stack.pop() {
        for (j, s) in seen.iter_mut().enumerate() {
            if !*s && edge(i, j) {
                *s = true;
                stack.push(j);
            }
        }
    }
    seen
}

/// `k` weights from a flat Dirichlet distribution (normalised Exp(1) draws).
fn dirichlet_weights<R: Rng + ?Sized>(k: usize, rng: &mut R) -> Vec<f64> {
    // 1 − u lies in (0, 1], so the logarithm is finite; the floor keeps every
    // chosen transition strictly positive.
    let mut w: Vec<f64> = (0..k)
        .map(|_| (-(1.0 - rng.random::<f64>()).ln()).max(1e-6))
        .collect();
    normalise(&mut w);
    w
}

/// `n` distinct pronounceable words of two or three consonant–vowel
/// syllables, lowercase ASCII only.
fn invent_words<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<String> {
    const ONSETS: &[u8] = b"bdfgklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let mut seen = HashSet::new();
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let syllables = rng.random_range(2..=3);
        let mut w = String::with_capacity(2 * syllables);
        for _ in 0..syllables {
            w.push(ONSETS[rng.random_range(0..ONSETS.len())] as char);
            w.push(VOWELS[rng.random_range(0..VOWELS.len())] as char);
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_change_is_never_small() {
        assert_eq!(largest_change(&[1.0, 0.5], &[1.0, 0.25]), 0.25);
        assert!(largest_change(&[f64::NAN, 0.5], &[1.0, 0.25]).is_nan());
        assert!(largest_change(&[0.5, f64::NAN], &[0.5, 0.5]).is_nan());
        assert!(largest_change(&[f64::INFINITY], &[f64::INFINITY]).is_nan());
    }

    fn binary_entropy(p: f64) -> f64 {
        -(p * p.ln() + (1.0 - p) * (1.0 - p).ln())
    }

    /// Word-level tokenisation with `<eos>` per line, mapped back to state
    /// indices; the stream is preceded by an implicit end state.
    fn tokenize(corpus: &SyntheticCorpus, text: &str) -> Vec<usize> {
        let index: std::collections::HashMap<&str, usize> = corpus
            .words()
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_str(), i))
            .collect();
        let mut states = Vec::new();
        for line in text.lines() {
            for tok in line.split_whitespace() {
                states.push(*index.get(tok).expect("unknown word in generated text"));
            }
            states.push(corpus.end_state());
        }
        states
    }

    #[test]
    fn two_state_chain_matches_closed_form() {
        let (a, b) = (0.3, 0.8);
        let chain = MarkovChain::new(vec![vec![1.0 - a, a], vec![b, 1.0 - b]]).unwrap();
        let pi = chain.stationary();
        assert!((pi[0] - b / (a + b)).abs() < 1e-14);
        assert!((pi[1] - a / (a + b)).abs() < 1e-14);
        let expected = (b * binary_entropy(a) + a * binary_entropy(b)) / (a + b);
        assert!((chain.entropy_rate_nats() - expected).abs() < 1e-14);
        assert!((chain.perplexity() - expected.exp()).abs() < 1e-12);
    }

    #[test]
    fn hand_built_corpus_from_parts() {
        // Two words and the end state. Word 0 -> word 1 or end, word 1 ->
        // word 0 or end, end -> either word.
        let rows = vec![
            vec![0.0, 0.75, 0.25],
            vec![0.5, 0.0, 0.5],
            vec![0.5, 0.5, 0.0],
        ];
        let chain = MarkovChain::new(rows).unwrap();
        let corpus =
            SyntheticCorpus::from_parts(vec!["ab".into(), "cd".into()], chain.clone()).unwrap();
        // Balance equations give π = (1/3, 7/18, 5/18).
        let pi = corpus.chain().stationary();
        for (got, want) in pi.iter().zip([1.0 / 3.0, 7.0 / 18.0, 5.0 / 18.0]) {
            assert!((got - want).abs() < 1e-14, "{got} vs {want}");
        }
        let h = binary_entropy(0.25) / 3.0 + (7.0 / 18.0 + 5.0 / 18.0) * 2f64.ln();
        assert!((corpus.entropy_rate_nats() - h).abs() < 1e-14);
        // Each line holds 1/π_end − 1 words on average.
        assert!((corpus.mean_line_words() - 13.0 / 5.0).abs() < 1e-12);

        // Mismatched vocabulary, duplicates, bad characters, end -> end.
        assert!(SyntheticCorpus::from_parts(vec!["ab".into()], chain.clone()).is_err());
        assert!(
            SyntheticCorpus::from_parts(vec!["ab".into(), "ab".into()], chain.clone()).is_err()
        );
        assert!(SyntheticCorpus::from_parts(vec!["ab".into(), "c-d".into()], chain).is_err());
        let lazy_end = MarkovChain::new(vec![
            vec![0.0, 0.75, 0.25],
            vec![0.5, 0.0, 0.5],
            vec![0.25, 0.25, 0.5],
        ])
        .unwrap();
        assert!(SyntheticCorpus::from_parts(vec!["ab".into(), "cd".into()], lazy_end).is_err());
    }

    #[test]
    fn malformed_chains_are_rejected() {
        assert!(matches!(
            MarkovChain::new(vec![vec![0.5, 0.4], vec![0.5, 0.5]]),
            Err(SyntheticError::InvalidMatrix(_))
        ));
        assert!(matches!(
            MarkovChain::new(vec![vec![1.0, 0.0], vec![0.5, 0.5]]),
            Err(SyntheticError::NotIrreducible { .. })
        ));
        assert!(matches!(
            MarkovChain::new(vec![vec![0.0, 1.0], vec![1.0, 0.0]]),
            Err(SyntheticError::Periodic(2))
        ));
        // A 3-cycle with a 2-cycle attached is aperiodic.
        assert!(
            MarkovChain::new(vec![
                vec![0.0, 1.0, 0.0],
                vec![0.5, 0.0, 0.5],
                vec![1.0, 0.0, 0.0],
            ])
            .is_ok()
        );
        // Bipartite 4-cycle with a chord across is still period 2.
        assert!(matches!(
            MarkovChain::new(vec![
                vec![0.0, 0.5, 0.0, 0.5],
                vec![0.5, 0.0, 0.5, 0.0],
                vec![0.0, 0.5, 0.0, 0.5],
                vec![0.5, 0.0, 0.5, 0.0],
            ]),
            Err(SyntheticError::Periodic(2))
        ));
    }

    #[test]
    fn default_chain_is_well_formed() {
        let corpus = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
        let cfg = SyntheticConfig::default();
        let chain = corpus.chain();
        assert_eq!(chain.num_states(), cfg.vocab_words + 1);
        for i in 0..chain.num_states() {
            let sum: f64 = chain.row(i).iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "row {i} sums to {sum}");
        }
        let end = corpus.end_state();
        for i in 0..cfg.vocab_words {
            let nonzero = chain.row(i).iter().filter(|&&p| p > 0.0).count();
            assert_eq!(nonzero, cfg.successors + 1, "word {i}");
            assert_eq!(chain.prob(i, i), 0.0);
            assert!((chain.prob(i, end) - 0.1).abs() < 1e-15);
            assert!(chain.prob(end, i) > 0.0);
        }
        assert_eq!(chain.prob(end, end), 0.0);
        let h = corpus.entropy_rate_nats();
        assert!((1.0..=1.5).contains(&h), "entropy rate {h}");
        let ppl = corpus.perplexity();
        assert!((3.0..=4.5).contains(&ppl), "perplexity {ppl}");
        let mean = corpus.mean_line_words();
        assert!((mean - 10.0).abs() < 1e-9, "mean line length {mean}");
    }

    #[test]
    fn nearby_seeds_keep_moderate_entropy() {
        for seed in 0..50 {
            let cfg = SyntheticConfig {
                seed,
                ..SyntheticConfig::default()
            };
            let h = SyntheticCorpus::new(cfg).unwrap().entropy_rate_nats();
            assert!((0.9..=1.7).contains(&h), "seed {seed}: entropy rate {h}");
        }
    }

    #[test]
    fn words_are_distinct_lowercase_ascii() {
        for seed in [0, 1, 2, 99] {
            let cfg = SyntheticConfig {
                vocab_words: 200,
                successors: 6,
                seed,
                ..SyntheticConfig::default()
            };
            let corpus = SyntheticCorpus::new(cfg).unwrap();
            let words = corpus.words();
            assert_eq!(words.len(), 200);
            let set: HashSet<&String> = words.iter().collect();
            assert_eq!(set.len(), words.len());
            for w in words {
                assert!(
                    w.len() >= 4 && w.bytes().all(|b| b.is_ascii_lowercase()),
                    "{w:?}"
                );
            }
        }
    }

    #[test]
    fn empirical_conditional_entropy_matches() {
        let corpus = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
        let text = corpus.generate_tokens(200_000, &mut SyntheticCorpus::rng(12345));
        assert!(text.ends_with('\n'));
        assert!(!text.lines().any(str::is_empty));
        let states = tokenize(&corpus, &text);
        assert!(states.len() >= 200_000 && states.len() < 200_000 + 200);
        assert_eq!(*states.last().unwrap(), corpus.end_state());

        let n = corpus.chain().num_states();
        let mut counts = vec![0u64; n * n];
        let mut prev = corpus.end_state();
        for &s in &states {
            counts[prev * n + s] += 1;
            prev = s;
        }
        // Only transitions of positive probability ever occur.
        for i in 0..n {
            for j in 0..n {
                if counts[i * n + j] > 0 {
                    assert!(corpus.chain().prob(i, j) > 0.0, "impossible {i} -> {j}");
                }
            }
        }
        let total = states.len() as f64;
        let mut plug_in = 0.0;
        let mut cross = 0.0;
        for i in 0..n {
            let row = &counts[i * n..(i + 1) * n];
            let ri: u64 = row.iter().sum();
            for (j, &c) in row.iter().enumerate() {
                if c > 0 {
                    let c = c as f64;
                    plug_in -= c / total * (c / ri as f64).ln();
                    cross -= c / total * corpus.chain().prob(i, j).ln();
                }
            }
        }
        let h = corpus.entropy_rate_nats();
        assert!((plug_in - h).abs() / h < 0.02, "plug-in {plug_in} vs H {h}");
        assert!(
            (cross - h).abs() / h < 0.02,
            "cross-entropy {cross} vs H {h}"
        );

        let lines = text.lines().count() as f64;
        let mean_words = (states.len() as f64 - lines) / lines;
        let expected = corpus.mean_line_words();
        assert!(
            (mean_words - expected).abs() / expected < 0.05,
            "mean line length {mean_words} vs {expected}"
        );
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let corpus = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
        let a = corpus.generate_tokens(5_000, &mut SyntheticCorpus::rng(7));
        let b = corpus.generate_tokens(5_000, &mut SyntheticCorpus::rng(7));
        let c = corpus.generate_tokens(5_000, &mut SyntheticCorpus::rng(8));
        assert_eq!(a, b);
        assert_ne!(a, c);

        // The chain itself is a function of the config seed.
        let same = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
        assert_eq!(corpus, same);
        let other = SyntheticCorpus::new(SyntheticConfig {
            seed: 2,
            ..SyntheticConfig::default()
        })
        .unwrap();
        assert_ne!(corpus.words(), other.words());
        let text_other = other.generate_tokens(5_000, &mut SyntheticCorpus::rng(7));
        assert_ne!(a, text_other);
    }

    #[test]
    fn line_and_token_counts() {
        let corpus = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
        let mut rng = SyntheticCorpus::rng(3);
        assert_eq!(corpus.generate_lines(0, &mut rng), "");
        assert_eq!(corpus.generate_tokens(0, &mut rng), "");
        let text = corpus.generate_lines(17, &mut rng);
        assert_eq!(text.lines().count(), 17);
        assert!(!text.contains("  ") && !text.contains(" \n") && !text.starts_with(' '));
        let text = corpus.generate_tokens(1, &mut rng);
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn splits_are_independent_and_written() {
        let corpus = SyntheticCorpus::new(SyntheticConfig::default()).unwrap();
        let sizes = SplitSizes {
            train_tokens: 3_000,
            valid_tokens: 500,
            test_tokens: 400,
        };
        let texts = corpus.generate_splits(&sizes, 11);
        assert_ne!(texts.train, texts.valid);
        assert_ne!(texts.valid, texts.test);
        // Changing the train size leaves the other splits alone.
        let bigger = corpus.generate_splits(
            &SplitSizes {
                train_tokens: 6_000,
                ..sizes
            },
            11,
        );
        assert_eq!(texts.valid, bigger.valid);
        assert_eq!(texts.test, bigger.test);
        assert!(bigger.train.starts_with(&texts.train));

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("synthetic");
        let meta = corpus.write_splits(&out, &sizes, 11).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("train.txt")).unwrap(),
            texts.train
        );
        assert_eq!(
            std::fs::read_to_string(out.join("valid.txt")).unwrap(),
            texts.valid
        );
        assert_eq!(
            std::fs::read_to_string(out.join("test.txt")).unwrap(),
            texts.test
        );
        assert!(meta.tokens[0] >= 3_000 && meta.tokens[1] >= 500 && meta.tokens[2] >= 400);
        assert_eq!(meta.tokens[1], tokenize(&corpus, &texts.valid).len());
        let json = std::fs::read_to_string(out.join("synthetic.json")).unwrap();
        let back: SyntheticMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.config, Some(SyntheticConfig::default()));
    }

    #[test]
    fn config_validation_and_serde_defaults() {
        let ok = SyntheticConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            SyntheticConfig {
                vocab_words: 1,
                ..ok.clone()
            },
            SyntheticConfig {
                successors: 0,
                ..ok.clone()
            },
            SyntheticConfig {
                successors: 24,
                ..ok.clone()
            },
            SyntheticConfig {
                mean_line_words: 1.0,
                ..ok.clone()
            },
            SyntheticConfig {
                mean_line_words: f64::NAN,
                ..ok.clone()
            },
        ] {
            assert!(matches!(
                SyntheticCorpus::new(bad),
                Err(SyntheticError::InvalidConfig(_))
            ));
        }
        let partial: SyntheticConfig = serde_json::from_str(r#"{"seed": 5}"#).unwrap();
        assert_eq!(partial, SyntheticConfig { seed: 5, ..ok });
    }
}
