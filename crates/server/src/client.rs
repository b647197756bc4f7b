//! A small blocking HTTP/1.1 client over one kept-alive connection: what
//! hutch's tests and `hutch bench` use to talk to a server. It speaks just
//! enough HTTP for that: requests with a `Content-Length` body, answers
//! with a `Content-Length` or chunked body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// An answer from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One connection to a server, reopened when the server closes it.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    token: Option<String>,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of the server at `addr`; connects on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            connection: None,
        }
    }

    /// Sends `Authorization: Bearer token` with every request.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> std::io::Result<Answer> {
        self.request("GET", path, &[], b"")
    }

    /// `DELETE path`.
    pub fn delete(&mut self, path: &str) -> std::io::Result<Answer> {
        self.request("DELETE", path, &[], b"")
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&mut self, path: &str, body: &[u8]) -> std::io::Result<Answer> {
        self.request("POST", path, &[("Content-Type", "application/json")], body)
    }

    /// `POST path` with a multipart form of one file field `field`.
    pub fn post_file(
        &mut self,
        path: &str,
        field: &str,
        file_name: &str,
        content: &[u8],
    ) -> std::io::Result<Answer> {
        let boundary = "hutch-form-boundary-7d1f0a";
        let mut body = Vec::with_capacity(content.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
                 filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.request("POST", path, &[("Content-Type", &content_type)], &body)
    }

    /// Sends one request and reads its answer; reconnects once if the kept
    /// connection turns out closed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let reused = self.connection.is_some();
        match self.exchange(head.as_bytes(), body) {
            Err(error) if reused && is_closed(&error) => {
                self.connection = None;
                self.exchange(head.as_bytes(), body)
            }
            other => other,
        }
    }

    fn exchange(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<Answer> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let stream = TcpStream::connect(self.addr)?;
                stream.set_nodelay(true)?;
                self.connection.insert(BufReader::new(stream))
            }
        };
        let result = send_and_read(connection, head, body);
        match &result {
            Ok(answer) if answer.header("connection") == Some("close") => self.connection = None,
            Err(_) => self.connection = None,
            Ok(_) => {}
        }
        result
    }
}

fn is_closed(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

fn send_and_read(
    connection: &mut BufReader<TcpStream>,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<Answer> {
    let stream = connection.get_mut();
    if body.is_empty() {
        stream.write_all(head)?;
    } else if body.len() < 16 * 1024 {
        let mut whole = Vec::with_capacity(head.len() + body.len());
        whole.extend_from_slice(head);
        whole.extend_from_slice(body);
        stream.write_all(&whole)?;
    } else {
        stream.write_all(head)?;
        stream.write_all(body)?;
    }
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if connection.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("a status line without a status code"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if connection.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| invalid("a header without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            connection.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| invalid("a bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    connection.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            connection.read_exact(&mut body[start..])?;
            line.clear();
            connection.read_line(&mut line)?;
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid("a bad Content-Length"))?;
        body.resize(length, 0);
        connection.read_exact(&mut body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}
