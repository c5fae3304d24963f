//! A small HTTP/1.1 client over `std::net::TcpStream` for the serve tests: whole requests,
//! and streamed responses read event by event (chunked transfer decoded).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response read to its end.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body otherwise).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn send_head(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body and close: ignore that.
    let _ = s.write_all(body);
}

/// Reads the status line and headers.
fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// A request answered in full.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = connect(addr);
    send_head(&mut s, method, path, headers, body);
    read_reply(s)
}

/// Reads a whole response from `s`.
fn read_reply(s: TcpStream) -> Reply {
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        Chunked {
            inner: r,
            left: 0,
            done: false,
        }
        .read_to_end(&mut body)
        .unwrap();
    } else if let Some(length) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        // Read exactly the body: a peer may keep the connection open despite
        // `Connection: close` (chromedriver does), and waiting for its end would hang.
        body.resize(length, 0);
        r.read_exact(&mut body).unwrap();
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// A POST whose head promised `declared` body bytes of which only `part` was sent: the body
/// never completes while this is held.
pub struct PartialRequest(TcpStream);

/// Sends `raw` bytes as they are (a whole request, head included) and reads the answer.
pub fn raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    read_reply(s)
}

/// GETs `path` on a connection that stays open afterwards (keep-alive); returns the status and
/// the connection, idle.
pub fn get_keep_alive(addr: SocketAddr, path: &str) -> (u16, TcpStream) {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .expect("a Content-Length");
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (status, r.into_inner())
}

/// Sends `raw` bytes and reads until the server closes the connection (panics if it has not
/// within the read timeout of a minute); returns what it sent.
pub fn until_closed(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the server closes the connection within a minute");
    got
}

/// Starts a POST to `path` that sends `part` of a `declared`-byte body and no more.
pub fn post_partial(addr: SocketAddr, path: &str, declared: usize, part: &[u8]) -> PartialRequest {
    let mut s = connect(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(part).unwrap();
    PartialRequest(s)
}

impl PartialRequest {
    /// Waits for the server's answer (up to the read timeout of a minute).
    pub fn reply(self) -> Reply {
        read_reply(self.0)
    }
}

/// GET `path`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

/// POST `json` to `path`.
pub fn post(addr: SocketAddr, path: &str, json: &serde_json::Value) -> Reply {
    request(addr, "POST", path, &[], json.to_string().as_bytes())
}

/// A de-chunking reader.
struct Chunked<R: BufRead> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            if line.trim().is_empty() {
                line.clear();
                if self.inner.read_line(&mut line)? == 0 {
                    self.done = true;
                    return Ok(0);
                }
            }
            self.left = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

/// A streamed response, read one server-sent event at a time.
pub struct EventStream {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    reader: BufReader<Chunked<BufReader<TcpStream>>>,
}

impl EventStream {
    /// The next event's data (`None` at the end of the body).
    pub fn next_data(&mut self) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                return Some(data.to_string());
            }
        }
    }
}

/// POSTs `json` and returns the response for reading as events.
pub fn post_stream(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    json: &serde_json::Value,
) -> EventStream {
    let mut s = connect(addr);
    send_head(&mut s, "POST", path, headers, json.to_string().as_bytes());
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    EventStream {
        status,
        headers,
        reader: BufReader::new(Chunked {
            inner: r,
            left: 0,
            done: false,
        }),
    }
}
