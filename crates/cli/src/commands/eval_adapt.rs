//! `lstm-lm eval --cache/--dynamic`: evaluation-time adaptation (the cache pointer, dynamic
//! evaluation, their tuning on a validation file), printed next to the plain model.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_infer::cache_pointer::CacheConfig;
use lstm_lm_infer::dynamic_eval::{DynamicConfig, DynamicRule};
use lstm_lm_infer::{Figures, LoadedRun, Tuning};
use serde_json::json;

/// The adaptation flags of `eval`.
#[derive(Debug, Args)]
pub struct AdaptArgs {
    /// Continuous cache pointer: the last WINDOW hidden states of each stream column and the
    /// words that followed them form a second distribution, mixed in with weight λ and
    /// sharpness θ (defaults 0.662 and 0.1; see --tune-cache).
    #[arg(long, value_name = "WINDOW[:θ:λ]")]
    pub cache: Option<String>,
    /// Pick the cache's θ and λ for --cache WINDOW on this validation file (grid search;
    /// prints them) and evaluate with them.
    #[arg(long, value_name = "VALID_FILE")]
    pub tune_cache: Option<PathBuf>,
    /// Dynamic evaluation: after each window is scored, one gradient step on it, with step
    /// size LR and decay DECAY toward the trained weights (defaults per --dynamic-rule).
    #[arg(long, value_name = "LR[:DECAY]", num_args = 0..=1, default_missing_value = "")]
    pub dynamic: Option<String>,
    /// Dynamic evaluation's rule: sgd, or rms (steps divided by each weight's RMS gradient,
    /// decay scaled by it; needs --dynamic-stats, best from the training text).
    #[arg(long, value_name = "RULE", default_value = "sgd")]
    pub dynamic_rule: String,
    /// Text whose gradients give the RMS rule its per-weight statistics: training text (100k
    /// tokens are plenty), never the evaluated one; default: the --tune-dynamic file.
    #[arg(long, value_name = "FILE")]
    pub dynamic_stats: Option<PathBuf>,
    /// Pick dynamic evaluation's step size and decay on this validation file (grid search,
    /// one pass per point; prints them) and evaluate with them.
    #[arg(long, value_name = "VALID_FILE")]
    pub tune_dynamic: Option<PathBuf>,
    /// Read only the first N tokens of every text (the evaluated file, validation and
    /// statistics texts): quicker measurements, on a stated prefix.
    #[arg(long, value_name = "N")]
    pub prefix_tokens: Option<usize>,
}

impl AdaptArgs {
    /// Whether any adaptation flag was given.
    pub fn any(&self) -> bool {
        self.cache.is_some()
            || self.tune_cache.is_some()
            || self.dynamic.is_some()
            || self.tune_dynamic.is_some()
            || self.dynamic_stats.is_some()
            || self.prefix_tokens.is_some()
    }
}

/// What the flags ask for, checked before the run is loaded.
struct Plan {
    cache: Option<CacheConfig>,
    tune_cache: Option<PathBuf>,
    dynamic: Option<DynamicConfig>,
    tune_dynamic: Option<PathBuf>,
    stats: Option<PathBuf>,
    prefix: Option<usize>,
}

