//! Helpers shared by `tests/serve.rs` and `tests/nginx.rs`: real processes
//! on real loopback sockets.
//!
//! - [`free_port`]: a loopback port nobody listens on (bind `:0`, drop).
//! - [`Serve`]: `keygate serve` running in its own temporary directory, with
//!   `KEYGATE_PEPPER`, `KEYGATE_DATABASE_URL` and `RUST_LOG` removed from its
//!   environment; stdout and stderr are captured as they come. Dropping it
//!   stops the process (SIGTERM, then SIGKILL), so a failed assertion never
//!   leaves a server behind.
//! - [`http`]: a minimal HTTP/1.1 client over `std::net::TcpStream`.
//! - [`Upstream`]: a tiny HTTP server that records every request it gets and
//!   answers 200 with the request head as the body.
//!
//! Everything is synchronous: std threads, no runtime.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The binary under test.
pub const KEYGATE: &str = env!("CARGO_BIN_EXE_keygate");

/// How long a server may take to answer `/healthz` after being started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read/write timeout of one HTTP exchange.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Sends `signal` (e.g. `"TERM"`) to `pid` with kill(1): no libc needed.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a child for good: SIGTERM, then SIGKILL if it lingers.
pub fn stop_child(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM".to_string(), child.id().to_string()])
        .status();
    if wait_timeout(child, Duration::from_secs(5)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Collects a pipe into a shared string, as it comes.
fn capture(pipe: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let handle = thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line)),
            }
        }
    });
    (text, handle)
}

/// A `keygate` command in `dir`, with the host's keygate settings removed.
pub fn keygate_command(dir: &Path) -> Command {
    let mut command = Command::new(KEYGATE);
    command
        .current_dir(dir)
        .env_remove("KEYGATE_PEPPER")
        .env_remove("KEYGATE_DATABASE_URL")
        .env_remove("RUST_LOG");
    command
}

/// Runs `keygate ARGS` in `dir` to completion (at most 30 s).
pub fn run_keygate(dir: &Path, args: &[&str]) -> std::process::Output {
    run_keygate_env(dir, &[], args)
}

/// Runs `keygate ARGS` in `dir` with extra environment variables, to
/// completion (at most 30 s).
pub fn run_keygate_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = keygate_command(dir);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keygate");
    let (stdout, out_reader) = capture(child.stdout.take().unwrap());
    let (stderr, err_reader) = capture(child.stderr.take().unwrap());
    let status = match wait_timeout(&mut child, Duration::from_secs(30)) {
        Some(status) => status,
        None => {
            stop_child(&mut child);
            panic!("keygate {args:?} did not exit within 30 s");
        }
    };
    out_reader.join().unwrap();
    err_reader.join().unwrap();
    let stdout = stdout.lock().unwrap().clone().into_bytes();
    let stderr = stderr.lock().unwrap().clone().into_bytes();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// How to start `keygate serve`.
pub struct ServeOptions {
    /// Extra arguments after `serve --listen ADDR`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Also listen with the proxy on a free port, forwarding to this URL.
    pub upstream: Option<String>,
}

