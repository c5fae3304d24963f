//! `cargo xtask load-test`: `lstm-lm serve` on loopback under 1, 4, 16 and 64 concurrent
//! streaming clients. Each client sends a fixed number of streamed completions of a fixed
//! length (no new request after a fixed duration); every request must end with all its tokens
//! and `[DONE]`. Prints tokens/s and latency percentiles per level, and fails on any error, any
//! lost request, or a p99 latency above the bound.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use lstm_lm_model::BackendKind;
use lstm_lm_serve::{ModelSpec, ServeConfig};
use lstm_lm_train::{DataFiles, LoadedRun, TrainOptions, TrainOutcome, TrainSettings};

/// The corpus of the run trained when no `--model` is given (the seed recipe's shape: a small
/// word-level LSTM).
const CORPUS_LINES: [&str; 6] = [
    "the keeper climbed the tower at dusk",
    "the lamp burned over the cold sea",
    "the keeper trimmed the wick at dawn",
    "ships passed the rocks in the dark",
    "the gulls slept on the cold rocks",
    "a storm came over the sea at night",
];

/// Flags of `cargo xtask load-test`.
#[derive(Debug, Args)]
pub struct LoadTestArgs {
    /// Run folder to serve (default: train the seed preset for one epoch on a small corpus, in a
    /// temporary folder).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Concurrent streaming clients, one level after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub concurrency: Vec<usize>,
    /// Requests each client sends per level.
    #[arg(long, default_value_t = 4)]
    pub requests: usize,
    /// Tokens per request (`max_tokens`).
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// No client starts a new request after this many seconds of a level.
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// Fail when a level's p99 request latency is above this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_p99_seconds: f64,
    /// CPU threads of the model.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// What one request saw.
struct Outcome {
    tokens: usize,
    latency: Duration,
    first_token: Duration,
}

fn train_default(dir: &std::path::Path) -> Result<PathBuf> {
    let corpus = dir.join("corpus.txt");
    let text: String = (0..40)
        .flat_map(|_| CORPUS_LINES.iter().map(|l| format!("{l}\n")))
        .collect();
    std::fs::write(&corpus, text)?;
    let mut settings = TrainSettings::preset("seed")?;
    settings.train.epochs = 1;
    let out = dir.join("run");
    let outcome = lstm_lm_train::train(TrainOptions::new(
        settings,
        DataFiles::train_only(corpus),
        &out,
    ))?;
    if !matches!(outcome, TrainOutcome::Finished(_)) {
        bail!("training the load-test model did not finish");
    }
    Ok(out)
}

/// One streamed completion; an error for anything but `tokens` tokens and `[DONE]`.
fn one_request(agent: &ureq::Agent, url: &str, tokens: usize, seed: u64) -> Result<Outcome> {
    let body = serde_json::json!({
        "prompt": "the keeper", "max_tokens": tokens, "stream": true, "seed": seed, "logprobs": 0,
    });
    let start = Instant::now();
    let resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .context("send")?;
    let status = resp.status().as_u16();
    let mut reader = BufReader::new(resp.into_body().into_reader());
    if status != 200 {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut text);
        bail!("status {status}: {text}");
    }
    let mut got = 0;
    let mut first = None;
    let mut done = false;
    let mut line = String::new();
    while reader.read_line(&mut line).context("read the stream")? > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            if data == "[DONE]" {
                done = true;
            } else {
                let chunk: serde_json::Value = serde_json::from_str(data)?;
                if chunk.get("error").is_some() {
                    bail!("error event: {data}");
                }
                let n = chunk["choices"][0]["logprobs"]["tokens"]
                    .as_array()
                    .map_or(0, Vec::len);
                if n > 0 && first.is_none() {
                    first = Some(start.elapsed());
                }
                got += n;
            }
        }
        line.clear();
    }
    if !done || got != tokens {
        bail!("lost: {got} of {tokens} tokens, [DONE] {done}");
    }
    Ok(Outcome {
        tokens: got,
        latency: start.elapsed(),
        first_token: first.unwrap_or_default(),
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One level: `clients` threads, each sending its requests one after the other.
fn level(
    addr: SocketAddr,
    clients: usize,
    args: &LoadTestArgs,
) -> (Vec<Outcome>, Vec<String>, Duration, usize) {
    let url = format!("http://{addr}/v1/completions");
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let start = Instant::now();
    let results: Vec<(Vec<Outcome>, Vec<String>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let url = url.clone();
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .proxy(None)
                        .timeout_global(Some(Duration::from_secs(args.max_seconds + 120)))
                        .build()
                        .new_agent();
                    let (mut ok, mut errors, mut sent) = (Vec::new(), Vec::new(), 0);
                    for r in 0..args.requests {
                        if Instant::now() > deadline {
                            break;
                        }
                        sent += 1;
                        match one_request(&agent, &url, args.tokens, (c * 1000 + r) as u64) {
                            Ok(o) => ok.push(o),
                            Err(e) => errors.push(format!("{e:#}")),
                        }
                    }
                    (ok, errors, sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), vec!["client panicked".into()], 0))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    let mut sent = 0;
    for (o, e, s) in results {
        ok.extend(o);
        errors.extend(e);
        sent += s;
    }
    (ok, errors, elapsed, sent)
}

/// Runs the load test.
pub fn run(args: &LoadTestArgs) -> Result<()> {
    lstm_lm_train::setup_threads(args.threads)?;
    let tmp = tempfile::tempdir()?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => {
            println!("load-test: training the seed preset for one epoch on a small corpus");
            train_default(tmp.path())?
        }
    };
    let device = lstm_lm_model::device_for(BackendKind::Flex, 0)?;
    let run =
        LoadedRun::load(&model, device).with_context(|| format!("--model {}", model.display()))?;
    let params = run.model.hidden_size();
    let vocab = run.model.vocab_size();
    let mut config = ServeConfig::new(vec![ModelSpec {
        name: "load".into(),
        run: model.clone(),
    }]);
    config.listen = "127.0.0.1:0".parse()?;
    config.max_batch = args.concurrency.iter().copied().max().unwrap_or(1).max(1);
    config.limits.max_streams = config.max_batch.max(256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(config.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let config = config.clone();
        runtime.spawn(async move {
            lstm_lm_serve::serve(listener, &config, vec![("load".into(), run)], async {
                let _ = stopped.await;
            })
            .await
        })
    };
    println!(
        "load-test: {} (hidden {params}, vocabulary {vocab}) on http://{addr}, {} requests of {} tokens per client, streamed",
        model.display(),
        args.requests,
        args.tokens
    );
    println!(
        "| clients | requests | errors | tokens | tokens/s | vs 1 client | p50 latency | p99 latency | p50 first token |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    let mut base = None;
    for &clients in &args.concurrency {
        let (mut ok, errors, elapsed, sent) = level(addr, clients, args);
        let tokens: usize = ok.iter().map(|o| o.tokens).sum();
        let rate = tokens as f64 / elapsed.as_secs_f64();
        let base_rate = *base.get_or_insert(rate);
        ok.sort_by_key(|o| o.latency);
        let lat: Vec<Duration> = ok.iter().map(|o| o.latency).collect();
        let mut first: Vec<Duration> = ok.iter().map(|o| o.first_token).collect();
        first.sort();
        let p99 = percentile(&lat, 0.99);
        println!(
            "| {clients} | {sent} | {} | {tokens} | {rate:.0} | {:.1}x | {:.3} s | {:.3} s | {:.3} s |",
            errors.len(),
            rate / base_rate,
            percentile(&lat, 0.5).as_secs_f64(),
            p99.as_secs_f64(),
            percentile(&first, 0.5).as_secs_f64(),
        );
        if ok.len() + errors.len() != sent {
            failures.push(format!(
                "{clients} clients: {} of {sent} requests lost",
                sent - ok.len() - errors.len()
            ));
        }
        if let Some(e) = errors.first() {
            failures.push(format!(
                "{clients} clients: {} errors, the first: {e}",
                errors.len()
            ));
        }
        if p99.as_secs_f64() > args.max_p99_seconds {
            failures.push(format!(
                "{clients} clients: p99 latency {:.2} s is above --max-p99-seconds {}",
                p99.as_secs_f64(),
                args.max_p99_seconds
            ));
        }
    }
    let _ = stop.send(());
    let stopped = runtime
        .block_on(server)
        .context("the server task")?
        .context("the server")?;
    if stopped != lstm_lm_serve::Stopped::Drained {
        failures.push(format!(
            "the server still had requests in flight {} s after the stop",
            config.drain_timeout.as_secs()
        ));
    }
    if !failures.is_empty() {
        bail!("load test failed: {}", failures.join("; "));
    }
    println!("load-test: no request lost, no error");
    Ok(())
}
