//! End-to-end tests of `lstm-lm serve` on loopback: each endpoint, streaming, the errors of
//! bad requests, the token, the stream limit, a disconnect, and SIGTERM draining.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/http.rs"]
mod http;
#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, lstm_lm, train_tiny_run};

/// Trains the tiny run (2 epochs of a 16-unit LSTM on the five-line corpus) into `dir/run`.
fn trained_run(dir: &Path) -> PathBuf {
    train_tiny_run(dir, CORPUS, &[])
}

/// A running `lstm-lm serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `serve --model RUN --listen 127.0.0.1:0 EXTRA` in `dir` and reads its address.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
            .args([
                "serve",
                "--model",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "2",
            ])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OpenAI error object of a reply, checking its shape.
fn error_of(r: &http::Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    let e = body["error"].clone();
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string() && e.get("code").is_some(), "{body}");
    e
}

fn completion(addr: SocketAddr, body: Value) -> Value {
    let r = http::post(addr, "/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn every_endpoint_answers_in_the_openai_shape() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let s = Server::start(tmp.path(), &[]);
    let health = http::get(s.addr, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let models = http::get(s.addr, "/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "run");

    let body = json!({"model": "run", "prompt": "the keeper", "max_tokens": 6, "n": 2,
                      "seed": 5, "logprobs": 2, "temperature": 0.9});
    let a = completion(s.addr, body.clone());
    assert_eq!(a["object"], "text_completion");
    let choices = a["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "length");
        let lp = &c["logprobs"];
        assert_eq!(lp["tokens"].as_array().unwrap().len(), 6, "{c}");
        for v in lp["token_logprobs"].as_array().unwrap() {
            let v = v.as_f64().unwrap();
            assert!(v.is_finite() && v <= 0.0, "{v}");
        }
        assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    }
    assert_eq!(a["usage"]["completion_tokens"], 12);
    assert_eq!(a["usage"]["prompt_tokens"], 4);
    // The same seed gives the same text (the batch around a stream may differ from run to run,
    // which can move the logits in their last bits, so only the texts are compared); greedy
    // decoding ignores the seed.
    let b = completion(s.addr, body);
    for i in 0..2 {
        assert_eq!(a["choices"][i]["text"], b["choices"][i]["text"]);
    }
    let greedy = |seed: u64| {
        completion(
            s.addr,
            json!({"prompt": "the keeper", "max_tokens": 8, "temperature": 0, "seed": seed}),
        )["choices"][0]["text"]
            .clone()
    };
    assert_eq!(greedy(1), greedy(2));
    // A list of prompts; a stop string ends the text before it.
    let two = completion(
        s.addr,
        json!({"prompt": ["the lamp", "ships"], "max_tokens": 3}),
    );
    assert_eq!(two["choices"].as_array().unwrap().len(), 2);
    let long = completion(
        s.addr,
        json!({"prompt": "the", "max_tokens": 40, "seed": 1, "temperature": 0}),
    );
    let text = long["choices"][0]["text"].as_str().unwrap().to_string();
    let word = text
        .split_whitespace()
        .nth(2)
        .expect("a few words")
        .to_string();
    let stopped = completion(
        s.addr,
        json!({"prompt": "the", "max_tokens": 40, "seed": 1, "temperature": 0, "stop": [word.clone()]}),
    );
    let c = &stopped["choices"][0];
    assert_eq!(c["finish_reason"], "stop", "{c}");
    assert!(!c["text"].as_str().unwrap().contains(&word), "{c}");
    assert!(
        text.starts_with(c["text"].as_str().unwrap()),
        "{c} vs {text}"
    );

    let score = http::post(
        s.addr,
        "/v1/score",
        &json!({"input": ["the keeper climbed the tower", "the lamp"]}),
    );
    assert_eq!(score.status, 200, "{}", score.text());
    let score = score.json();
    let first = &score["data"][0];
    // The first word is context (this recipe has no start-of-text token): four are scored.
    assert_eq!(first["tokens"].as_array().unwrap().len(), 4, "{first}");
    let ppl = first["perplexity"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl >= 1.0, "{ppl}");
    assert_eq!(score["data"].as_array().unwrap().len(), 2);

    let emb = http::post(
        s.addr,
        "/v1/embeddings",
        &json!({"model": "run", "input": ["the keeper", "the lamp"]}),
    );
    assert_eq!(emb.status, 200, "{}", emb.text());
    let emb = emb.json();
    assert_eq!(emb["object"], "list");
    let v: Vec<f64> = emb["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(v.len(), 16);
    assert!(v.iter().all(|x| x.is_finite()));
    let b64 = http::post(
        s.addr,
        "/v1/embeddings",
        &json!({"input": "the keeper", "encoding_format": "base64"}),
    )
    .json();
    let encoded = b64["data"][0]["embedding"]
        .as_str()
        .expect("a base64 string");
    assert_eq!(encoded.len(), (16 * 4_usize).div_ceil(3) * 4);

    let page = http::get(s.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<textarea id=\"prompt\""));
    let metrics = http::get(s.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let m = metrics.text();
    assert!(
        m.contains("lstm_lm_requests_total{route=\"/v1/completions\",status=\"200\"}"),
        "{m}"
    );
    assert!(m.contains("lstm_lm_request_seconds_bucket"), "{m}");
    assert!(m.contains("lstm_lm_generated_tokens_total"), "{m}");
    assert!(m.contains("lstm_lm_queue_depth 0"), "{m}");
}

#[test]
fn streaming_sends_each_token_as_an_event_then_done() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let s = Server::start(tmp.path(), &[]);
    let body = json!({"prompt": "the keeper", "max_tokens": 12, "seed": 9, "logprobs": 1, "n": 2});
    let whole = completion(s.addr, body.clone());
    let mut stream = body;
    stream["stream"] = json!(true);
    let mut events = http::post_stream(s.addr, "/v1/completions", &[], &stream);
    assert_eq!(events.status, 200);
    assert!(
        events
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"))
    );
    let mut texts = [String::new(), String::new()];
    let mut tokens = [0, 0];
    let mut finished = 0;
    let mut done = false;
    while let Some(data) = events.next_data() {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(chunk["object"], "text_completion");
        let c = &chunk["choices"][0];
        let i = c["index"].as_u64().unwrap() as usize;
        texts[i].push_str(c["text"].as_str().unwrap());
        if let Some(lp) = c["logprobs"]["token_logprobs"].as_array() {
            tokens[i] += lp.len();
        }
        if c["finish_reason"] == "length" {
            finished += 1;
        }
    }
    assert!(done, "no [DONE]");
    assert_eq!(finished, 2);
    assert_eq!(tokens, [12, 12]);
    for i in 0..2 {
        assert_eq!(texts[i], whole["choices"][i]["text"].as_str().unwrap());
    }
}

#[test]
fn bad_requests_get_clear_openai_errors_and_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let s = Server::start(
        tmp.path(),
        &[
            "--max-body-bytes",
            "2000",
            "--max-prompt-tokens",
            "8",
            "--max-tokens",
            "50",
            "--max-n",
            "3",
            "--request-timeout",
            "1",
        ],
    );
    // A body that never arrives: 408 once the body timeout passes, others served meanwhile.
    let trickle = http::post_partial(s.addr, "/v1/score", 100, b"{\"input\": ");
    let post_raw = |body: &[u8]| http::request(s.addr, "POST", "/v1/completions", &[], body);
    let e = error_of(&post_raw(b"{\"prompt\": \"the\""), 400);
    assert_eq!(e["code"], "invalid_json");
    assert!(
        e["message"].as_str().unwrap().contains("not valid JSON"),
        "{e}"
    );
    error_of(&post_raw(b""), 400);
    let big = json!({"prompt": "the ".repeat(1000)}).to_string();
    let e = error_of(&post_raw(big.as_bytes()), 413);
    assert!(e["message"].as_str().unwrap().contains("2000 bytes"), "{e}");
    let e = error_of(
        &http::post(
            s.addr,
            "/v1/completions",
            &json!({"model": "nope", "prompt": "the"}),
        ),
        404,
    );
    assert_eq!(e["code"], "model_not_found");
    assert!(e["message"].as_str().unwrap().contains("run"), "{e}");
    let e = error_of(
        &http::post(
            s.addr,
            "/v1/completions",
            &json!({"prompt": "the", "max_tokens": 51}),
        ),
        400,
    );
    assert_eq!(e["param"], "max_tokens");
    let e = error_of(
        &http::post(s.addr, "/v1/completions", &json!({"prompt": "the", "n": 4})),
        400,
    );
    assert_eq!(e["param"], "n");
    let e = error_of(
        &http::post(
            s.addr,
            "/v1/completions",
            &json!({"prompt": "the keeper climbed the tower at dusk the lamp"}),
        ),
        400,
    );
    assert_eq!(e["code"], "context_length_exceeded");
    let e = error_of(
        &http::post(
            s.addr,
            "/v1/completions",
            &json!({"prompt": "the", "temperature": -1}),
        ),
        400,
    );
    assert_eq!(e["param"], "temperature");
    let e = error_of(
        &http::post(s.addr, "/v1/completions", &json!({"prompt": "zzzz qqqq"})),
        400,
    );
    assert!(e["message"].as_str().unwrap().contains("no token"), "{e}");
    let e = error_of(&http::post(s.addr, "/v1/score", &json!({"input": 3})), 400);
    assert_eq!(e["code"], "invalid_json");
    let e = error_of(
        &http::post(
            s.addr,
            "/v1/embeddings",
            &json!({"input": "the", "encoding_format": "hex"}),
        ),
        400,
    );
    assert_eq!(e["param"], "encoding_format");
    error_of(&http::get(s.addr, "/v2/nothing"), 404);
    let e = error_of(&trickle.reply(), 408);
    assert_eq!(e["code"], "request_timeout");
    // A head that never ends, and a connection that never sends one: both are closed once
    // the request timeout passes.
    for raw in [&b"POST /v1/score HTTP/1.1\r\nHost: x\r\n"[..], b""] {
        let got = http::until_closed(s.addr, raw);
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    // A body that breaks off (a bad chunk) is unreadable, not too large.
    let broken = http::raw(
        s.addr,
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"i\r\nzz\r\n",
    );
    let e = error_of(&broken, 400);
    assert_eq!(e["code"], "unreadable_body");
    // The server is unharmed.
    let ok = completion(s.addr, json!({"prompt": "the", "max_tokens": 3}));
    assert_eq!(ok["choices"][0]["finish_reason"], "length");
    let m = http::get(s.addr, "/metrics").text();
    assert!(m.contains("status=\"413\""), "{m}");
}

#[test]
fn a_token_file_guards_everything_but_the_page_and_health() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    std::fs::write(tmp.path().join("token.txt"), "s3cret\n").unwrap();
    let s = Server::start(tmp.path(), &["--token-file", "token.txt"]);
    assert_eq!(http::get(s.addr, "/health").status, 200);
    assert_eq!(http::get(s.addr, "/").status, 200);
    let body = json!({"prompt": "the", "max_tokens": 2}).to_string();
    let missing = http::request(s.addr, "POST", "/v1/completions", &[], body.as_bytes());
    let e = error_of(&missing, 401);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{e}"
    );
    let wrong = http::request(
        s.addr,
        "POST",
        "/v1/completions",
        &[("Authorization", "Bearer nope")],
        body.as_bytes(),
    );
    error_of(&wrong, 401);
    error_of(&http::get(s.addr, "/v1/models"), 401);
    let right = http::request(
        s.addr,
        "POST",
        "/v1/completions",
        &[("Authorization", "Bearer s3cret")],
        body.as_bytes(),
    );
    assert_eq!(right.status, 200, "{}", right.text());
    // An empty token file is refused at start, in one line.
    std::fs::write(tmp.path().join("empty.txt"), "\n").unwrap();
    let o = lstm_lm(
        &["serve", "--model", "run", "--token-file", "empty.txt"],
        tmp.path(),
    );
    support::assert_one_line_error(&o, &["--token-file", "empty"]);
    let o = lstm_lm(&["serve", "--model", "missing-run"], tmp.path());
    support::assert_one_line_error(&o, &["missing-run"]);
    for (flag, value) in [
        ("--stall-timeout", "0"),
        ("--request-timeout", "inf"),
        ("--drain-timeout", "NaN"),
    ] {
        let o = lstm_lm(&["serve", "--model", "run", flag, value], tmp.path());
        support::assert_one_line_error(&o, &[flag, "seconds"]);
    }
}

/// Waits (up to a minute) until `ok` holds, polling.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_stream_limit_answers_429_and_a_disconnect_frees_the_place() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let s = Server::start(
        tmp.path(),
        &["--max-streams", "1", "--max-tokens", "100000000"],
    );
    let endless = json!({"prompt": "the", "max_tokens": 100000000, "stream": true});
    let mut first = http::post_stream(s.addr, "/v1/completions", &[], &endless);
    assert_eq!(first.status, 200);
    assert!(first.next_data().is_some());
    let e = error_of(
        &http::post(
            s.addr,
            "/v1/completions",
            &json!({"prompt": "the", "max_tokens": 2}),
        ),
        429,
    );
    assert_eq!(e["code"], "too_many_streams");
    // The client goes away mid-stream: its place comes back.
    drop(first);
    eventually("the place is free again", || {
        http::post(
            s.addr,
            "/v1/completions",
            &json!({"prompt": "the", "max_tokens": 2}),
        )
        .status
            == 200
    });
    eventually("no stream is running", || {
        http::get(s.addr, "/metrics")
            .text()
            .contains("lstm_lm_running_streams 0")
    });
}

