//! Splitting one corpus into train, validation and test parts, contiguously and
//! deterministically.
//!
//! With `n` items, train is `[0, i)`, valid `[i, j)` and test `[j, n)` where
//! `i = floor(n * (1 - valid - test))` and `j = floor(n * (1 - test))`, the products computed
//! in `f64`. The two fractions are first rounded to 12 decimals, so that valid = test = 0.05
//! gives exactly `int(n * 0.9)` and `int(n * 0.95)`, the split of
//! `shared/bench/torch_lm_train.py --split-single` (plain `1 - 0.05 - 0.05` is
//! 0.8999999999999999, which would move the boundary when `n * 0.9` is whole).

use crate::error::{Result, TextPrepError};

/// Three parts of one corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splits<T> {
    /// The training part (the start of the corpus).
    pub train: T,
    /// The validation part (the middle).
    pub valid: T,
    /// The test part (the end).
    pub test: T,
}

/// Splits `items` (a token stream, or the characters of a text) into train, valid and test;
/// see the module documentation for the exact rule.
///
/// # Errors
/// [`TextPrepError::BadSplitFractions`] unless both fractions are in `[0, 1)` and their sum is
/// below 1.
pub fn split_by_fraction<T>(items: &[T], valid: f64, test: f64) -> Result<Splits<&[T]>> {
    let (i, j) = boundaries(items.len(), valid, test)?;
    Ok(Splits {
        train: &items[..i],
        valid: &items[i..j],
        test: &items[j..],
    })
}

/// Splits a text by characters (Unicode scalar values), with the rule of
/// [`split_by_fraction`]; the parts are slices of `text`.
///
/// # Errors
/// As [`split_by_fraction`].
pub fn split_text_by_fraction(text: &str, valid: f64, test: f64) -> Result<Splits<&str>> {
    let n = text.chars().count();
    let (i, j) = boundaries(n, valid, test)?;
    let byte_at = |k: usize| text.char_indices().nth(k).map_or(text.len(), |(b, _)| b);
    let (bi, bj) = (byte_at(i), byte_at(j));
    Ok(Splits {
        train: &text[..bi],
        valid: &text[bi..bj],
        test: &text[bj..],
    })
}

/// The train/valid and valid/test boundaries for `n` items.
fn boundaries(n: usize, valid: f64, test: f64) -> Result<(usize, usize)> {
    let ok = |f: f64| (0.0..1.0).contains(&f);
    if !ok(valid) || !ok(test) || !ok(valid + test) {
        return Err(TextPrepError::BadSplitFractions { valid, test });
    }
    let round = |f: f64| (f * 1e12).round() / 1e12;
    let train_end = round(1.0 - valid - test);
    let valid_end = round(1.0 - test);
    // Truncation toward zero, like Python's int(); both products are in [0, n].
    let at = |f: f64| ((n as f64 * f) as usize).min(n);
    Ok((at(train_end), at(valid_end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n: usize, valid: f64, test: f64, expected: (usize, usize)) {
        assert_eq!(
            boundaries(n, valid, test).unwrap(),
            expected,
            "n={n} {valid} {test}"
        );
    }

    #[test]
    fn five_percent_splits_match_python() {
        // Expected values from Python: int(n * 0.9), int(n * 0.95).
        for (n, i, j) in [
            (0, 0, 0),
            (1, 0, 0),
            (9, 8, 8),
            (10, 9, 9),
            (19, 17, 18),
            (20, 18, 19),
            (29, 26, 27),
            (30, 27, 28),
            (99, 89, 94),
            (100, 90, 95),
            (1001, 900, 950),
            (1_115_394, 1_003_854, 1_059_624),
            (2_088_628, 1_879_765, 1_984_196),
        ] {
            check(n, 0.05, 0.05, (i, j));
        }
    }

    #[test]
    fn other_fractions() {
        check(10, 0.0, 0.0, (10, 10));
        check(10, 0.1, 0.2, (7, 8));
        check(100, 0.15, 0.05, (80, 95));
        check(7, 0.5, 0.0, (3, 7));
    }

    #[test]
    fn slices_are_contiguous() {
        let items: Vec<u32> = (0..20).collect();
        let s = split_by_fraction(&items, 0.05, 0.05).unwrap();
        assert_eq!((s.train.len(), s.valid, s.test), (18, &[18][..], &[19][..]));
    }

    #[test]
    fn text_splits_on_characters() {
        let text = "ééééééééé😀"; // 10 characters, 20 bytes
        let s = split_text_by_fraction(text, 0.1, 0.1).unwrap();
        assert_eq!((s.train, s.valid, s.test), ("éééééééé", "é", "😀"));
        let s = split_text_by_fraction("", 0.05, 0.05).unwrap();
        assert_eq!((s.train, s.valid, s.test), ("", "", ""));
    }

    #[test]
    fn bad_fractions_are_errors() {
        for (valid, test) in [
            (-0.1, 0.0),
            (0.5, 0.5),
            (1.0, 0.0),
            (f64::NAN, 0.1),
            (0.2, f64::INFINITY),
        ] {
            let err = boundaries(10, valid, test).unwrap_err();
            assert!(
                matches!(err, TextPrepError::BadSplitFractions { .. }),
                "{valid} {test}"
            );
        }
        assert_eq!(
            boundaries(10, 0.6, 0.4).unwrap_err().to_string(),
            "split fractions valid=0.6 and test=0.4 are invalid; each must be in [0, 1) and together below 1"
        );
    }
}
