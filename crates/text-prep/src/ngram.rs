//! The n-gram recipe of Keras' LSTM text-generation examples: every prefix of every line
//! predicts its last token.
//!
//! For a line `[a, b, c, d]` the samples are `[a] → b`, `[a, b] → c` and `[a, b, c] → d`;
//! lines of fewer than two tokens give none. Inputs are pre-padded to a common width (the
//! longest input, capped by `max_len`; longer inputs keep their last `max_len` tokens), as
//! `pad_sequences(..., padding='pre')` followed by `X, y = seqs[:, :-1], seqs[:, -1]` does.
//!
//! Only the lines' ids and one `(line start, target position)` pair per sample are stored;
//! padded rows are built batch by batch.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TextPrepError};
use crate::padding::{Padding, Truncating, pad_into};

/// All n-gram samples of a set of encoded lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgramDataset {
    /// The ids of every line of two tokens or more, one after the other.
    tokens: Vec<u32>,
    /// For each sample: where its line starts in `tokens`, and where its target is.
    samples: Vec<(usize, usize)>,
    width: usize,
    pad: u32,
}

/// One batch of n-gram samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgramBatch {
    /// Row-major `[batch, width]` inputs, pre-padded with the dataset's pad id.
    pub inputs: Vec<u32>,
    /// `[batch]` targets: the token following each input row.
    pub targets: Vec<u32>,
    /// Number of rows.
    pub batch: usize,
    /// Number of columns.
    pub width: usize,
    /// Real (non-padding) tokens at the right end of each row: `min(prefix length, width)`.
    /// A recurrent model that reads the row left-aligned can take its prediction at position
    /// `length - 1` and so ignore padding exactly.
    pub lengths: Vec<usize>,
}

impl NgramDataset {
    /// Collects the samples of `lines` (one id sequence per line of text).
    ///
    /// `max_len` caps the input width; `pad` fills the left of short inputs (Keras uses 0,
    /// its padding id).
    ///
    /// # Errors
    /// [`TextPrepError::ZeroSize`] for `max_len` of `Some(0)`.
    pub fn new<I, S>(lines: I, max_len: Option<usize>, pad: u32) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u32]>,
    {
        if max_len == Some(0) {
            return Err(TextPrepError::ZeroSize { name: "max_len" });
        }
        let mut tokens = Vec::new();
        let mut samples = Vec::new();
        let mut longest = 0;
        for line in lines {
            let line = line.as_ref();
            if line.len() < 2 {
                continue;
            }
            let start = tokens.len();
            tokens.extend_from_slice(line);
            samples.extend((1..line.len()).map(|end| (start, start + end)));
            longest = longest.max(line.len() - 1);
        }
        let width = max_len.map_or(longest, |cap| cap.min(longest));
        Ok(Self {
            tokens,
            samples,
            width,
            pad,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Width of every input row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Sample `i`: its padded input row and its target, or `None` past the end.
    pub fn sample(&self, i: usize) -> Option<(Vec<u32>, u32)> {
        let mut row = vec![self.pad; self.width];
        let target = self.fill(i, &mut row)?;
        Some((row, target))
    }

    /// Writes sample `i`'s input into `row` (of length [`width`](Self::width)) and returns
    /// its target.
    fn fill(&self, i: usize, row: &mut [u32]) -> Option<u32> {
        let &(start, target) = self.samples.get(i)?;
        pad_into(
            row,
            &self.tokens[start..target],
            Padding::Pre,
            Truncating::Pre,
            self.pad,
        );
        Some(self.tokens[target])
    }

    /// Batches of `batch_size` samples, the last one possibly smaller.
    ///
    /// In order when `shuffle` is `None`; otherwise in an order drawn from the generator
    /// (one shuffle of all sample indices, so a seed fixes the order).
    ///
    /// # Errors
    /// [`TextPrepError::ZeroSize`] for a batch size of 0.
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle: Option<&mut ChaCha8Rng>,
    ) -> Result<NgramBatcher<'_>> {
        if batch_size == 0 {
            return Err(TextPrepError::ZeroSize { name: "batch size" });
        }
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        if let Some(rng) = shuffle {
            order.shuffle(rng);
        }
        Ok(NgramBatcher {
            dataset: self,
            order,
            batch_size,
            next: 0,
        })
    }
}

/// Iterator over the batches of an [`NgramDataset`]; see [`NgramDataset::batches`].
#[derive(Debug, Clone)]
pub struct NgramBatcher<'a> {
    dataset: &'a NgramDataset,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
}

