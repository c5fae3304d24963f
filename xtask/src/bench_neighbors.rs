//! `cargo xtask bench --config neighbors`: one `lstm-lm neighbors` query (cosine similarity
//! with every row, then the top 10) on a random 33,278 × 650 table, the shape of a WikiText-2
//! model with 650-wide embeddings. The table is normalised once, outside the timing, as
//! `WordSearch::new` does once per command.
use lstm_lm_model::{WordTable, WordVectors};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// WikiText-2's vocabulary size.
pub const ROWS: usize = 33_278;
/// The embedding width of the `wt2-medium` preset.
pub const DIM: usize = 650;

/// Wall and CPU milliseconds of each timed query (as `bench::time_iters` measures them).
pub fn bench_neighbors(warmup: usize, iters: usize, rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<f64>) {
    let values: Vec<f32> = (0..ROWS * DIM)
        .map(|_| rng.random_range(-0.1f32..0.1))
        .collect();
    let vectors = WordVectors::new(WordTable { values, dim: DIM });
    let queries: Vec<u32> = (0..warmup + iters)
        .map(|_| rng.random_range(0..ROWS as u32))
        .collect();
    let mut next = queries.into_iter();
    crate::bench::time_iters(warmup, iters, || {
        let id = next.next().unwrap_or(0);
        let found = vectors.neighbors(id, 10, &[]);
        assert_eq!(found.len(), 10);
    })
}
