//! An estimated Kneser-Ney model in backoff form: for every seen n-gram its interpolated
//! log10 probability, for every seen context its log10 backoff weight.
use rustc_hash::FxHashMap;

use crate::estimate::Estimation;
use crate::symbols::Symbols;

/// The log10 probability that stands for zero (`<s>`, padding), as ARPA files write it.
pub const LOG10_ZERO: f32 = -99.0;

/// The n-grams of one order (see [`crate::count`] for how they are keyed).
#[derive(Debug, Default, Clone)]
pub(crate) struct ModelTable {
    /// Key → index; empty for unigrams, whose index is the symbol.
    pub(crate) index: FxHashMap<u64, u32>,
    /// `prefix * symbols + last` by index; empty for unigrams.
    pub(crate) keys: Vec<u64>,
    /// log10 p(last | prefix), interpolated with the lower orders.
    pub(crate) log10_prob: Vec<f32>,
    /// log10 γ of the n-gram as a context (0 where it is never one); empty at the highest
    /// order.
    pub(crate) log10_backoff: Vec<f32>,
}

impl ModelTable {
    pub(crate) fn len(&self) -> usize {
        self.log10_prob.len()
    }
}

/// An interpolated modified Kneser-Ney n-gram model over a tokenizer's [`Symbols`].
#[derive(Debug, Clone)]
pub struct KneserNeyModel {
    order: usize,
    symbols: Symbols,
    width: u64,
    pub(crate) tables: Vec<ModelTable>,
    estimation: Estimation,
}

impl KneserNeyModel {
    pub(crate) fn from_parts(
        order: usize,
        symbols: Symbols,
        tables: Vec<ModelTable>,
        estimation: Estimation,
    ) -> Self {
        let width = u64::from(symbols.len());
        KneserNeyModel {
            order,
            symbols,
            width,
            tables,
            estimation,
        }
    }

    /// The order N: predictions condition on up to N − 1 symbols.
    pub fn order(&self) -> usize {
        self.order
    }

    /// The symbols (tokenizer ids, `<s>`, `</s>`).
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// Discounts, fallbacks and training size.
    pub fn estimation(&self) -> &Estimation {
        &self.estimation
    }

    /// Distinct n-grams of each order, unigrams first.
    pub fn ngram_counts(&self) -> Vec<usize> {
        self.tables.iter().map(ModelTable::len).collect()
    }

    /// The symbols of the n-gram with index `index` at `order` (1-based), first first.
    pub fn ngram(&self, order: usize, index: u32) -> Vec<u32> {
        let mut out = vec![0u32; order];
        let mut idx = index;
        for k in (1..order).rev() {
            let key = self.tables[k].keys[idx as usize];
            out[k] = (key % self.width) as u32;
            idx = (key / self.width) as u32;
        }
        out[0] = idx;
        out
    }

    /// The index of the n-gram `gram` (symbols, first first) at order `gram.len()`, if seen.
    pub fn find(&self, gram: &[u32]) -> Option<u32> {
        let (&first, rest) = gram.split_first()?;
        if first >= self.symbols.len() || gram.len() > self.order {
            return None;
        }
        let mut idx = first;
        for (k, &w) in rest.iter().enumerate() {
            idx = *self.tables[k + 1].index.get(&self.key(idx, w))?;
        }
        Some(idx)
    }

    /// The stored log10 probability and backoff of a seen n-gram (backoff 0 at the highest
    /// order and where the n-gram is never a context).
    pub fn entry(&self, order: usize, index: u32) -> (f32, f32) {
        let t = &self.tables[order - 1];
        let bo = t.log10_backoff.get(index as usize).copied().unwrap_or(0.0);
        (t.log10_prob[index as usize], bo)
    }

    fn key(&self, prefix: u32, last: u32) -> u64 {
        u64::from(prefix) * self.width + u64::from(last)
    }

    /// The seen contexts at the end of `history`: the index of its last symbol (order 1),
    /// of its last two (order 2), … up to N − 1 symbols or the first unseen one.
    pub fn context(&self, history: &[u32]) -> Vec<u32> {
        let longest = (self.order - 1).min(history.len());
        let mut out = Vec::with_capacity(longest);
        for m in 1..=longest {
            match self.find(&history[history.len() - m..]) {
                Some(i) => out.push(i),
                None => break,
            }
        }
        out
    }

    /// log10 p(w | context), the context from [`context`](Self::context): the longest seen
    /// n-gram's probability, times the backoff weights of the longer contexts that did not
    /// see `w`.
    pub fn log10_prob_in(&self, context: &[u32], w: u32) -> f64 {
        let Some(&unigram) = self.tables[0].log10_prob.get(w as usize) else {
            return f64::from(LOG10_ZERO);
        };
        let mut lp = f64::from(unigram);
        for (m, &c) in context.iter().enumerate() {
            match self.tables[m + 1].index.get(&self.key(c, w)) {
                Some(&g) => lp = f64::from(self.tables[m + 1].log10_prob[g as usize]),
                None => lp += f64::from(self.tables[m].log10_backoff[c as usize]),
            }
        }
        lp
    }

    /// log10 p(w | history); `history` starts with `<s>` at the start of a sentence.
    pub fn log10_prob(&self, history: &[u32], w: u32) -> f64 {
        self.log10_prob_in(&self.context(history), w)
    }

    /// log10 probability of each token of `<s> ids </s>` after `<s>`: one value per id, then
    /// one for `</s>`.
    pub fn sentence_log10(&self, ids: &[u32]) -> Vec<f64> {
        let mut seq = Vec::with_capacity(ids.len() + 2);
        seq.push(self.symbols.bos);
        seq.extend_from_slice(ids);
        seq.push(self.symbols.eos);
        (1..seq.len())
            .map(|i| {
                let from = i.saturating_sub(self.order - 1);
                self.log10_prob(&seq[from..i], seq[i])
            })
            .collect()
    }

    /// The probability of every symbol after `history` (0 for `<s>` and padding); sums to 1.
    pub fn distribution(&self, history: &[u32]) -> Vec<f64> {
        let context = self.context(history);
        (0..self.symbols.len())
            .map(|w| {
                if self.symbols.is_predictable(w) {
                    10f64.powf(self.log10_prob_in(&context, w))
                } else {
                    0.0
                }
            })
            .collect()
    }
}
