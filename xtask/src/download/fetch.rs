//! Fetching one object (over HTTP or from a local folder) into a `.part`
//! file, resuming an earlier partial download with an HTTP Range request.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};

use super::files::{bytes, remove_quietly, show, source_note_path};

/// The User-Agent sent with every request (some mirrors reject library
/// defaults).
pub const USER_AGENT: &str = "lstm-lm-xtask/0.1";

/// How many times one URL is tried when the connection drops mid-body
/// (each retry resumes where the previous one stopped).
const MAX_ATTEMPTS: u32 = 4;

/// Where to get an object from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Url(String),
    Local(PathBuf),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Url(u) => f.write_str(u),
            Location::Local(p) => f.write_str(&show(p)),
        }
    }
}

impl Location {
    /// A stable string identifying the location, stored next to `.part` files.
    fn key(&self) -> String {
        match self {
            Location::Url(u) => u.clone(),
            Location::Local(p) => format!("file:{}", p.display()),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// This location did not work; the next candidate may.
    Candidate(String),
    /// A local problem (cannot write the destination): stop.
    Fatal(anyhow::Error),
}

fn fatal(e: io::Error, what: &str, path: &Path) -> FetchError {
    FetchError::Fatal(anyhow!("cannot {what} {}: {e}", show(path)))
}

/// Fetches `loc` into `part`. A `.part` left by an earlier attempt from the
/// same location is resumed (HTTP only). Returns once `part` holds the whole
/// object as sent; the caller verifies it.
pub(crate) fn fetch(
    loc: &Location,
    part: &Path,
    expected_size: Option<u64>,
) -> Result<(), FetchError> {
    match loc {
        Location::Url(url) => fetch_http(loc, url, part, expected_size),
        Location::Local(path) => fetch_local(loc, path, part),
    }
}

fn fetch_local(loc: &Location, src: &Path, part: &Path) -> Result<(), FetchError> {
    let meta = match fs::metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FetchError::Candidate(format!("{loc}: not found")));
        }
        Err(e) => return Err(FetchError::Candidate(format!("{loc}: {e}"))),
    };
    if !meta.is_file() {
        return Err(FetchError::Candidate(format!("{loc}: not a regular file")));
    }
    let mut input = File::open(src).map_err(|e| FetchError::Candidate(format!("{loc}: {e}")))?;
    remove_quietly(part);
    let mut out = File::create(part).map_err(|e| fatal(e, "create", part))?;
    log(&format!("  copy {loc}"));
    let mut progress = Progress::start(&loc.to_string(), Some(meta.len()), 0);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                progress.abandon();
                remove_quietly(part);
                return Err(FetchError::Candidate(format!("{loc}: read error: {e}")));
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| fatal(e, "write", part))?;
        progress.inc(n as u64);
    }
    out.flush().map_err(|e| fatal(e, "write", part))?;
    progress.finish();
    Ok(())
}

/// Bytes already in `part` that may be resumed from `loc` (0 when there is
/// no such file, or it came from elsewhere, in which case it is removed).
fn resumable_len(loc: &Location, part: &Path) -> u64 {
    let Ok(meta) = fs::metadata(part) else {
        let _ = fs::remove_file(source_note_path(part));
        return 0;
    };
    let same_source = fs::read_to_string(source_note_path(part))
        .map(|s| s.trim() == loc.key())
        .unwrap_or(false);
    if same_source && meta.is_file() {
        meta.len()
    } else {
        remove_quietly(part);
        0
    }
}

fn agent_for(url: &str) -> ureq::Agent {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| {
        rest.starts_with(h) && matches!(rest[h.len()..].chars().next(), None | Some(':' | '/'))
    });
    let mut config = ureq::Agent::config_builder()
        .user_agent(USER_AGENT)
        // Byte ranges refer to the stored bytes: ask for them as they are.
        .accept_encoding("identity")
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)));
    if loopback {
        // Never route loopback traffic through a proxy from the environment.
        config = config.proxy(None);
    }
    config.build().new_agent()
}

/// Parses `Content-Range: bytes START-END/TOTAL` into (START, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

