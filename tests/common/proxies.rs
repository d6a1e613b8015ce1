//! Edge proxies (nginx, Traefik) in front of `keygate serve`: the process
//! handle, waiting for it to be ready, and the pieces every proxy stack
//! shares (the `reader` key, bearer headers, the untouched-upstream check).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::process::{Serve, stop_child};
use super::upstream::Upstream;

/// An edge proxy in the foreground, logging to a file, stopped on drop.
pub struct EdgeProxy {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
    name: &'static str,
}

impl EdgeProxy {
    /// Spawns `command` (stdio detached); `name` is for messages, `log` the
    /// file the proxy writes its log to.
    pub fn spawn(name: &'static str, mut command: Command, addr: SocketAddr, log: PathBuf) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        EdgeProxy {
            child,
            addr,
            log,
            name,
        }
    }

    /// The log so far (empty if there is none yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `ready(addr)` every `poll` until it holds; panics (with the
    /// log) if the proxy exits first or `timeout` passes; `waiting_for`
    /// completes "NAME did not ... on ADDR".
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        poll: Duration,
        waiting_for: &str,
        ready: impl Fn(SocketAddr) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited at start ({status}):\n{}", self.name, self.log());
            }
            if ready(self.addr) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not {waiting_for} on {} within {timeout:?}:\n{}",
                self.name,
                self.addr,
                self.log()
            );
            std::thread::sleep(poll);
        }
    }
}

impl Drop for EdgeProxy {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Creates the `reader` key (owner alice, workspaces:read); returns
/// `(token, id)`.
pub fn create_reader(keygate: &Serve, admin: &str) -> (String, String) {
    let (reader, record) = keygate.create_key(
        admin,
        json!({"owner": "alice", "name": "reader", "scopes": ["workspaces:read"]}),
    );
    (reader, record["id"].as_str().unwrap().to_owned())
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The upstream got exactly `before` requests: nothing since.
pub fn assert_upstream_untouched(upstream: &Upstream, before: usize) {
    assert_eq!(
        upstream.count(),
        before,
        "the upstream was contacted for a denied request: {:?}",
        upstream.received()
    );
}
