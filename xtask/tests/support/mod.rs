//! A tiny HTTP/1.1 server on 127.0.0.1 for the download tests: GET only,
//! `Range: bytes=N-` answered with 206, 404 for unknown paths, fixed status
//! codes, a mode that cuts the connection mid-body and one that ignores
//! Range. It stops when dropped (and after 60 s in any case).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Behavior {
    Normal,
    /// Send the headers and `after` body bytes, then close; `times` responses.
    Cut {
        after: usize,
        times: usize,
    },
    /// Always answer 200 with the whole body.
    IgnoreRange,
    Status(u16),
}

#[derive(Debug, Clone)]
struct Route {
    body: Vec<u8>,
    behavior: Behavior,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub user_agent: Option<String>,
}

pub struct TestServer {
    base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, log, stop) = (routes.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &routes, &log),
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        TestServer {
            base,
            routes,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL of `path` (which starts with '/').
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn add(&self, path: &str, body: &[u8], behavior: Behavior) {
        self.routes.lock().unwrap().insert(
            path.to_owned(),
            Route {
                body: body.to_vec(),
                behavior,
            },
        );
    }

    /// Serves `body` at `path` (with Range support).
    pub fn file(&self, path: &str, body: &[u8]) {
        self.add(path, body, Behavior::Normal);
    }

    /// Serves `body`, but the first `times` responses stop after `after` bytes.
    pub fn cut(&self, path: &str, body: &[u8], after: usize, times: usize) {
        self.add(path, body, Behavior::Cut { after, times });
    }

    /// Serves `body` with 200 even when a Range is asked for.
    pub fn ignore_range(&self, path: &str, body: &[u8]) {
        self.add(path, body, Behavior::IgnoreRange);
    }

    /// Answers `path` with this status and an empty body.
    pub fn status(&self, path: &str, code: u16) {
        self.add(path, b"", Behavior::Status(code));
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    String::from_utf8(buf).ok()
}

fn serve(mut stream: TcpStream, routes: &Mutex<HashMap<String, Route>>, log: &Mutex<Vec<Request>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut range = None;
    let mut user_agent = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_owned()),
                "user-agent" => user_agent = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    log.lock().unwrap().push(Request {
        path: path.clone(),
        range: range.clone(),
        user_agent,
    });

    let route = {
        let mut routes = routes.lock().unwrap();
        let route = routes.get_mut(&path);
        match route {
            Some(r) => {
                let snapshot = r.clone();
                if let Behavior::Cut { after, times } = r.behavior
                    && times > 0
                {
                    r.behavior = if times == 1 {
                        Behavior::Normal
                    } else {
                        Behavior::Cut {
                            after,
                            times: times - 1,
                        }
                    };
                }
                Some(snapshot)
            }
            None => None,
        }
    };
    let reply = |stream: &mut TcpStream, status: &str, headers: &[String], body: &[u8]| {
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for h in headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let _ = stream.write_all(out.as_bytes());
        let _ = stream.write_all(body);
        let _ = stream.flush();
    };
    let Some(route) = route.filter(|_| method == "GET") else {
        reply(
            &mut stream,
            "404 Not Found",
            &["Content-Length: 0".into()],
            b"",
        );
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    if let Behavior::Status(code) = route.behavior {
        reply(
            &mut stream,
            &format!("{code} Status"),
            &["Content-Length: 0".into()],
            b"",
        );
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let len = route.body.len();
    let start = match (&route.behavior, range.as_deref()) {
        (Behavior::IgnoreRange, _) | (_, None) => None,
        (_, Some(r)) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok()),
    };
    let (status, headers, body): (&str, Vec<String>, &[u8]) = match start {
        Some(s) if s >= len => {
            reply(
                &mut stream,
                "416 Range Not Satisfiable",
                &[
                    format!("Content-Range: bytes */{len}"),
                    "Content-Length: 0".into(),
                ],
                b"",
            );
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        Some(s) => (
            "206 Partial Content",
            vec![
                format!("Content-Range: bytes {s}-{}/{len}", len - 1),
                format!("Content-Length: {}", len - s),
            ],
            &route.body[s..],
        ),
        None => (
            "200 OK",
            vec![format!("Content-Length: {len}")],
            &route.body[..],
        ),
    };
    let body = match route.behavior {
        Behavior::Cut { after, times } if times > 0 => &body[..after.min(body.len())],
        _ => body,
    };
    reply(&mut stream, status, &headers, body);
    let _ = stream.shutdown(Shutdown::Both);
}
