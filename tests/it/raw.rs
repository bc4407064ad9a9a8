//! A bare HTTP/1.1 client over TCP, for requests no well-behaved client sends: `..` and `%FF`
//! segments left as they are (a URL library would resolve or refuse them), raw bytes in the
//! target, bodies that are not JSON. Shared by `edges_fuzz.rs` and `http_api.rs`.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the body is the API's error shape: `{"error":{"code","message","fields"}}`,
    /// each field with its `field` and `problem`.
    pub fn is_error_shape(&self) -> bool {
        let Some(v) = self.json() else { return false };
        let e = &v["error"];
        e["code"].is_string()
            && e["message"].is_string()
            && e["fields"].as_array().is_some_and(|f| {
                f.iter()
                    .all(|p| p["field"].is_string() && p["problem"].is_string())
            })
            && self
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
    }

    /// The `field`s named by an error body.
    pub fn fields(&self) -> Vec<String> {
        self.json()
            .and_then(|v| {
                v["error"]["fields"].as_array().map(|f| {
                    f.iter()
                        .map(|p| p["field"].as_str().unwrap_or("").to_string())
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    pub fn code(&self) -> String {
        self.json()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Sends `method target` with `headers` and `body` on a fresh connection and reads the answer
/// to its end (`Connection: close`). `target` is sent byte for byte.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let mut request = Vec::with_capacity(256 + target.len() + body.len());
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&request).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> std::io::Result<RawResponse> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}