impl ServeOptions {
    /// No extra arguments.
    pub fn new() -> ServeOptions {
        ServeOptions {
            args: Vec::new(),
            env: Vec::new(),
            upstream: None,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> ServeOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> ServeOptions {
        self.env.push((name.into(), value.into()));
        self
    }

    /// `--upstream URL --proxy-listen 127.0.0.1:<free>`.
    pub fn upstream(mut self, url: &str) -> ServeOptions {
        self.upstream = Some(url.into());
        self
    }
}

/// A running `keygate serve`.
pub struct Serve {
    child: Child,
    /// The API address.
    pub addr: SocketAddr,
    /// The proxy address, with `--upstream`.
    pub proxy_addr: Option<SocketAddr>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Serve {
    /// Starts `keygate serve --listen 127.0.0.1:<free>` in `dir` and waits
    /// until `/healthz` answers 200.
    ///
    /// With `KEYGATE_LISTEN` (and `KEYGATE_PROXY_LISTEN`) among the options'
    /// environment variables, no `--listen` (`--proxy-listen`) flag is
    /// passed and the server is expected on that address.
    pub fn start(dir: &Path, options: ServeOptions) -> Serve {
        let from_env = |name: &str| {
            options
                .env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.parse::<SocketAddr>().expect("a socket address"))
        };
        let mut command = keygate_command(dir);
        command.arg("serve");
        let addr = from_env("KEYGATE_LISTEN").unwrap_or_else(|| {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            command.args(["--listen", &addr.to_string()]);
            addr
        });
        let mut proxy_addr = from_env("KEYGATE_PROXY_LISTEN");
        if let Some(upstream) = &options.upstream {
            let proxy = proxy_addr.unwrap_or_else(|| {
                let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                command.args(["--proxy-listen", &proxy.to_string()]);
                proxy
            });
            command.args(["--upstream", upstream]);
            proxy_addr = Some(proxy);
        }
        command.args(&options.args);
        for (name, value) in &options.env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keygate serve");
        let (stdout, out_reader) = capture(child.stdout.take().unwrap());
        let (stderr, err_reader) = capture(child.stderr.take().unwrap());
        let mut serve = Serve {
            child,
            addr,
            proxy_addr,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        };
        serve.wait_healthy();
        serve
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "keygate serve exited before answering /healthz ({status});\nstderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(response) = http::try_request(self.addr, "GET", "/healthz", &[], b"")
                && response.status == 200
            {
                // The proxy binds before the API; it is up too.
                return;
            }
            assert!(
                Instant::now() < deadline,
                "keygate serve did not answer /healthz on {} within {START_TIMEOUT:?};\nstderr:\n{}",
                self.addr,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stdout line: the bootstrap token. Waits a little for it
    /// (it is printed before the listener opens, but the pipe reader may lag).
    pub fn bootstrap_token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.stdout();
            if let Some((line, _)) = out.split_once('\n') {
                return line.trim_end_matches('\r').to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no bootstrap token on stdout (stdout: {out:?}); stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        send_signal(self.pid(), "TERM");
    }

    /// Waits for the process to exit (after [`Serve::terminate`]), then for
    /// its output to be fully read.
    pub fn wait(&mut self) -> ExitStatus {
        let status = match wait_timeout(&mut self.child, STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "keygate serve did not exit within {STOP_TIMEOUT:?} of SIGTERM;\nstderr:\n{}",
                    self.stderr()
                );
            }
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait()
    }

    /// `METHOD PATH` on the API with `Authorization: Bearer <token>`.
    pub fn call(&self, method: &str, path: &str, token: &str, body: &str) -> http::Response {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        http::request(self.addr, method, path, &headers, body.as_bytes())
    }

    /// Creates a key through the API; returns `(token, record)`.
    pub fn create_key(&self, admin: &str, body: serde_json::Value) -> (String, serde_json::Value) {
        let response = self.call("POST", "/v1/keys", admin, &body.to_string());
        assert_eq!(
            response.status, 201,
            "POST /v1/keys {body} answered {response:?}"
        );
        let json = response.json();
        let token = json["key"].as_str().expect("key in the answer").to_owned();
        (token, json["api_key"].clone())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The 16-character id of a token: characters 8..24.
pub fn token_id(token: &str) -> &str {
    &token[8..24]
}

/// The 32-character secret of a token: characters 24..56.
pub fn token_secret(token: &str) -> &str {
    &token[24..56]
}

/// A minimal HTTP/1.1 client: one request per connection
/// (`Connection: close`), the whole answer read.
pub mod http {
    use super::*;

    /// An answer.
    #[derive(Clone)]
    pub struct Response {
        /// Status code.
        pub status: u16,
        /// Headers in order, names as sent.
        pub headers: Vec<(String, String)>,
        /// The body (de-chunked).
        pub body: Vec<u8>,
    }

    impl std::fmt::Debug for Response {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Response")
                .field("status", &self.status)
                .field("headers", &self.headers)
                .field("body", &self.text())
                .finish()
        }
    }

    impl Response {
        /// The first header named `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// Every header named `name`.
        pub fn headers(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        }

        /// The body as text.
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The body as JSON.
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
        }
    }

    /// The request head, `Host` and `Connection: close` included.
    pub fn head(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        content_length: Option<usize>,
    ) -> String {
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(length) = content_length {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    /// Connects with the I/O timeouts set.
    pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }

    /// One request; errors are returned (for polling).
    pub fn try_request(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut stream = connect(addr)?;
        let length =
            (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")).then_some(body.len());
        let mut bytes = head(addr, method, target, headers, length).into_bytes();
        bytes.extend_from_slice(body);
        stream.write_all(&bytes)?;
        read_response(&mut stream, method == "HEAD")
    }

    /// One request; panics on I/O errors.
    pub fn request(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        try_request(addr, method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target} on {addr}: {e}"))
    }

    /// `GET target` with these headers.
    pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
        request(addr, "GET", target, headers, b"")
    }

    /// Reads one answer to the end of the connection.
    pub fn read_response(stream: &mut TcpStream, head_only: bool) -> std::io::Result<Response> {
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let _ = stream.shutdown(Shutdown::Both);
        parse_response(&raw, head_only).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)),
            )
        })
    }

    /// Parses a full HTTP/1.1 answer.
    pub fn parse_response(raw: &[u8], head_only: bool) -> Option<Response> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let rest = &raw[end + 4..];
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if head_only {
            Vec::new()
        } else if chunked {
            dechunk(rest)?
        } else {
            rest.to_vec()
        };
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads one answer with a `Content-Length` body from a kept-alive
    /// connection, leaving the connection open.
    pub fn read_one(stream: &mut TcpStream) -> std::io::Result<Response> {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte)? {
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed before the end of the head",
                    ));
                }
                _ => raw.push(byte[0]),
            }
        }
        let head = parse_response(&raw, true).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
        })?;
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
        Ok(Response { body, ..head })
    }

    /// Whether the server closes `stream` within `limit`: reads (and
    /// discards) until end of file or a reset, or until `limit` passes.
    pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true, // reset
            }
        }
    }

    fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = data.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            data = &data[line_end + 2..];
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(data.get(..size)?);
            data = data.get(size + 2..)?;
        }
    }
}

/// One request as an [`Upstream`] received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// `GET /path?query HTTP/1.1`.
    pub request_line: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The head as received, request line and headers.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The request target, e.g. `/path?query`.
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or_default()
    }
}

/// A test upstream: records every request and answers
/// `200 text/plain` with the received head as the body, then closes.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on a free loopback port.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let received = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = Arc::clone(&received);
                    thread::spawn(move || serve_upstream_connection(stream, &received));
                }
            })
        };
        Upstream {
            addr,
            received,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor up so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve_upstream_connection(mut stream: TcpStream, received: &Mutex<Vec<Received>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return, // closed (e.g. the wake-up connect) or timed out
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = data[end + 4..].to_vec();
    if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < length {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
    }
    received.lock().unwrap().push(Received {
        request_line,
        headers,
        head: head.clone(),
        body,
    });
    // HEAD: the same headers, no body.
    let payload = if head.starts_with("HEAD ") {
        ""
    } else {
        head.as_str()
    };
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Upstream: echo\r\nConnection: close\r\n\r\n{payload}",
        head.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}
