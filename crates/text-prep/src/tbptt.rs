//! The stream recipe for truncated backpropagation through time, as pytorch/examples'
//! `word_language_model` (and `shared/bench/torch_lm_train.py`) does it.
//!
//! `batchify`: with `n = len / batch_size` (integer division), the last `len % batch_size`
//! tokens are dropped and column `b` holds tokens `[b*n, (b+1)*n)`, so each column is one
//! contiguous stretch of text and the hidden state can be carried from window to window.
//! Window `k` starts at row `i = k * bptt` and has `seq_len = min(bptt, n - 1 - i)` rows of
//! inputs; its targets are the rows one further down. There are `ceil((n - 1) / bptt)` windows
//! and the last one may be shorter.
//!
//! Unlike PyTorch's `[seq_len, batch]`, batches here are batch-first: row-major
//! `[batch, seq_len]`.

use crate::error::{Result, TextPrepError};

/// A token stream cut into columns, served window by window.
///
/// The stream is owned (`Vec<u32>`) or borrowed (`&[u32]`, so that a large stream is not
/// copied for each pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TbpttBatcher<S = Vec<u32>> {
    /// The tokens; column `b`, row `r` is `stream[b * rows + r]`, and the last
    /// `len % batch_size` are not used.
    stream: S,
    rows: usize,
    batch_size: usize,
    bptt: usize,
}

/// One window of a [`TbpttBatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TbpttBatch {
    /// Row-major `[batch, seq_len]` input ids.
    pub inputs: Vec<u32>,
    /// Row-major `[batch, seq_len]` targets: each input's next token.
    pub targets: Vec<u32>,
    /// Number of columns of the stream (rows of this batch).
    pub batch: usize,
    /// Number of time steps in this window (`bptt`, or fewer for the last window).
    pub seq_len: usize,
    /// Which window this is, counting from 0.
    pub window: usize,
}

impl<S: AsRef<[u32]>> TbpttBatcher<S> {
    /// Cuts `stream` into `batch_size` columns, to be served in windows of `bptt` steps.
    ///
    /// # Errors
    /// [`TextPrepError::ZeroSize`] for a zero batch size or `bptt`, and
    /// [`TextPrepError::StreamTooShort`] when the columns would have fewer than two tokens
    /// (no input with a target).
    pub fn new(stream: S, batch_size: usize, bptt: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(TextPrepError::ZeroSize { name: "batch size" });
        }
        if bptt == 0 {
            return Err(TextPrepError::ZeroSize { name: "bptt" });
        }
        let len = stream.as_ref().len();
        let rows = len / batch_size;
        if rows < 2 {
            return Err(TextPrepError::StreamTooShort {
                len,
                batch_size,
                needed: 2 * batch_size,
            });
        }
        Ok(Self {
            stream,
            rows,
            batch_size,
            bptt,
        })
    }

    /// Number of columns.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Window length in steps.
    pub fn bptt(&self) -> usize {
        self.bptt
    }

    /// Tokens per column (`n`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of windows: `ceil((n - 1) / bptt)`.
    pub fn num_windows(&self) -> usize {
        (self.rows - 1).div_ceil(self.bptt)
    }

    /// Number of targets over all windows: `(n - 1) * batch_size`.
    pub fn num_targets(&self) -> usize {
        (self.rows - 1) * self.batch_size
    }

    /// Window `k`, or `None` past the last one.
    pub fn window(&self, k: usize) -> Option<TbpttBatch> {
        let start = k.checked_mul(self.bptt)?;
        self.window_at(k, start, self.bptt)
    }

    /// The window numbered `window` that starts at row `start` and has `seq_len` steps (fewer
    /// at the end of the stream), or `None` when `start` is past the last input or `seq_len`
    /// is 0: windows of varying length, as AWD-LSTM's random BPTT lengths draw them.
    pub fn window_at(&self, window: usize, start: usize, seq_len: usize) -> Option<TbpttBatch> {
        if start >= self.rows - 1 || seq_len == 0 {
            return None;
        }
        let k = window;
        let seq_len = seq_len.min(self.rows - 1 - start);
        let mut inputs = Vec::with_capacity(self.batch_size * seq_len);
        let mut targets = Vec::with_capacity(self.batch_size * seq_len);
        let kept = &self.stream.as_ref()[..self.rows * self.batch_size];
        for column in kept.chunks_exact(self.rows) {
            inputs.extend_from_slice(&column[start..start + seq_len]);
            targets.extend_from_slice(&column[start + 1..start + 1 + seq_len]);
        }
        Some(TbpttBatch {
            inputs,
            targets,
            batch: self.batch_size,
            seq_len,
            window: k,
        })
    }

    /// All windows in order.
    pub fn windows(&self) -> TbpttWindows<'_, S> {
        self.windows_from(0)
    }

    /// The windows from `start` on, to resume an epoch exactly where it stopped.
    pub fn windows_from(&self, start: usize) -> TbpttWindows<'_, S> {
        let end = self.num_windows();
        TbpttWindows {
            batcher: self,
            next: start.min(end),
            end,
        }
    }
}

