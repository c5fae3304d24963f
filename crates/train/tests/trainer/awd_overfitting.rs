//! AWD-LSTM's regularisers against overfitting: on a small sample of a synthetic Markov corpus,
//! a plain 2-layer LSTM memorises the training text and its validation loss climbs back up,
//! while the same model with locked dropout, weight drop, embedding dropout and AR/TAR, at the
//! same budget (same epochs, batches and learning rate), ends with a lower validation loss and
//! a smaller gap between training and validation loss. Prints both curves.
use std::path::Path;

use lstm_lm_text_prep::synthetic::{SplitSizes, SyntheticConfig};
use lstm_lm_train::settings::{CheckpointEvery, Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::train;

use crate::support::{epoch_figures, finished, options, serial, synthetic};

/// Per epoch: (train loss, valid loss).
fn curve(run: &Path) -> Vec<(f64, f64)> {
    epoch_figures(run)
        .into_iter()
        .map(|(_, t, v)| (t, v.expect("validation every epoch")))
        .collect()
}

fn plain() -> TrainSettings {
    let mut s = TrainSettings::default();
    s.data.tokenizer = TokenizerChoice::Word;
    s.data.recipe = Recipe::Stream;
    s.data.batch_size = 8;
    s.data.bptt = 20;
    s.model.embedding_size = 64;
    s.model.hidden_size = 128;
    s.model.num_layers = 2;
    s.optim.lr = 1e-2;
    s.optim.clip = Some(0.25);
    s.train.epochs = 12;
    s.train.seed = 7;
    s.train.checkpoint_every = CheckpointEvery::Never;
    s
}

fn regularised() -> TrainSettings {
    let mut s = plain();
    s.model.dropout = 0.4;
    s.model.dropout_hidden = Some(0.3);
    s.regularisation.locked_dropout = true;
    s.regularisation.weight_drop = 0.5;
    s.regularisation.embedding_dropout = 0.1;
    s.regularisation.ar = 2.0;
    s.regularisation.tar = 1.0;
    s
}

#[test]
fn regularised_model_overfits_less_than_the_plain_one_at_the_same_budget() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config = SyntheticConfig {
        vocab_words: 60,
        successors: 6,
        ..SyntheticConfig::default()
    };
    let sizes = SplitSizes {
        train_tokens: 3_000,
        valid_tokens: 3_000,
        test_tokens: 100,
    };
    let (mut data, perplexity) = synthetic(&tmp.path().join("data"), config, sizes, 3);
    data.test = None;
    eprintln!("the source's own perplexity: {perplexity:.1}");
    let mut curves = Vec::new();
    for (name, s) in [("plain", plain()), ("regularised", regularised())] {
        let out = tmp.path().join(name);
        finished(train(options(&s, &data, &out)).unwrap());
        let c = curve(&out);
        eprintln!("{name}: epoch train_ppl valid_ppl");
        for (k, (t, v)) in c.iter().enumerate() {
            eprintln!("{name}: {} {:.1} {:.1}", k + 1, t.exp(), v.exp());
        }
        assert!(
            c.iter().all(|(t, v)| t.is_finite() && v.is_finite()),
            "{name}: {c:?}"
        );
        curves.push(c);
    }
    let (p, r) = (&curves[0], &curves[1]);
    let last = |c: &[(f64, f64)]| *c.last().unwrap();
    let best_valid = |c: &[(f64, f64)]| c.iter().map(|x| x.1).reduce(f64::min).unwrap();
    // The plain model overfits: its validation loss ends well above its best.
    assert!(
        last(p).1 > best_valid(p) + 0.1,
        "plain does not overfit: {p:?}"
    );
    // The regularised one ends lower on validation, with a smaller train/valid gap, and its
    // best epoch beats the plain model's best.
    assert!(
        last(r).1 < last(p).1,
        "valid: regularised {r:?} plain {p:?}"
    );
    assert!(
        best_valid(r) < best_valid(p),
        "best: regularised {r:?} plain {p:?}"
    );
    let gap = |c: &[(f64, f64)]| last(c).1 - last(c).0;
    assert!(gap(r) < gap(p), "gap: regularised {r:?} plain {p:?}");
}