fn fetch_http(
    loc: &Location,
    url: &str,
    part: &Path,
    expected_size: Option<u64>,
) -> Result<(), FetchError> {
    let agent = agent_for(url);
    for attempt in 1..=MAX_ATTEMPTS {
        let mut have = resumable_len(loc, part);
        if let Some(size) = expected_size {
            if have == size {
                log(&format!("  {} is already complete; verifying", show(part)));
                return Ok(());
            }
            if have > size {
                remove_quietly(part);
                have = 0;
            }
        }
        let mut req = agent.get(url);
        if have > 0 {
            log(&format!("  resuming {url} from byte {have}"));
            req = req.header("Range", format!("bytes={have}-"));
        } else {
            log(&format!("  GET {url}"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => return Err(FetchError::Candidate(format!("{url}: {}", describe(&e)))),
        };
        let status = resp.status();
        let body_len = resp.body().content_length();
        let append = match status.as_u16() {
            206 if have > 0 => {
                let cr = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                match cr {
                    Some((start, _)) if start == have => true,
                    _ => {
                        log(
                            "  the server answered the Range request with another range; restarting from the beginning",
                        );
                        remove_quietly(part);
                        continue;
                    }
                }
            }
            200 => {
                if have > 0 {
                    log("  the server ignored the Range request; restarting from the beginning");
                }
                false
            }
            416 if have > 0 => {
                // `Content-Range: bytes */TOTAL`: nothing left to send when we
                // already have TOTAL bytes (a run stopped before verifying).
                let total = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().strip_prefix("bytes */"))
                    .and_then(|t| t.trim().parse::<u64>().ok());
                if total == Some(have) {
                    log(&format!("  {} is already complete; verifying", show(part)));
                    return Ok(());
                }
                log("  the server refused to resume (HTTP 416); restarting from the beginning");
                remove_quietly(part);
                continue;
            }
            _ => {
                let reason = status.canonical_reason().unwrap_or("");
                return Err(FetchError::Candidate(
                    format!("{url}: HTTP {} {reason}", status.as_u16())
                        .trim_end()
                        .to_owned(),
                ));
            }
        };
        let start = if append { have } else { 0 };
        let total = body_len.map(|l| l + start);
        if let (Some(exp), Some(t)) = (expected_size, total)
            && exp != t
        {
            remove_quietly(part);
            return Err(FetchError::Candidate(format!(
                "{url}: the server reports {t} bytes, the manifest expects {exp}"
            )));
        }
        fs::write(source_note_path(part), loc.key())
            .map_err(|e| fatal(e, "write", &source_note_path(part)))?;
        let mut out = if append {
            OpenOptions::new().append(true).open(part)
        } else {
            File::create(part)
        }
        .map_err(|e| fatal(e, "create", part))?;

        let mut reader = resp.into_body().into_reader();
        let mut progress = Progress::start(url, total, start);
        let mut buf = vec![0u8; 1 << 16];
        let mut pos = start;
        let result = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    out.write_all(&buf[..n])
                        .map_err(|e| fatal(e, "write", part))?;
                    pos += n as u64;
                    progress.inc(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        out.flush().map_err(|e| fatal(e, "write", part))?;
        drop(out);
        match result {
            Ok(()) => {
                progress.finish();
                return Ok(());
            }
            Err(e) => {
                progress.abandon();
                let progressed = pos > start;
                if progressed && attempt < MAX_ATTEMPTS {
                    log(&format!(
                        "  connection to {url} dropped after {pos} bytes ({e}); resuming"
                    ));
                    continue;
                }
                return Err(FetchError::Candidate(format!(
                    "{url}: transfer interrupted after {pos} bytes ({e}); the partial file {} is kept and resumed by the next run",
                    show(part)
                )));
            }
        }
    }
    Err(FetchError::Candidate(format!(
        "{url}: gave up after {MAX_ATTEMPTS} attempts"
    )))
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}

/// Writes a progress/log line to stderr.
pub(crate) fn log(msg: &str) {
    eprintln!("{msg}");
}

/// A progress bar on a terminal, periodic log lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: Option<u64>,
    pos: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn start(label: &str, total: Option<u64>, pos: u64) -> Progress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "  {bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "  {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(pos);
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            label: label.to_owned(),
            total,
            pos,
            started: now,
            last_line: now,
        }
    }

    fn inc(&mut self, n: u64) {
        self.pos += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.pos);
        } else if self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            match self.total {
                Some(t) if t > 0 => log(&format!(
                    "  {}: {} / {} ({}%)",
                    self.label,
                    bytes(self.pos),
                    bytes(t),
                    self.pos * 100 / t
                )),
                _ => log(&format!("  {}: {}", self.label, bytes(self.pos))),
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        log(&format!(
            "  got {} in {:.1} s",
            bytes(self.pos),
            self.started.elapsed().as_secs_f64()
        ));
    }

    fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
