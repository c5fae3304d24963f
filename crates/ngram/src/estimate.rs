//! Interpolated modified Kneser-Ney estimation (Chen & Goodman 1998), as KenLM's `lmplz` and
//! SRILM's `-kndiscount -interpolate` build it.
//!
//! - Adjusted counts: the highest order, and every n-gram that starts with `<s>` (it has no
//!   left neighbour), keep their counts; a lower-order n-gram otherwise counts the distinct
//!   symbols seen to its left (its continuation count).
//! - Discounts per order from the counts of adjusted counts `n1..n4`:
//!   `Y = n1 / (n1 + 2 n2)`, `D1 = 1 − 2Y n2/n1`, `D2 = 2 − 3Y n3/n2`, `D3+ = 3 − 4Y n4/n3`.
//!   Where an order lacks the counts (some `n_i` is 0) or a discount falls outside `(0, i]`,
//!   it takes KenLM's `--discount_fallback` values 0.5, 1, 1.5, and the order is recorded.
//! - `p(w | h) = (a(hw) − D(a(hw))) / Σ_x a(hx) + γ(h) p(w | h')` with
//!   `γ(h) = (D1 N1(h·) + D2 N2(h·) + D3+ N3+(h·)) / Σ_x a(hx)` and `h'` the history without
//!   its first symbol; unigrams interpolate with the uniform distribution over the predictable
//!   symbols. What is stored is the interpolated `p` of every seen n-gram and `γ` of every
//!   seen context: the ARPA backoff form of the same model.
use serde::{Deserialize, Serialize};

use crate::count::{CountTable, NgramCounter};
use crate::error::{NgramError, Result};
use crate::model::{KneserNeyModel, LOG10_ZERO, ModelTable};

/// KenLM's `--discount_fallback` discounts, for orders whose counts cannot give their own.
pub const FALLBACK_DISCOUNTS: [f64; 3] = [0.5, 1.0, 1.5];

/// How a model was estimated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimation {
    /// `[D1, D2, D3+]` of each order, unigrams first.
    pub discounts: Vec<[f64; 3]>,
    /// Orders (1-based) that took [`FALLBACK_DISCOUNTS`], with why.
    pub fallbacks: Vec<DiscountFallback>,
    /// Training tokens, `</s>` included.
    pub tokens: u64,
    /// Training sentences (lines).
    pub sentences: u64,
}

/// An order whose counts could not give discounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscountFallback {
    /// The order, from 1.
    pub order: usize,
    /// Counts of adjusted counts 1, 2, 3, 4 at that order.
    pub count_of_counts: [u64; 4],
}

impl DiscountFallback {
    /// One line for the user: which order, its counts, what was used.
    pub fn describe(&self) -> String {
        let [n1, n2, n3, n4] = self.count_of_counts;
        format!(
            "order {} has too few counts for its own discounts (n1={n1} n2={n2} n3={n3} n4={n4}): using KenLM's fallback discounts 0.5 1 1.5",
            self.order
        )
    }
}

