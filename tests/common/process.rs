//! Real processes on real loopback sockets.
//!
//! - [`free_port`]: a loopback port nobody listens on (bind `:0`, drop).
//! - [`Serve`]: `keygate serve` running in its own temporary directory, with
//!   `KEYGATE_PEPPER`, `KEYGATE_DATABASE_URL`, `KEYGATE_API_URL`,
//!   `KEYGATE_TOKEN`, `KEYGATE_CONFIG` and `RUST_LOG` removed from its
//!   environment; stdout and stderr are captured as they come. Dropping it
//!   stops the process (SIGTERM, then SIGKILL), so a failed assertion never
//!   leaves a server behind.
//!
//! Everything is synchronous: std threads, no runtime.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http;

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
        .env_remove("KEYGATE_API_URL")
        .env_remove("KEYGATE_TOKEN")
        .env_remove("KEYGATE_CONFIG")
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
    /// Pass no `--listen`: the server is expected on this address, set
    /// some other way (a configuration file).
    pub expect_at: Option<SocketAddr>,
}

impl ServeOptions {
    /// No extra arguments.
    pub fn new() -> ServeOptions {
        ServeOptions {
            args: Vec::new(),
            env: Vec::new(),
            upstream: None,
            expect_at: None,
        }
    }

    /// Passes no `--listen` and expects the server on `addr`.
    pub fn expect_at(mut self, addr: SocketAddr) -> ServeOptions {
        self.expect_at = Some(addr);
        self
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
        let addr = options
            .expect_at
            .or_else(|| from_env("KEYGATE_LISTEN"))
            .unwrap_or_else(|| {
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
