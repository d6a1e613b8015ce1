//! [`RedisServer`]: a `redis-server` of the test's own on a free loopback
//! port, without persistence, that the test may stop and start again on
//! the same port without disturbing any other test (or the shared Redis of
//! `KEYGATE_TEST_REDIS_URL`). Dropping it kills the process.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{free_port, stop_child};

/// How long `redis-server` may take to answer `PING` after being started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The `redis-server` binary: `/usr/bin/redis-server` (Debian's), else the
/// first on `PATH`.
fn binary() -> &'static str {
    if Path::new("/usr/bin/redis-server").is_file() {
        "/usr/bin/redis-server"
    } else {
        "redis-server"
    }
}

/// A running `redis-server --port P --save '' --appendonly no`.
pub struct RedisServer {
    /// Its port on 127.0.0.1, kept across [`RedisServer::restart`].
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// Starts one that wants `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password,
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(&mut self) {
        let mut command = Command::new(binary());
        command.args(["--port", &self.port.to_string()]).args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (install redis-server): {e}", binary()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().expect("try_wait")
            {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers now (`PING` with `+PONG`, or, wanting a
    /// password, with `-NOAUTH`).
    pub fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
    }

    /// Kills it (SIGKILL: as abrupt as a crash) and waits until the port
    /// refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(!self.answers(), "redis-server still answers after kill");
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a redis-server that runs");
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}
