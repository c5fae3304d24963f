//! Counting every n-gram of orders 1 to N in memory proportional to the distinct n-grams.
//!
//! An n-gram of order k ≥ 2 is named by the index of its prefix (its first k−1 symbols, an
//! n-gram of order k−1) and its last symbol, packed into one `u64` key
//! (`prefix * symbols + last`); unigrams are their symbol. Each order keeps a hash map from key
//! to a dense index and, by index, the key, the count, the index of the n-gram's suffix (its
//! last k−1 symbols, which Kneser-Ney's continuation counts need) and whether it starts with
//! `<s>`. Reading a sentence costs one hash look-up per order and token, and the indices of
//! the n-grams ending at the previous token make the next ones' keys.
use rustc_hash::FxHashMap;

use crate::MAX_ORDER;
use crate::error::{NgramError, Result};
use crate::symbols::Symbols;

/// The n-grams of one order, by dense index.
#[derive(Debug, Default)]
pub(crate) struct CountTable {
    /// Key → index (empty for unigrams, whose index is the symbol).
    pub(crate) index: FxHashMap<u64, u32>,
    /// `prefix * symbols + last` by index (unigrams: the symbol).
    pub(crate) keys: Vec<u64>,
    /// How often the n-gram occurs.
    pub(crate) count: Vec<u32>,
    /// The index of the n-gram's suffix at the order below (unigrams: unused).
    pub(crate) suffix: Vec<u32>,
    /// Whether the n-gram's first symbol is `<s>`.
    pub(crate) starts_with_bos: Vec<bool>,
}

impl CountTable {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Counts of every n-gram up to an order, filled one sentence at a time.
#[derive(Debug)]
pub struct NgramCounter {
    pub(crate) order: usize,
    pub(crate) symbols: Symbols,
    /// Orders 1..=order, at indices 0..order.
    pub(crate) tables: Vec<CountTable>,
    /// Tokens read, `</s>` included, `<s>` not.
    pub(crate) tokens: u64,
    /// Sentences read.
    pub(crate) sentences: u64,
}

impl NgramCounter {
    /// A counter for n-grams up to `order` over `symbols`.
    ///
    /// # Errors
    /// [`NgramError::BadOrder`] for order 0 or above [`MAX_ORDER`].
    pub fn new(order: usize, symbols: Symbols) -> Result<Self> {
        check_order(order)?;
        let n = symbols.len() as usize;
        let unigrams = CountTable {
            index: FxHashMap::default(),
            keys: (0..n as u64).collect(),
            count: vec![0; n],
            suffix: Vec::new(),
            starts_with_bos: (0..n).map(|i| i as u32 == symbols.bos).collect(),
        };
        let mut tables = vec![unigrams];
        tables.extend((1..order).map(|_| CountTable::default()));
        Ok(NgramCounter {
            order,
            symbols,
            tables,
            tokens: 0,
            sentences: 0,
        })
    }

    /// Counts the n-grams of `<s> ids </s>`. Ids must be predictable symbols.
    ///
    /// # Errors
    /// [`NgramError::Input`] for an id that is not a predictable symbol, or when an order
    /// would pass 2³² − 1 distinct n-grams.
    pub fn add_sentence(&mut self, ids: &[u32]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&id| !self.symbols.is_predictable(id)) {
            return Err(NgramError::Input(format!(
                "id {bad} cannot be counted: it is not a predictable symbol of this vocabulary"
            )));
        }
        let width = u64::from(self.symbols.len());
        let (bos, eos) = (self.symbols.bos, self.symbols.eos);
        // Indices of the n-grams (orders 1..) ending at the previous and the current token.
        let mut prev = [0u32; MAX_ORDER];
        let mut cur = [0u32; MAX_ORDER];
        let mut prev_len = 0usize;
        let sequence = std::iter::once(bos)
            .chain(ids.iter().copied())
            .chain(std::iter::once(eos));
        for w in sequence {
            cur[0] = w;
            self.tables[0].count[w as usize] += 1;
            let len = (prev_len + 1).min(self.order);
            for k in 1..len {
                let prefix = prev[k - 1];
                let starts_with_bos = self.tables[k - 1].starts_with_bos[prefix as usize];
                let key = u64::from(prefix) * width + u64::from(w);
                let table = &mut self.tables[k];
                let next = table.keys.len();
                let index = *table.index.entry(key).or_insert_with(|| next as u32);
                if index as usize == next {
                    if next >= u32::MAX as usize {
                        return Err(NgramError::Input(format!(
                            "more than {} distinct {}-grams: use a lower order or less text",
                            u32::MAX - 1,
                            k + 1
                        )));
                    }
                    table.keys.push(key);
                    table.count.push(0);
                    table.suffix.push(cur[k - 1]);
                    table.starts_with_bos.push(starts_with_bos);
                }
                table.count[index as usize] += 1;
                cur[k] = index;
            }
            prev = cur;
            prev_len = len;
        }
        self.tokens += ids.len() as u64 + 1;
        self.sentences += 1;
        Ok(())
    }

    /// Distinct n-grams of each order, unigrams first (every symbol counts as a unigram).
    pub fn distinct(&self) -> Vec<usize> {
        self.tables.iter().map(CountTable::len).collect()
    }

    /// Tokens read, `</s>` included.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

/// Checks that `order` is between 1 and [`MAX_ORDER`].
pub(crate) fn check_order(order: usize) -> Result<()> {
    if order == 0 || order > MAX_ORDER {
        return Err(NgramError::BadOrder {
            order,
            max: MAX_ORDER,
        });
    }
    Ok(())
}