impl NgramBatcher<'_> {
    /// Total number of batches, the partial last one included.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for NgramBatcher<'_> {
    type Item = NgramBatch;

    fn next(&mut self) -> Option<NgramBatch> {
        let end = (self.next + self.batch_size).min(self.order.len());
        let picked = self.order.get(self.next..end).filter(|p| !p.is_empty())?;
        self.next = end;
        let width = self.dataset.width;
        let mut inputs = vec![self.dataset.pad; picked.len() * width];
        let mut targets = Vec::with_capacity(picked.len());
        let mut lengths = Vec::with_capacity(picked.len());
        for (k, &i) in picked.iter().enumerate() {
            let row = &mut inputs[k * width..(k + 1) * width];
            targets.extend(self.dataset.fill(i, row));
            let (start, end) = self.dataset.samples[i];
            lengths.push((end - start).min(width));
        }
        Some(NgramBatch {
            inputs,
            targets,
            batch: picked.len(),
            width,
            lengths,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for NgramBatcher<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn check_samples(lines: &[&[u32]], max_len: Option<usize>, expected: &[(&[u32], u32)]) {
        let d = NgramDataset::new(lines, max_len, 0).unwrap();
        let got: Vec<(Vec<u32>, u32)> = (0..d.len()).map(|i| d.sample(i).unwrap()).collect();
        let expected: Vec<(Vec<u32>, u32)> =
            expected.iter().map(|(x, y)| (x.to_vec(), *y)).collect();
        assert_eq!(got, expected, "{lines:?} max_len={max_len:?}");
    }

    #[test]
    fn every_prefix_predicts_its_last_token() {
        check_samples(&[], None, &[]);
        check_samples(&[&[], &[7]], None, &[]);
        check_samples(&[&[1, 2]], None, &[(&[1], 2)]);
        check_samples(
            &[&[1, 2, 3, 4], &[5], &[6, 7]],
            None,
            &[
                (&[0, 0, 1], 2),
                (&[0, 1, 2], 3),
                (&[1, 2, 3], 4),
                (&[0, 0, 6], 7),
            ],
        );
    }

    #[test]
    fn max_len_truncates_from_the_front() {
        check_samples(
            &[&[1, 2, 3, 4], &[6, 7]],
            Some(2),
            &[(&[0, 1], 2), (&[1, 2], 3), (&[2, 3], 4), (&[0, 6], 7)],
        );
        // A cap above the longest input does not widen the rows.
        check_samples(&[&[1, 2, 3]], Some(10), &[(&[0, 1], 2), (&[1, 2], 3)]);
        let err = NgramDataset::new([[1u32, 2]], Some(0), 0).unwrap_err();
        assert_eq!(err.to_string(), "max_len must be at least 1, got 0");
    }

    #[test]
    fn batches_in_order_keep_the_partial_last_one() {
        let d = NgramDataset::new([vec![1u32, 2, 3, 4], vec![6, 7]], None, 0).unwrap();
        let batches: Vec<NgramBatch> = d.batches(3, None).unwrap().collect();
        assert_eq!(
            batches,
            [
                NgramBatch {
                    inputs: vec![0, 0, 1, 0, 1, 2, 1, 2, 3],
                    targets: vec![2, 3, 4],
                    batch: 3,
                    width: 3,
                    lengths: vec![1, 2, 3],
                },
                NgramBatch {
                    inputs: vec![0, 0, 6],
                    targets: vec![7],
                    batch: 1,
                    width: 3,
                    lengths: vec![1],
                },
            ]
        );
        assert_eq!(d.batches(3, None).unwrap().num_batches(), 2);
        assert_eq!(d.batches(3, None).unwrap().len(), 2);
        assert_eq!(d.batches(4, None).unwrap().count(), 1);
        assert!(d.batches(0, None).is_err());
    }

    #[test]
    fn shuffled_batches_are_a_seeded_permutation() {
        let lines: Vec<Vec<u32>> = (0..20u32).map(|i| vec![i, 100 + i, 200 + i]).collect();
        let d = NgramDataset::new(&lines, None, 0).unwrap();
        let targets = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let batches = d.batches(7, Some(&mut rng)).unwrap();
            batches.flat_map(|b| b.targets).collect::<Vec<u32>>()
        };
        let in_order: Vec<u32> = d
            .batches(7, None)
            .unwrap()
            .flat_map(|b| b.targets)
            .collect();
        let (a, b, c) = (targets(1), targets(1), targets(2));
        assert_eq!(a, b);
        assert_ne!(a, in_order);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        let mut expected = in_order.clone();
        expected.sort_unstable();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn pad_value_is_the_callers() {
        let d = NgramDataset::new([[4u32, 5, 6]], None, 9).unwrap();
        assert_eq!(d.sample(0), Some((vec![9, 4], 5)));
        assert_eq!(d.sample(2), None);
    }
}
