//! `lstm-lm serve`: trained runs behind an OpenAI-shaped HTTP API and a page (the server itself
//! is the `lstm-lm-serve` crate).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use lstm_lm_serve::{Limits, ModelSpec, ServeConfig, Stopped};

use super::device_args::DeviceArgs;

/// Serve trained runs over HTTP: OpenAI completions and embeddings, scoring, metrics, a page.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm serve --model runs/sample
  lstm-lm serve --model small=runs/a --model big=runs/b --listen 127.0.0.1:9000 --token-file token.txt
Then open http://127.0.0.1:8080/ or call POST /v1/completions with an OpenAI client.")]
pub struct ServeArgs {
    /// A run folder to serve, as RUN (named after its folder) or NAME=RUN; repeat for more
    /// models (the first is the default).
    #[arg(long = "model", value_name = "[NAME=]RUN", required = true)]
    pub models: Vec<String>,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = ServeConfig::DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Generation streams one recurrent step runs together, per model.
    #[arg(long, default_value_t = ServeConfig::DEFAULT_MAX_BATCH, value_name = "N")]
    pub max_batch: usize,
    /// Most connections open at once (more clients wait until one closes).
    #[arg(long, default_value_t = ServeConfig::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Require `Authorization: Bearer TOKEN` on every route but / and /health; the token is
    /// the file's first line.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Most tokens in a prompt or a text to score or embed.
    #[arg(long, default_value_t = Limits::default().max_prompt_tokens, value_name = "N")]
    pub max_prompt_tokens: usize,
    /// Largest max_tokens a completion may ask for.
    #[arg(long, default_value_t = Limits::default().max_tokens, value_name = "N")]
    pub max_tokens: usize,
    /// Largest n (choices per prompt).
    #[arg(long, default_value_t = Limits::default().max_n, value_name = "N")]
    pub max_n: usize,
    /// Most generation streams at once, running or queued (more are answered 429).
    #[arg(long, default_value_t = Limits::default().max_streams, value_name = "N")]
    pub max_streams: usize,
    /// Seconds a request's head, and then its body, may take to arrive (an idle connection is
    /// closed after as long; a late body gets 408).
    #[arg(long, default_value_t = Limits::default().request_timeout.as_secs_f64(), value_name = "SECS")]
    pub request_timeout: f64,
    /// Seconds a streamed completion may wait for a client that reads nothing before it is
    /// ended (it pauses once 256 events are unread).
    #[arg(long, default_value_t = Limits::default().stall_timeout.as_secs_f64(), value_name = "SECS")]
    pub stall_timeout: f64,
    /// On Ctrl-C or SIGTERM, seconds the requests in flight get to finish before the server
    /// stops without them (a second Ctrl-C or SIGTERM stops it at once).
    #[arg(long, default_value_t = ServeConfig::DEFAULT_DRAIN_TIMEOUT.as_secs_f64(), value_name = "SECS")]
    pub drain_timeout: f64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

fn read_token(path: &PathBuf) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file \"{}\"", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!(
            "--token-file \"{}\" is empty: put the token on its first line",
            path.display()
        );
    }
    Ok(token)
}

/// `SECS` of `flag` as a duration: finite, not negative.
fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{flag} {secs}: give a number of seconds, 0 or more"))
}

/// `SECS` of `flag` as a duration above zero.
fn positive_seconds(flag: &str, secs: f64) -> Result<Duration> {
    let d = seconds(flag, secs)?;
    if d.is_zero() {
        bail!("{flag} {secs}: give a number of seconds above 0");
    }
    Ok(d)
}

/// Runs the server until Ctrl-C or SIGTERM, then drains the requests in flight.
pub fn run(args: ServeArgs) -> Result<()> {
    let models = args
        .models
        .iter()
        .map(|m| ModelSpec::parse(m).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    if args.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let mut config = ServeConfig::new(models);
    config.listen = args.listen;
    config.max_batch = args.max_batch;
    config.max_connections = args.max_connections;
    config.limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_prompt_tokens: args.max_prompt_tokens,
        max_tokens: args.max_tokens,
        max_n: args.max_n,
        max_streams: args.max_streams,
        request_timeout: positive_seconds("--request-timeout", args.request_timeout)?,
        stall_timeout: positive_seconds("--stall-timeout", args.stall_timeout)?,
        ..Limits::default()
    };
    config.drain_timeout = seconds("--drain-timeout", args.drain_timeout)?;
    config.token = args.token_file.as_ref().map(read_token).transpose()?;
    let device = args.device.device()?;
    let runs = lstm_lm_serve::load_models(&config, &device)?;
    let names: Vec<String> = runs.iter().map(|(n, _)| n.clone()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        // Listening for stop signals starts before the address is printed: whoever reads that
        // line may stop the server at once.
        let mut signals =
            lstm_lm_serve::StopSignals::new().context("cannot listen for Ctrl-C and SIGTERM")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("--listen {}: cannot listen there", config.listen))?;
        let addr = listener.local_addr().context("the listening address")?;
        println!(
            "lstm-lm serve: http://{addr}/ (models: {}){}",
            names.join(", "),
            if config.token.is_some() { ", bearer token required" } else { "" }
        );
        if !addr.ip().is_loopback() && config.token.is_none() {
            eprintln!(
                "warning: listening on {addr}, beyond this machine, without --token-file: anyone who can reach it can use the models"
            );
        }
        let drain = config.drain_timeout.as_secs_f64();
        let (first, on_first) = tokio::sync::oneshot::channel::<()>();
        let (second, on_second) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            signals.next().await;
            println!(
                "lstm-lm serve: stopping; finishing the requests in flight (at most {drain} s; Ctrl-C again to stop now)"
            );
            let _ = first.send(());
            signals.next().await;
            let _ = second.send(());
        });
        let shutdown = async move {
            let _ = on_first.await;
        };
        let second_signal = async move {
            if on_second.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            stopped = lstm_lm_serve::serve(listener, &config, runs, shutdown) => match stopped? {
                Stopped::Drained => println!("lstm-lm serve: stopped"),
                Stopped::DrainTimedOut => println!(
                    "lstm-lm serve: stopped; requests still in flight after {drain} s were cut off"
                ),
            },
            () = second_signal => {
                println!("lstm-lm serve: stopped at a second signal; requests in flight were cut off");
            }
        }
        anyhow::Ok(())
    });
    // Connections cut off above hold tasks that end when the runtime stops, and a score or
    // embedding may still run on a blocking thread: do not wait on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}
