//! Counters for `GET /metrics`, in the Prometheus text format: requests by route and status,
//! request latency and generation-stream duration histograms, tokens generated, tokens per
//! second over the last seconds, queue depth and streams running.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Seconds the tokens-per-second gauge averages over.
const RATE_WINDOW_SECS: u64 = 5;

/// A cumulative histogram of durations.
#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, &b) in self.counts.iter_mut().zip(&BUCKETS) {
            if secs <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(&BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// One scheduler's part of a gauge summed over all models (streams queued, running, paused):
/// setting it moves the shared gauge by the change since this part last set it, so schedulers
/// of several models add up instead of overwriting each other.
#[derive(Debug, Default)]
pub struct GaugePart {
    last: usize,
}

impl GaugePart {
    /// Makes this part of `gauge` `value`.
    pub fn set(&mut self, gauge: &AtomicUsize, value: usize) {
        if value >= self.last {
            gauge.fetch_add(value - self.last, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(self.last - value, Ordering::Relaxed);
        }
        self.last = value;
    }
}

/// The server's counters, shared by the handlers and the schedulers.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    streams: Mutex<Histogram>,
    tokens: AtomicU64,
    /// Tokens generated per second of uptime, for the last few seconds: (second, count).
    recent: Mutex<Vec<(u64, u64)>>,
    /// Streams waiting for a place in a batch, over all models (set through [`GaugePart`]).
    pub queued: AtomicUsize,
    /// Streams in a batch, over all models (set through [`GaugePart`]).
    pub running: AtomicUsize,
    /// Streams in a batch that sit out its steps until their client reads what it was sent,
    /// over all models (set through [`GaugePart`]).
    pub paused: AtomicUsize,
    /// Streams admitted (queued or running), for the concurrency limit.
    pub admitted: AtomicUsize,
    /// Requests received and not yet answered with a response head.
    pub in_progress: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            requests: Mutex::default(),
            latency: Mutex::default(),
            streams: Mutex::default(),
            tokens: AtomicU64::new(0),
            recent: Mutex::default(),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            paused: AtomicUsize::new(0),
            admitted: AtomicUsize::new(0),
            in_progress: AtomicUsize::new(0),
        }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((route.to_string(), status)).or_default() += 1;
        drop(r);
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.entry(route.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Records `n` generated tokens.
    pub fn tokens(&self, n: u64) {
        self.tokens.fetch_add(n, Ordering::Relaxed);
        let second = self.started.elapsed().as_secs();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        match recent.last_mut() {
            Some((s, c)) if *s == second => *c += n,
            _ => recent.push((second, n)),
        }
        recent.retain(|(s, _)| s + RATE_WINDOW_SECS + 1 > second);
    }

    /// Records a finished generation stream, from admission to its last token.
    pub fn stream_done(&self, elapsed: Duration) {
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        s.observe(elapsed.as_secs_f64());
    }

    /// Tokens per second over the last 5 whole seconds.
    pub fn tokens_per_second(&self) -> f64 {
        let now = self.started.elapsed().as_secs();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let from = now.saturating_sub(RATE_WINDOW_SECS);
        let total: u64 = recent
            .iter()
            .filter(|(s, _)| *s >= from && *s < now)
            .map(|(_, c)| c)
            .sum();
        let span = now.clamp(1, RATE_WINDOW_SECS);
        total as f64 / span as f64
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP lstm_lm_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE lstm_lm_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "lstm_lm_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP lstm_lm_request_seconds Time from a request to its response head.\n");
        out.push_str("# TYPE lstm_lm_request_seconds histogram\n");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            h.write(
                &mut out,
                "lstm_lm_request_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str(
            "# HELP lstm_lm_stream_seconds Time from a generation stream's admission to its end.\n",
        );
        out.push_str("# TYPE lstm_lm_stream_seconds histogram\n");
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(&mut out, "lstm_lm_stream_seconds", "");
        let gauges = [
            (
                "lstm_lm_generated_tokens_total",
                "counter",
                "Tokens generated.",
                self.tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "lstm_lm_tokens_per_second",
                "gauge",
                "Tokens generated per second over the last 5 seconds.",
                self.tokens_per_second(),
            ),
            (
                "lstm_lm_requests_in_progress",
                "gauge",
                "Requests received and not yet answered (a streamed answer counts until its head; its streams count in running_streams).",
                self.in_progress.load(Ordering::Relaxed) as f64,
            ),
            (
                "lstm_lm_queue_depth",
                "gauge",
                "Generation streams waiting for a place in a batch.",
                self.queued.load(Ordering::Relaxed) as f64,
            ),
            (
                "lstm_lm_running_streams",
                "gauge",
                "Generation streams in a batch.",
                self.running.load(Ordering::Relaxed) as f64,
            ),
            (
                "lstm_lm_paused_streams",
                "gauge",
                "Generation streams paused until their client reads what it was sent.",
                self.paused.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_of_a_gauge_add_up() {
        let gauge = AtomicUsize::new(0);
        let (mut a, mut b) = (GaugePart::default(), GaugePart::default());
        a.set(&gauge, 3);
        b.set(&gauge, 2);
        assert_eq!(gauge.load(Ordering::Relaxed), 5);
        a.set(&gauge, 1);
        assert_eq!(gauge.load(Ordering::Relaxed), 3);
        b.set(&gauge, 0);
        a.set(&gauge, 0);
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_exposition_has_every_family() {
        let m = Metrics::default();
        m.request("/v1/completions", 200, Duration::from_millis(30));
        m.tokens(12);
        m.stream_done(Duration::from_millis(80));
        let text = m.render();
        assert!(
            text.contains("lstm_lm_requests_total{route=\"/v1/completions\",status=\"200\"} 1")
        );
        assert!(
            text.contains(
                "lstm_lm_request_seconds_bucket{route=\"/v1/completions\",le=\"0.05\"} 1"
            )
        );
        assert!(text.contains("lstm_lm_generated_tokens_total 12"));
        assert!(text.contains("lstm_lm_stream_seconds_count 1"));
        assert!(text.contains("lstm_lm_queue_depth 0"));
        assert!(text.contains("lstm_lm_paused_streams 0"));
    }
}
