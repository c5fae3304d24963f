//! Rules that reshape the next-token distribution before a token is picked: the repetition
//! penalty and the n-gram repetition ban; and the model's own log-probability of a token.

/// Repetition penalty of CTRL (Keskar et al. 2019): the logit of every token already in the
/// text is divided by `penalty` when positive and multiplied by it when negative, so
/// `penalty > 1` makes repeats less likely (1 leaves the logits as they are).
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for &id in seen {
        let i = id as usize;
        if i < logits.len() && !done[i] {
            done[i] = true;
            let l = &mut logits[i];
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// The tokens that would complete an `n`-gram already in `history` (its last `n − 1` tokens
/// followed by the token): banning them means no `n`-gram occurs twice. Empty for `n = 0`.
pub fn no_repeat_ngram_bans(history: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || history.len() < n.saturating_sub(1) {
        return Vec::new();
    }
    let prefix = &history[history.len() + 1 - n..];
    let mut bans: Vec<u32> = history
        .windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect();
    bans.sort_unstable();
    bans.dedup();
    bans
}

/// Natural-log probability of `id` under the softmax of `logits` (non-finite logits count as
/// impossible tokens); −∞ when `id` is out of range or impossible.
pub fn log_prob_of(logits: &[f32], id: u32) -> f64 {
    let Some(&target) = logits.get(id as usize) else {
        return f64::NEG_INFINITY;
    };
    let finite = || {
        logits
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
    };
    let max = finite().fold(f64::NEG_INFINITY, f64::max);
    if !target.is_finite() || !max.is_finite() {
        return f64::NEG_INFINITY;
    }
    let total: f64 = finite().map(|v| (v - max).exp()).sum();
    f64::from(target) - max - total.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_penalty_lowers_seen_tokens_on_both_sides_of_zero_once_each() {
        let mut l = [2.0f32, -1.0, 0.5, 3.0];
        apply_repetition_penalty(&mut l, &[0, 1, 0, 9], 2.0);
        assert_eq!(l, [1.0, -2.0, 0.5, 3.0]);
        let mut same = [2.0f32, -1.0];
        apply_repetition_penalty(&mut same, &[0, 1], 1.0);
        assert_eq!(same, [2.0, -1.0]);
    }

    #[test]
    fn bans_complete_exactly_the_repeated_ngrams() {
        // "a b c a b": 3-grams end with the prefix "a b" once, followed by c.
        assert_eq!(no_repeat_ngram_bans(&[1, 2, 3, 1, 2], 3), vec![3]);
        // 2-grams after "2": 2 was followed by 3.
        assert_eq!(no_repeat_ngram_bans(&[1, 2, 3, 1, 2], 2), vec![3]);
        // 1-grams: every token seen.
        assert_eq!(no_repeat_ngram_bans(&[5, 1, 5], 1), vec![1, 5]);
        assert!(no_repeat_ngram_bans(&[1, 2], 0).is_empty());
        assert!(no_repeat_ngram_bans(&[1], 3).is_empty());
        assert!(no_repeat_ngram_bans(&[1, 2, 3], 4).is_empty());
    }

    #[test]
    fn log_probabilities_match_a_direct_softmax_and_survive_non_finite_logits() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| f64::from(x).exp()).sum();
        for id in 0..3 {
            let want = (f64::from(l[id]).exp() / z).ln();
            assert!((log_prob_of(&l, id as u32) - want).abs() < 1e-12);
        }
        let odd = [f32::NAN, 0.0, f32::NEG_INFINITY];
        assert!((log_prob_of(&odd, 1) - 0.0).abs() < 1e-12);
        assert_eq!(log_prob_of(&odd, 0), f64::NEG_INFINITY);
        assert_eq!(log_prob_of(&odd, 7), f64::NEG_INFINITY);
    }
}