fn plan(a: &AdaptArgs) -> Result<Plan> {
    let rule = DynamicRule::parse(&a.dynamic_rule)?;
    let cache = a.cache.as_deref().map(CacheConfig::parse).transpose()?;
    if a.tune_cache.is_some() {
        match &a.cache {
            None => bail!("--tune-cache needs --cache WINDOW: the window to tune θ and λ for"),
            Some(spec) if spec.contains(':') => {
                bail!("--tune-cache picks θ and λ itself: give --cache WINDOW without them")
            }
            _ => {}
        }
    }
    let dynamic = a
        .dynamic
        .as_deref()
        .map(|s| DynamicConfig::parse(s, rule))
        .transpose()?;
    if a.tune_dynamic.is_some() {
        match &a.dynamic {
            None => bail!("--tune-dynamic needs --dynamic: pick the rule with --dynamic-rule"),
            Some(spec) if !spec.trim().is_empty() => {
                bail!(
                    "--tune-dynamic picks the step size and decay itself: give --dynamic without LR:DECAY"
                )
            }
            _ => {}
        }
    }
    if dynamic.is_none() && (a.dynamic_stats.is_some() || a.dynamic_rule != "sgd") {
        bail!("--dynamic-stats and --dynamic-rule go with --dynamic");
    }
    if rule == DynamicRule::Sgd && a.dynamic_stats.is_some() {
        bail!("--dynamic-stats goes with --dynamic-rule rms (the SGD rule uses no statistics)");
    }
    if a.prefix_tokens == Some(0) {
        bail!("--prefix-tokens must be at least 1");
    }
    if cache.is_none() && dynamic.is_none() {
        bail!("--prefix-tokens goes with --cache or --dynamic");
    }
    let stats = match rule {
        DynamicRule::Rms if dynamic.is_some() => Some(
            a.dynamic_stats
                .clone()
                .or_else(|| a.tune_dynamic.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--dynamic-rule rms needs --dynamic-stats FILE (best a piece of the training text) or --tune-dynamic VALID_FILE"
                    )
                })?,
        ),
        _ => None,
    };
    Ok(Plan {
        cache,
        tune_cache: a.tune_cache.clone(),
        dynamic,
        tune_dynamic: a.tune_dynamic.clone(),
        stats,
        prefix: a.prefix_tokens,
    })
}

fn figures_json(f: &Figures) -> serde_json::Value {
    json!({"loss": f.loss, "ppl": f.ppl})
}

fn tuning_json(t: &Tuning, file: &Path, a: &str, b: &str) -> serde_json::Value {
    json!({
        "file": file,
        "tokens": t.tokens,
        a: t.best.a,
        b: t.best.b,
        "loss": t.best.figures.loss,
        "ppl": t.best.figures.ppl,
        "plain": figures_json(&t.plain),
    })
}

/// A note when the best point lies on the border of the grid (a wider grid might do better).
fn edge_note(t: &Tuning) -> &'static str {
    let range = |values: Vec<f64>| {
        let lo = values.iter().copied().reduce(f64::min).unwrap_or(0.0);
        let hi = values.iter().copied().reduce(f64::max).unwrap_or(0.0);
        (lo, hi)
    };
    let (a_lo, a_hi) = range(t.grid.iter().map(|p| p.a).collect());
    let (b_lo, b_hi) = range(t.grid.iter().map(|p| p.b).collect());
    let on_edge = t.best.a == a_lo
        || t.best.a == a_hi
        || t.best.b == b_hi
        || (t.best.b == b_lo && b_lo > 0.0);
    if on_edge {
        "  (on the edge of the grid)"
    } else {
        ""
    }
}