/// SIGTERM while a long response is still being written (the client has read one event, so
/// the rest waits in the socket buffers, then the stream pauses until the client reads): the
/// server stops accepting, finishes that response, and exits with status 0.
#[cfg(unix)]
#[test]
fn sigterm_lets_a_stream_finish_then_exits() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let mut s = Server::start(tmp.path(), &["--max-batch", "1", "--drain-timeout", "3600"]);
    let body = json!({"prompt": "the", "max_tokens": 1000, "logprobs": 5, "stream": true});
    let mut events = http::post_stream(s.addr, "/v1/completions", &[], &body);
    assert!(events.next_data().is_some());
    signal(&s, libc::SIGTERM);
    let mut last = String::new();
    let mut finish = Value::Null;
    let mut tokens = 1;
    while let Some(d) = events.next_data() {
        if d != "[DONE]" {
            let chunk: Value = serde_json::from_str(&d).unwrap();
            let c = &chunk["choices"][0];
            tokens += c["logprobs"]["tokens"].as_array().map_or(0, Vec::len);
            if !c["finish_reason"].is_null() {
                finish = c["finish_reason"].clone();
            }
        }
        last = d;
    }
    assert_eq!(last, "[DONE]");
    assert_eq!(finish, "length");
    assert_eq!(tokens, 1000);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(s.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("lstm-lm serve: stopped\n"), "{out}");
}

