//! The Kneser-Ney model against a hand-computed example, probabilities that sum to one,
//! the model file and ARPA round trips, and bad input.
use lstm_lm_ngram::{ArpaModel, KneserNeyModel, MAX_ORDER, NgramError, NgramRun, NgramTrainConfig};
use lstm_lm_text_prep::{TokenizerConfig, TokenizerKind};
use proptest::prelude::*;

fn word_config(order: usize) -> NgramTrainConfig {
    NgramTrainConfig {
        tokenizer: TokenizerConfig::new(TokenizerKind::Word),
        order,
    }
}

fn train(text: &str, order: usize) -> NgramRun {
    NgramRun::train_on_texts(&[text], &word_config(order)).unwrap()
}

/// Closeness that fails on NaN and infinities.
fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        a.is_finite() && b.is_finite() && (a - b).abs() <= tol,
        "{what}: {a} vs {b}"
    );
}

/// "a b" and "a", order 2: every count of counts is too thin for Chen & Goodman's formula, so
/// both orders take the fallback discounts 0.5, 1, 1.5. By hand:
/// unigram adjusted counts a=1 ({<s>}), b=1 ({a}), </s>=2 ({a, b}), <unk>=0; total 4;
/// γ() = (0.5·2 + 1·1)/4 = 0.5 over 4 predictable symbols;
/// p(a) = p(b) = 0.5/4 + 0.125 = 0.25, p(</s>) = 1/4 + 0.125 = 0.375, p(<unk>) = 0.125.
/// Bigrams: p(a|<s>) = (2−1)/2 + (1/2)·0.25 = 0.625; p(b|<s>) = 0.5·0.25 = 0.125;
/// p(b|a) = 0.5/2 + 0.5·0.25 = 0.375; p(</s>|a) = 0.25 + 0.5·0.375 = 0.4375;
/// p(</s>|b) = 0.5 + 0.5·0.375 = 0.6875.
#[test]
fn tiny_example_matches_the_hand_computation() {
    let run = train("a b\na\n", 2);
    let m = &run.model;
    let t = &run.tokenizer;
    let id = |w: &str| t.token_to_id(w).unwrap();
    let (a, b, eos, unk) = (id("a"), id("b"), id("<eos>"), id("<unk>"));
    let bos = m.symbols().bos;
    let p = |h: &[u32], w: u32| 10f64.powf(m.log10_prob(h, w));
    let tol = 1e-6;
    assert_close(p(&[], a), 0.25, tol, "p(a)");
    assert_close(p(&[], b), 0.25, tol, "p(b)");
    assert_close(p(&[], eos), 0.375, tol, "p(</s>)");
    assert_close(p(&[], unk), 0.125, tol, "p(<unk>)");
    assert_close(p(&[bos], a), 0.625, tol, "p(a|<s>)");
    assert_close(p(&[bos], b), 0.125, tol, "p(b|<s>)");
    assert_close(p(&[a], b), 0.375, tol, "p(b|a)");
    assert_close(p(&[a], eos), 0.4375, tol, "p(</s>|a)");
    assert_close(p(&[a], a), 0.125, tol, "p(a|a)");
    assert_close(p(&[b], eos), 0.6875, tol, "p(</s>|b)");
    let est = m.estimation();
    assert_eq!(est.fallbacks.len(), 2, "both orders fall back");
    assert_eq!(est.tokens, 5);
    assert_eq!(m.ngram_counts()[1], 4);
    // A sentence's score is the product of its tokens' probabilities.
    let s: f64 = m.sentence_log10(&[a, b]).iter().sum();
    assert_close(
        10f64.powf(s),
        0.625 * 0.375 * 0.6875,
        tol,
        "p(<s> a b </s>)",
    );
}

/// Chen & Goodman's discounts on a corpus with enough counts at every order: each order has
/// its own, none falls back, and every D_i lies in (0, i].
#[test]
fn discounts_come_from_the_counts_when_there_are_enough() {
    // A skewed pseudo-random corpus: word k is about k times rarer than word 1.
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut text = String::new();
    for _ in 0..2000 {
        let words: Vec<String> = (0..6)
            .map(|_| format!("w{}", (1.0 / (next() + 0.02)) as u32))
            .collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    let run = train(&text, 3);
    let est = run.model.estimation();
    assert!(est.fallbacks.is_empty(), "{:?}", est.fallbacks);
    for d in &est.discounts {
        for (i, &x) in d.iter().enumerate() {
            assert!(x > 0.0 && x <= (i + 1) as f64, "{d:?}");
        }
    }
}

fn corpus() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g"]);
    let line = prop::collection::vec(word, 0..8).prop_map(|w| w.join(" "));
    prop::collection::vec(line, 1..12).prop_map(|lines| lines.join("\n"))
}