/// Iterator over the windows of a [`TbpttBatcher`], built one at a time.
#[derive(Debug, Clone)]
pub struct TbpttWindows<'a, S = Vec<u32>> {
    batcher: &'a TbpttBatcher<S>,
    next: usize,
    end: usize,
}

impl<S: AsRef<[u32]>> Iterator for TbpttWindows<'_, S> {
    type Item = TbpttBatch;

    fn next(&mut self) -> Option<TbpttBatch> {
        if self.next >= self.end {
            return None;
        }
        let batch = self.batcher.window(self.next);
        self.next += 1;
        batch
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl<S: AsRef<[u32]>> ExactSizeIterator for TbpttWindows<'_, S> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_windows(
        stream: std::ops::Range<u32>,
        batch: usize,
        bptt: usize,
        expected: &[(&[u32], &[u32], usize)],
    ) {
        let b = TbpttBatcher::new(stream.clone().collect::<Vec<u32>>(), batch, bptt).unwrap();
        let got: Vec<(Vec<u32>, Vec<u32>, usize)> = b
            .windows()
            .map(|w| {
                assert_eq!(w.batch, batch);
                assert_eq!(w.inputs.len(), batch * w.seq_len);
                (w.inputs, w.targets, w.seq_len)
            })
            .collect();
        let expected: Vec<(Vec<u32>, Vec<u32>, usize)> = expected
            .iter()
            .map(|(x, y, l)| (x.to_vec(), y.to_vec(), *l))
            .collect();
        assert_eq!(got, expected, "{stream:?} batch={batch} bptt={bptt}");
        assert_eq!(b.num_windows(), expected.len());
    }

    #[test]
    fn columns_are_contiguous_and_windows_batch_first() {
        // 0..10 in 2 columns of 5: [0 1 2 3 4] and [5 6 7 8 9].
        check_windows(
            0..10,
            2,
            2,
            &[
                (&[0, 1, 5, 6], &[1, 2, 6, 7], 2),
                (&[2, 3, 7, 8], &[3, 4, 8, 9], 2),
            ],
        );
        // bptt 3: windows at rows 0 and 3; the last has min(3, 5 - 1 - 3) = 1 step.
        check_windows(
            0..10,
            2,
            3,
            &[
                (&[0, 1, 2, 5, 6, 7], &[1, 2, 3, 6, 7, 8], 3),
                (&[3, 8], &[4, 9], 1),
            ],
        );
    }

    #[test]
    fn remainder_is_trimmed() {
        // 0..11 in 3 columns: n = 3, tokens 9 and 10 dropped.
        check_windows(
            0..11,
            3,
            5,
            &[(&[0, 1, 3, 4, 6, 7], &[1, 2, 4, 5, 7, 8], 2)],
        );
        check_windows(0..2, 1, 35, &[(&[0], &[1], 1)]);
    }

    #[test]
    fn counts_and_resume() {
        let b = TbpttBatcher::new((0..1000).collect::<Vec<u32>>(), 10, 35).unwrap();
        assert_eq!((b.rows(), b.num_windows(), b.num_targets()), (100, 3, 990));
        let last = b.window(2).unwrap();
        assert_eq!((last.seq_len, last.window), (29, 2));
        assert_eq!(last.inputs[..3], [70, 71, 72]);
        assert_eq!(last.targets[29..32], [171, 172, 173]);
        assert_eq!(b.window(3), None);
        let resumed: Vec<usize> = b.windows_from(1).map(|w| w.window).collect();
        assert_eq!(resumed, [1, 2]);
        assert_eq!(b.windows_from(5).len(), 0);
        let all: Vec<TbpttBatch> = b.windows().collect();
        assert_eq!(all[1..], b.windows_from(1).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let msg = |r: Result<TbpttBatcher>| r.unwrap_err().to_string();
        assert_eq!(
            msg(TbpttBatcher::new(vec![1, 2], 0, 5)),
            "batch size must be at least 1, got 0"
        );
        assert_eq!(
            msg(TbpttBatcher::new(vec![1, 2], 1, 0)),
            "bptt must be at least 1, got 0"
        );
        assert_eq!(
            msg(TbpttBatcher::new(vec![1, 2, 3], 2, 5)),
            "a stream of 3 tokens is too short for batch size 2; it needs at least 4 tokens (use a smaller batch size or more text)"
        );
    }
}