/// Sends `signal` to the server.
#[cfg(unix)]
fn signal(s: &Server, signal: i32) {
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, signal) }, 0);
}

/// Waits (up to a minute) for the server to exit, then returns its status and what it printed
/// on stdout after its first line.
#[cfg(unix)]
fn exit_of(s: &mut Server) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server still runs a minute after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(s.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    (status, out)
}

/// A request that never completes (its body never arrives) does not keep a stopping server
/// up: SIGTERM gives it `--drain-timeout`, then the server exits; with a long drain timeout,
/// a second SIGTERM stops it at once.
#[cfg(unix)]
#[test]
fn a_request_that_never_ends_cannot_hold_a_stopping_server() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let held = |s: &Server| {
        let stuck = http::post_partial(s.addr, "/v1/score", 100, b"{");
        // It counts as in progress (and so does the request that asks).
        eventually("the stuck request is in progress", || {
            http::get(s.addr, "/metrics")
                .text()
                .contains("lstm_lm_requests_in_progress 2")
        });
        stuck
    };

    let mut s = Server::start(
        tmp.path(),
        &["--drain-timeout", "1", "--request-timeout", "3600"],
    );
    let _stuck = held(&s);
    signal(&s, libc::SIGTERM);
    let (status, out) = exit_of(&mut s);
    assert!(status.success(), "{status:?}");
    assert!(out.contains("after 1 s were cut off"), "{out}");

    let mut s = Server::start(
        tmp.path(),
        &["--drain-timeout", "3600", "--request-timeout", "3600"],
    );
    let _stuck = held(&s);
    signal(&s, libc::SIGTERM);
    // The second signal only once the first has been taken (signals may merge).
    let mut line = String::new();
    BufReader::new(s.child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("stopping"), "{line}");
    signal(&s, libc::SIGTERM);
    let (status, out) = exit_of(&mut s);
    assert!(status.success(), "{status:?}");
    assert!(out.contains("second signal"), "{out}");
}

/// With `--max-connections 1`, a second client waits until the first connection closes, and is
/// then served.
#[test]
fn the_connection_limit_makes_new_clients_wait() {
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let s = Server::start(tmp.path(), &["--max-connections", "1"]);
    let (status, held) = http::get_keep_alive(s.addr, "/health");
    assert_eq!(status, 200);
    let addr = s.addr;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http::get(addr, "/health").status);
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "a second connection was served while the only place was held"
    );
    drop(held);
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(200));
}