fn sums_to_one(m: &KneserNeyModel, history: &[u32]) {
    let d = m.distribution(history);
    let total: f64 = d.iter().sum();
    assert_close(total, 1.0, 1e-5, &format!("sum after {history:?}"));
    for (w, &p) in d.iter().enumerate() {
        if m.symbols().is_predictable(w as u32) {
            assert!(p > 0.0 && p.is_finite(), "p({w} | {history:?}) = {p}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For random corpora and orders, the distribution after any history (seen or not,
    /// from `<s>` or mid-sentence) sums to 1 over the predictable symbols.
    #[test]
    fn every_distribution_sums_to_one(
        text in corpus(),
        order in 1usize..=5,
        history in prop::collection::vec(0u32..12, 0..6),
    ) {
        prop_assume!(text.split_whitespace().next().is_some());
        let run = train(&text, order);
        let m = &run.model;
        let n = m.symbols().len();
        let bos = m.symbols().bos;
        let mut h: Vec<u32> = history.iter().map(|&x| x % (n - 1)).collect();
        sums_to_one(m, &h);
        sums_to_one(m, &[bos]);
        h.insert(0, bos);
        sums_to_one(m, &h);
    }

    /// ARPA written and read back (standard backoff computation, independent of the model's
    /// own query code) gives the same sentence log-probabilities; so does the model file.
    #[test]
    fn arpa_and_model_file_round_trip(text in corpus(), order in 1usize..=4) {
        prop_assume!(text.split_whitespace().next().is_some());
        let run = train(&text, order);
        let m = &run.model;
        let mut arpa = Vec::new();
        m.write_arpa(&run.symbol_names(), &mut arpa).unwrap();
        let parsed = ArpaModel::parse(std::str::from_utf8(&arpa).unwrap()).unwrap();
        prop_assert_eq!(parsed.order(), order);
        let reloaded = KneserNeyModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        for line in text.lines().chain(["a b c", "g g g g", "zz a", ""]) {
            let ids = m.symbols().sentence(&run.tokenizer, line).unwrap();
            let ours = m.sentence_log10(&ids);
            let words: Vec<&str> = line.split_whitespace().collect();
            let theirs = parsed.sentence_log10(&words);
            let again = reloaded.sentence_log10(&ids);
            prop_assert_eq!(ours.len(), theirs.len());
            for ((a, b), c) in ours.iter().zip(&theirs).zip(&again) {
                assert_close(*a, *b, 1e-9, "ARPA");
                prop_assert_eq!(a.to_bits(), c.to_bits());
            }
        }
    }
}

#[test]
fn bad_orders_and_empty_corpora_are_one_line_errors() {
    for order in [0, MAX_ORDER + 1] {
        let e = NgramRun::train_on_texts(&["a b"], &word_config(order)).unwrap_err();
        assert!(matches!(e, NgramError::BadOrder { .. }), "{e}");
        assert!(e.to_string().contains(&format!("--order {order}")), "{e}");
    }
    for empty in ["", "\n\n", "   \n"] {
        let e = NgramRun::train_on_texts(&[empty], &word_config(3)).unwrap_err();
        assert!(matches!(e, NgramError::EmptyCorpus), "{e}");
    }
    // The highest order is allowed.
    let run = train("a b c d e f g h i j k l\n", MAX_ORDER);
    assert_eq!(run.model.order(), MAX_ORDER);
}

#[test]
fn damaged_foreign_and_newer_model_files_are_refused() {
    let run = train("a b\nb c\n", 3);
    let bytes = run.model.to_bytes().unwrap();
    let truncated = KneserNeyModel::from_bytes(&bytes[..bytes.len() - 3]).unwrap_err();
    assert!(truncated.contains("bytes long"), "{truncated}");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let foreign = text.replacen("lstm-lm-ngram-model", "something-else", 1);
    let e = KneserNeyModel::from_bytes(foreign.as_bytes()).unwrap_err();
    assert!(e.contains("something-else"), "{e}");
    let newer = text.replacen("\"version\":1", "\"version\":9", 1);
    let e = KneserNeyModel::from_bytes(newer.as_bytes()).unwrap_err();
    assert!(e.contains("version 9"), "{e}");
    assert!(KneserNeyModel::from_bytes(b"garbage").is_err());
}

#[test]
fn run_folders_save_load_and_refuse_other_folders() {
    let dir = tempfile::tempdir().unwrap();
    let run = train("the cat sat\nthe dog sat\n", 3);
    run.save(dir.path()).unwrap();
    let loaded = NgramRun::load(dir.path()).unwrap();
    let a = run.score_line("the cat sat").unwrap();
    let b = loaded.score_line("the cat sat").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.tokens.last().unwrap().0, "<eos>");
    let other = tempfile::tempdir().unwrap();
    let e = NgramRun::load(other.path()).unwrap_err();
    assert!(e.to_string().contains("not an n-gram run folder"), "{e}");
    // A tokenizer from another corpus does not fit the model.
    let foreign = train("one two three four\n", 2);
    foreign
        .tokenizer
        .save(dir.path().join("tokenizer.json"))
        .unwrap();
    let e = NgramRun::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
}

/// For the word tokenizer the per-token figures line up with the LSTM's token stream.
#[test]
fn text_log_probs_follow_the_word_stream() {
    let text = "the cat sat\n\nthe dog\n";
    let run = train(text, 3);
    let logs = run.text_log_probs(text).unwrap();
    assert_eq!(logs.len(), run.tokenizer.encode_text(text).unwrap().len());
    assert!(logs.iter().all(|x| x.is_finite() && *x < 0.0));
}