/// Runs `eval` with adaptation.
pub fn run(
    model: PathBuf,
    data: PathBuf,
    a: &AdaptArgs,
    device: super::device_args::DeviceArgs,
    json: bool,
) -> Result<()> {
    let mut p = plan(a)?;
    let device = device.device()?;
    lstm_lm_infer::on_pool(move || -> Result<()> {
        let run = LoadedRun::load(&model, device)?;
        let mut out = std::io::stdout().lock();
        let mut report = serde_json::Map::new();
        if let (Some(file), Some(cache)) = (&p.tune_cache, p.cache.as_mut()) {
            let t = lstm_lm_infer::tune_cache(&run, file, cache.window, p.prefix)?;
            cache.theta = t.best.a;
            cache.lambda = t.best.b;
            if json {
                report.insert(
                    "tuned_cache".into(),
                    tuning_json(&t, file, "theta", "lambda"),
                );
            } else {
                writeln!(
                    out,
                    "tuned cache on \"{}\" ({} tokens): θ {}  λ {}  perplexity {:.2} (plain {:.2}){}",
                    file.display(),
                    t.tokens,
                    t.best.a,
                    t.best.b,
                    t.best.figures.ppl,
                    t.plain.ppl,
                    edge_note(&t)
                )?;
            }
        }
        let stats = match &p.stats {
            Some(file) => Some(lstm_lm_infer::gradient_stats_file(&run, file, p.prefix)?),
            None => None,
        };
        if let (Some(file), Some(dynamic)) = (&p.tune_dynamic, p.dynamic.as_mut()) {
            let t = lstm_lm_infer::tune_dynamic(
                &run,
                file,
                dynamic.rule,
                stats.as_ref(),
                p.prefix,
                |point| {
                    eprintln!(
                        "tune-dynamic lr {} decay {}: perplexity {:.2}",
                        point.a, point.b, point.figures.ppl
                    )
                },
            )?;
            dynamic.lr = t.best.a;
            dynamic.decay = t.best.b;
            if json {
                report.insert("tuned_dynamic".into(), tuning_json(&t, file, "lr", "decay"));
            } else {
                writeln!(
                    out,
                    "tuned dynamic evaluation ({}) on \"{}\" ({} tokens): lr {}  decay {}  perplexity {:.2} (plain {:.2}){}",
                    dynamic.rule.name(),
                    file.display(),
                    t.tokens,
                    t.best.a,
                    t.best.b,
                    t.best.figures.ppl,
                    t.plain.ppl,
                    edge_note(&t)
                )?;
            }
        }
        let r = lstm_lm_infer::evaluate_adapted(
            &run,
            &data,
            p.cache,
            p.dynamic,
            stats.as_ref(),
            p.prefix,
        )?;
        if json {
            report.insert("tokens".into(), json!(r.tokens));
            report.insert("plain".into(), figures_json(&r.plain));
            if let (Some(c), Some(f)) = (&r.cache_config, &r.cache) {
                report.insert(
                    "cache".into(),
                    json!({"window": c.window, "theta": c.theta, "lambda": c.lambda, "loss": f.loss, "ppl": f.ppl}),
                );
            }
            if let (Some(d), Some(f)) = (&r.dynamic_config, &r.dynamic) {
                report.insert(
                    "dynamic".into(),
                    json!({"rule": d.rule.name(), "lr": d.lr, "decay": d.decay, "loss": f.loss, "ppl": f.ppl}),
                );
            }
            if let Some(f) = &r.dynamic_cache {
                report.insert("dynamic_cache".into(), figures_json(f));
            }
            writeln!(out, "{}", serde_json::Value::Object(report))?;
        } else {
            writeln!(
                out,
                "plain            loss {:.4}  perplexity {:.2}  tokens {}",
                r.plain.loss, r.plain.ppl, r.tokens
            )?;
            if let (Some(c), Some(f)) = (&r.cache_config, &r.cache) {
                writeln!(
                    out,
                    "cache            loss {:.4}  perplexity {:.2}  (plain {:.2}; window {} θ {} λ {})",
                    f.loss, f.ppl, r.plain.ppl, c.window, c.theta, c.lambda
                )?;
            }
            if let (Some(d), Some(f)) = (&r.dynamic_config, &r.dynamic) {
                writeln!(
                    out,
                    "dynamic          loss {:.4}  perplexity {:.2}  (plain {:.2}; {} lr {} decay {})",
                    f.loss,
                    f.ppl,
                    r.plain.ppl,
                    d.rule.name(),
                    d.lr,
                    d.decay
                )?;
            }
            if let Some(f) = &r.dynamic_cache {
                writeln!(
                    out,
                    "dynamic + cache  loss {:.4}  perplexity {:.2}  (plain {:.2})",
                    f.loss, f.ppl, r.plain.ppl
                )?;
            }
        }
        out.flush()?;
        Ok(())
    })
}
