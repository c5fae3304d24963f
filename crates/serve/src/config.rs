//! What a server is started with: its models, address, limits and token.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One model the server offers, by the name requests give in `model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name clients ask for (`model` in a request, `id` in `/v1/models`).
    pub name: String,
    /// The run folder written by `lstm-lm train`.
    pub run: PathBuf,
}

impl ModelSpec {
    /// Parses `NAME=RUN`, or `RUN` alone (then the folder's last component is the name).
    pub fn parse(spec: &str) -> Result<Self, String> {
        if let Some((name, run)) = spec.split_once('=')
            && !name.is_empty()
            && !name.contains(['/', '\\'])
        {
            if run.is_empty() {
                return Err(format!("--model {spec}: give a run folder after '='"));
            }
            return Ok(ModelSpec {
                name: name.to_string(),
                run: PathBuf::from(run),
            });
        }
        let run = PathBuf::from(spec);
        let name = run
            .canonicalize()
            .unwrap_or_else(|_| run.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("--model {spec}: give NAME=RUN, the folder has no name"))?;
        Ok(ModelSpec { name, run })
    }
}

/// Bounds on what one request, and all of them together, may ask for. Each breach is answered
/// with a 4xx JSON error in the OpenAI shape; nothing else is disturbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes (413 above). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most tokens in one prompt or text to score or embed (400 above). Default 2048.
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a completion may ask for (400 above). Default 1024.
    pub max_tokens: usize,
    /// Largest `n` (choices per prompt) (400 above). Default 8.
    pub max_n: usize,
    /// Most prompts (or texts) in one request (400 above). Default 64.
    pub max_inputs: usize,
    /// Most generation streams (prompts × n) admitted at once, running or queued, over all
    /// models (429 above). Default 256.
    pub max_streams: usize,
    /// Longest a request's head may take to arrive (counted from the connection's start, or
    /// from the previous response on a kept-alive connection; the connection is then closed),
    /// and then, once more, its body (408). Default 30 s: a client that opens connections and
    /// trickles or withholds its requests holds them no longer.
    pub request_timeout: Duration,
    /// Longest a streamed completion may stay paused because its client reads nothing (the
    /// stream is then ended with an error event and its place freed). Default 60 s.
    pub stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_prompt_tokens: 2048,
            max_tokens: 1024,
            max_n: 8,
            max_inputs: 64,
            max_streams: 256,
            request_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The models, the first one the default when a request names none.
    pub models: Vec<ModelSpec>,
    /// Address to listen on. Default 127.0.0.1:8080 (loopback only).
    pub listen: SocketAddr,
    /// Streams one recurrent step runs together, per model. Default 64.
    pub max_batch: usize,
    /// Most connections open at once; more clients wait in the listen backlog until one
    /// closes. Default 512 (within the usual limit of 1,024 open files).
    pub max_connections: usize,
    /// Request limits.
    pub limits: Limits,
    /// When set, every request but `/` and `/health` needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// After the shutdown signal, how long the requests in flight get to finish before the
    /// server stops without them. Default 30 s.
    pub drain_timeout: Duration,
}

impl ServeConfig {
    /// The default address: loopback, port 8080.
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    /// The default [`max_batch`](Self::max_batch).
    pub const DEFAULT_MAX_BATCH: usize = 64;
    /// The default [`max_connections`](Self::max_connections).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
    /// The default [`drain_timeout`](Self::drain_timeout).
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration for `models` with every default.
    pub fn new(models: Vec<ModelSpec>) -> Self {
        ServeConfig {
            models,
            listen: Self::DEFAULT_LISTEN.parse().expect("a valid address"),
            max_batch: Self::DEFAULT_MAX_BATCH,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            limits: Limits::default(),
            token: None,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_take_a_name_or_the_folder_name() {
        let named = ModelSpec::parse("small=runs/a").unwrap();
        assert_eq!(named.name, "small");
        assert_eq!(named.run, PathBuf::from("runs/a"));
        let plain = ModelSpec::parse("runs/sample").unwrap();
        assert_eq!(plain.name, "sample");
        assert!(ModelSpec::parse("x=").is_err());
    }
}
