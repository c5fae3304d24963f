//! The page of `lstm-lm serve` in a real headless Chromium, driven over WebDriver
//! (chromedriver): type a prompt, generate, see the streamed tokens with their probabilities,
//! score a text, take a screenshot. SKIPPED without Chromium and chromedriver (Debian:
//! `apt-get install chromium chromium-driver`), a failure under CI=true.
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

#[path = "support/http.rs"]
mod http;
#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, train_tiny_run};

/// The W3C WebDriver key of an element reference.
// The W3C WebDriver web element identifier.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first of `candidates` that exists, or one found on PATH under `name`.
fn find(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.exists())
            })
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session.
struct Session {
    driver: SocketAddr,
    id: String,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        let body = if method == "GET" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let r = http::request(self.driver, method, &path, &[], &body);
        assert_eq!(r.status, 200, "WebDriver {method} {path}: {}", r.text());
        r.json()["value"].clone()
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no {css}: {v}"))
            .to_string()
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        );
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    /// Waits (up to a minute) until `script` returns true.
    fn wait_for(&self, what: &str, script: &str) {
        let start = Instant::now();
        while self.script(script) != json!(true) {
            let status = self.script("return document.getElementById('gen-status').textContent");
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "never: {what} (status: {status})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn trained_run(dir: &Path) {
    train_tiny_run(dir, CORPUS, &[]);
}

#[test]
fn the_page_streams_a_completion_and_scores_a_text_in_chromium() {
    let chromium = find(
        "chromium",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let driver = find("chromedriver", &["/usr/bin/chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let why = "SKIPPED the_page_streams_a_completion_and_scores_a_text_in_chromium: no chromium or chromedriver (apt-get install chromium chromium-driver)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why}, and CI=true needs them"
        );
        eprintln!("{why}");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    trained_run(tmp.path());
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
            .args([
                "serve",
                "--model",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "2",
            ])
            .current_dir(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let page = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let port = free_port();
    let _driver = Killed(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(driver_addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = tmp.path().join("chromium-profile");
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1000,860",
                     format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let r = http::request(
        driver_addr,
        "POST",
        "/session",
        &[],
        caps.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "new session: {}", r.text());
    let id = r.json()["value"]["sessionId"].as_str().unwrap().to_string();
    let s = Session {
        driver: driver_addr,
        id,
    };

    s.call("POST", "/url", json!({"url": page}));
    s.wait_for(
        "the model list",
        "return document.getElementById('model').options.length === 1",
    );
    s.type_into("#prompt", "the keeper climbed");
    s.type_into("#seed", "7");
    s.type_into("#max_tokens", "40");
    s.click("#go");
    s.wait_for(
        "the end of the stream",
        "return document.getElementById('gen-status').textContent.includes('tokens in')",
    );
    let tokens = s.script(
        "return Array.from(document.querySelectorAll('#output .tok')).map(t => [t.textContent, t.title, Number(t.dataset.prob)])",
    );
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 40, "{tokens:?}");
    for t in tokens {
        let p = t[2].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{t}");
        assert!(
            t[1].as_str().unwrap().contains("p = "),
            "no probability on hover: {t}"
        );
    }
    let shown = s.script("return document.getElementById('output').textContent");
    assert!(
        shown.as_str().unwrap().starts_with("the keeper climbed"),
        "{shown}"
    );
    assert!(
        shown.as_str().unwrap().len() > "the keeper climbed".len(),
        "{shown}"
    );
    // Hover the first generated token: its title is the tooltip a person sees.
    let first = s.element("#output .tok");
    s.call("POST", "/actions", json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [{"type": "pointerMove", "origin": {ELEMENT: first}, "x": 0, "y": 0}]}]}));

    s.click("#score");
    s.wait_for(
        "the score",
        "return document.getElementById('score-status').textContent.includes('perplexity')",
    );
    let rows = s.script("return document.querySelectorAll('#score-out tr').length");
    assert!(rows.as_u64().unwrap() > 2, "{rows}");

    let png = s.call("GET", "/screenshot", json!({}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let out = std::env::var_os("LSTM_LM_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("lstm-lm-serve-page.png"));
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());
    let _ = http::request(
        driver_addr,
        "DELETE",
        &format!("/session/{}", s.id),
        &[],
        b"",
    );
}