/// Estimates the model from complete counts.
///
/// # Errors
/// [`NgramError::EmptyCorpus`] when no sentence held a token.
pub fn estimate(counter: NgramCounter) -> Result<KneserNeyModel> {
    let NgramCounter {
        order,
        symbols,
        tables,
        tokens,
        sentences,
    } = counter;
    if tokens <= sentences {
        return Err(NgramError::EmptyCorpus);
    }
    let width = u64::from(symbols.len());
    let adjusted = adjusted_counts(&tables);
    let mut discounts = Vec::with_capacity(order);
    let mut fallbacks = Vec::new();
    for (k, a) in adjusted.iter().enumerate() {
        let counted = a.iter().enumerate().filter(|&(i, _)| {
            // Unigrams: only what can be predicted (not `<s>`, not padding).
            k > 0 || symbols.is_predictable(i as u32)
        });
        let mut n = [0u64; 4];
        for (_, &c) in counted {
            if (1..=4).contains(&c) {
                n[c as usize - 1] += 1;
            }
        }
        match discounts_from(n) {
            Some(d) => discounts.push(d),
            None => {
                discounts.push(FALLBACK_DISCOUNTS);
                fallbacks.push(DiscountFallback {
                    order: k + 1,
                    count_of_counts: n,
                });
            }
        }
    }
    let discount = |k: usize, a: u32| -> f64 {
        match a {
            0 => 0.0,
            1 => discounts[k][0],
            2 => discounts[k][1],
            _ => discounts[k][2],
        }
    };

    // Unigrams: one context (the empty history), interpolated with the uniform distribution.
    let mut total = 0u64;
    let mut by_count = [0u64; 3];
    for (i, &a) in adjusted[0].iter().enumerate() {
        if symbols.is_predictable(i as u32) && a > 0 {
            total += u64::from(a);
            by_count[(a.min(3) - 1) as usize] += 1;
        }
    }
    let gamma0 = gamma(&discounts[0], by_count, total);
    let uniform = 1.0 / symbols.predictable() as f64;
    let mut lower: Vec<f64> = adjusted[0]
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            if symbols.is_predictable(i as u32) {
                (f64::from(a) - discount(0, a)) / total as f64 + gamma0 * uniform
            } else {
                0.0
            }
        })
        .collect();
    let mut model_tables = Vec::with_capacity(order);
    model_tables.push(ModelTable {
        index: Default::default(),
        keys: Vec::new(),
        log10_prob: lower.iter().map(|&p| log10_f32(p)).collect(),
        log10_backoff: Vec::new(),
    });

    let mut tables = tables.into_iter();
    let unigrams = tables.next().expect("order 1 always exists");
    let mut contexts_len = unigrams.len();
    for (k, table) in tables.enumerate().map(|(k, t)| (k + 1, t)) {
        // Sums and counts of adjusted counts per context (the n-gram's prefix).
        let mut denom = vec![0u64; contexts_len];
        let mut counts = vec![[0u32; 3]; contexts_len];
        for (g, &key) in table.keys.iter().enumerate() {
            let c = (key / width) as usize;
            let a = adjusted[k][g];
            denom[c] += u64::from(a);
            if a > 0 {
                counts[c][(a.min(3) - 1) as usize] += 1;
            }
        }
        let gammas: Vec<f64> = denom
            .iter()
            .zip(&counts)
            .map(|(&d, n)| {
                if d == 0 {
                    1.0
                } else {
                    gamma(&discounts[k], n.map(u64::from), d)
                }
            })
            .collect();
        let probs: Vec<f64> = table
            .keys
            .iter()
            .enumerate()
            .map(|(g, &key)| {
                let c = (key / width) as usize;
                let a = adjusted[k][g];
                let own = (f64::from(a) - discount(k, a)) / denom[c] as f64;
                own + gammas[c] * lower[table.suffix[g] as usize]
            })
            .collect();
        // γ of each context is the backoff weight of the n-gram one order down.
        model_tables[k - 1].log10_backoff = denom
            .iter()
            .zip(&gammas)
            .map(|(&d, &g)| if d == 0 { 0.0 } else { log10_f32(g) })
            .collect();
        model_tables.push(ModelTable {
            log10_prob: probs.iter().map(|&p| log10_f32(p)).collect(),
            log10_backoff: Vec::new(),
            keys: table.keys,
            index: table.index,
        });
        contexts_len = probs.len();
        lower = probs;
    }
    Ok(KneserNeyModel::from_parts(
        order,
        symbols,
        model_tables,
        Estimation {
            discounts,
            fallbacks,
            tokens,
            sentences,
        },
    ))
}

/// Adjusted counts of every order: continuation counts below the highest order, except for
/// n-grams that start with `<s>`.
fn adjusted_counts(tables: &[CountTable]) -> Vec<Vec<u32>> {
    let order = tables.len();
    let mut adjusted: Vec<Vec<u32>> = Vec::with_capacity(order);
    for k in 0..order {
        let table = &tables[k];
        if k + 1 == order {
            adjusted.push(table.count.clone());
            continue;
        }
        let mut a = vec![0u32; table.len()];
        for &s in &tables[k + 1].suffix {
            a[s as usize] += 1;
        }
        for (i, slot) in a.iter_mut().enumerate() {
            if table.starts_with_bos[i] {
                *slot = table.count[i];
            }
        }
        adjusted.push(a);
    }
    adjusted
}

/// Chen & Goodman's discounts from counts of adjusted counts 1 to 4, or `None` where they
/// cannot be estimated (a zero count, or a discount outside `(0, i]`).
fn discounts_from(n: [u64; 4]) -> Option<[f64; 3]> {
    if n.contains(&0) {
        return None;
    }
    let [n1, n2, n3, n4] = n.map(|x| x as f64);
    let y = n1 / (n1 + 2.0 * n2);
    let d = [
        1.0 - 2.0 * y * n2 / n1,
        2.0 - 3.0 * y * n3 / n2,
        3.0 - 4.0 * y * n4 / n3,
    ];
    let in_range = d
        .iter()
        .enumerate()
        .all(|(i, &x)| x > 0.0 && x <= (i + 1) as f64);
    in_range.then_some(d)
}

/// The mass a context leaves to the order below: `(D1 N1 + D2 N2 + D3 N3+) / total`.
fn gamma(d: &[f64; 3], n: [u64; 3], total: u64) -> f64 {
    (d[0] * n[0] as f64 + d[1] * n[1] as f64 + d[2] * n[2] as f64) / total as f64
}

/// `log10(p)` as stored; 0 becomes [`LOG10_ZERO`] as in ARPA files.
fn log10_f32(p: f64) -> f32 {
    if p > 0.0 {
        p.log10() as f32
    } else {
        LOG10_ZERO
    }
}
