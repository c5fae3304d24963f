//! Keras' `pad_sequences`: sequences of different lengths made into one rectangular matrix.

/// Where padding goes when a sequence is shorter than the width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Before the sequence (Keras' default, `padding='pre'`).
    #[default]
    Pre,
    /// After the sequence (`padding='post'`).
    Post,
}

/// Which end of a sequence longer than the width is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncating {
    /// Drop tokens from the start, keeping the last ones (Keras' default,
    /// `truncating='pre'`).
    #[default]
    Pre,
    /// Drop tokens from the end, keeping the first ones (`truncating='post'`).
    Post,
}

/// A row-major matrix of ids: row `r` is `data[r * width..(r + 1) * width]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Padded {
    /// The ids, `rows * width` of them.
    pub data: Vec<u32>,
    /// Number of rows (one per sequence).
    pub rows: usize,
    /// Number of columns.
    pub width: usize,
}

impl Padded {
    /// Row `r`, or `None` past the last row.
    pub fn row(&self, r: usize) -> Option<&[u32]> {
        (r < self.rows).then(|| &self.data[r * self.width..(r + 1) * self.width])
    }
}

/// Keras' `pad_sequences(sequences, maxlen, padding, truncating, value)` with integer ids.
///
/// The width is `maxlen`, or the longest sequence's length when `maxlen` is `None`
/// (0 when there are no sequences). Each row holds its sequence, cut to the width according to
/// `truncating` and filled with `value` according to `padding`. The result is one flat
/// row-major buffer rather than a list of rows, ready to become a `[rows, width]` tensor.
///
/// One difference from Keras: `maxlen = Some(0)` gives empty rows, where Keras (whose
/// `s[-0:]` keeps the whole sequence) raises a shape error.
pub fn pad_sequences<S: AsRef<[u32]>>(
    sequences: &[S],
    maxlen: Option<usize>,
    padding: Padding,
    truncating: Truncating,
    value: u32,
) -> Padded {
    let width = maxlen.unwrap_or_else(|| {
        sequences
            .iter()
            .map(|s| s.as_ref().len())
            .max()
            .unwrap_or(0)
    });
    let mut data = vec![value; sequences.len() * width];
    if width > 0 {
        for (row, seq) in data.chunks_exact_mut(width).zip(sequences) {
            pad_into(row, seq.as_ref(), padding, truncating, value);
        }
    }
    Padded {
        data,
        rows: sequences.len(),
        width,
    }
}

/// Writes `seq` into `row`, truncated and padded with `value` to `row.len()`, as one row of
/// [`pad_sequences`].
pub fn pad_into(
    row: &mut [u32],
    seq: &[u32],
    padding: Padding,
    truncating: Truncating,
    value: u32,
) {
    let width = row.len();
    let kept = match truncating {
        Truncating::Pre => &seq[seq.len().saturating_sub(width)..],
        Truncating::Post => &seq[..seq.len().min(width)],
    };
    let (fill, body) = match padding {
        Padding::Pre => (0..width - kept.len(), width - kept.len()..width),
        Padding::Post => (kept.len()..width, 0..kept.len()),
    };
    row[fill].fill(value);
    row[body].copy_from_slice(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        seqs: &[&[u32]],
        maxlen: Option<usize>,
        padding: Padding,
        truncating: Truncating,
        expected: &[&[u32]],
    ) {
        let got = pad_sequences(seqs, maxlen, padding, truncating, 0);
        let rows: Vec<&[u32]> = (0..got.rows).map(|r| got.row(r).unwrap()).collect();
        assert_eq!(
            rows, expected,
            "{seqs:?} maxlen={maxlen:?} {padding:?} {truncating:?}"
        );
        assert_eq!(got.data.len(), got.rows * got.width);
    }

    use Padding as P;
    use Truncating as T;

    #[test]
    fn width_defaults_to_longest() {
        check(&[], None, P::Pre, T::Pre, &[]);
        check(&[&[]], None, P::Pre, T::Pre, &[&[]]);
        check(
            &[&[1], &[2, 3, 4], &[]],
            None,
            P::Pre,
            T::Pre,
            &[&[0, 0, 1], &[2, 3, 4], &[0, 0, 0]],
        );
        check(
            &[&[1], &[2, 3, 4]],
            None,
            P::Post,
            T::Pre,
            &[&[1, 0, 0], &[2, 3, 4]],
        );
    }

    #[test]
    fn truncation_keeps_the_chosen_end() {
        let seqs: &[&[u32]] = &[&[1, 2, 3, 4, 5], &[6]];
        check(seqs, Some(3), P::Pre, T::Pre, &[&[3, 4, 5], &[0, 0, 6]]);
        check(seqs, Some(3), P::Pre, T::Post, &[&[1, 2, 3], &[0, 0, 6]]);
        check(seqs, Some(3), P::Post, T::Pre, &[&[3, 4, 5], &[6, 0, 0]]);
        check(seqs, Some(3), P::Post, T::Post, &[&[1, 2, 3], &[6, 0, 0]]);
        check(
            seqs,
            Some(7),
            P::Pre,
            T::Pre,
            &[&[0, 0, 1, 2, 3, 4, 5], &[0, 0, 0, 0, 0, 0, 6]],
        );
        check(seqs, Some(0), P::Pre, T::Pre, &[&[], &[]]);
    }

    #[test]
    fn defaults_are_pre_and_value_is_used() {
        assert_eq!(
            (Padding::default(), Truncating::default()),
            (P::Pre, T::Pre)
        );
        let got = pad_sequences(&[vec![5u32]], Some(3), P::Pre, T::Pre, 9);
        assert_eq!(got.data, [9, 9, 5]);
        assert_eq!(got.row(1), None);
    }
}
