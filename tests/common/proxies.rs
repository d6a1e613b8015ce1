//! Edge proxies (nginx, Traefik) in front of `keygate serve`: the process
//! handle, waiting for it to be ready, the stack of keygate, upstream and
//! proxy every proxy test starts ([`ProxyStack`]), and the pieces those
//! tests share (the `reader` key, bearer headers, the untouched-upstream
//! check).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

use super::http;
use super::process::{Serve, ServeOptions, fixture, stop_child};
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

/// keygate (`keygate serve --rules tests/fixtures/rules.toml` and more
/// arguments), a recording upstream and an edge proxy in front of both, in a
/// temporary directory, with the bootstrap admin token and the `reader` key
/// (owner alice, workspaces:read). Everything stops on drop.
pub struct ProxyStack {
    // Dropped in this order: the proxy first, then keygate, then the upstream.
    /// The edge proxy.
    pub proxy: EdgeProxy,
    /// The keygate the proxy asks.
    pub keygate: Serve,
    /// The service behind the proxy.
    pub upstream: Upstream,
    /// The bootstrap admin token.
    pub admin: String,
    /// The `reader` key's token.
    pub reader: String,
    /// The `reader` key's id.
    pub reader_id: String,
    _dir: TempDir,
}

impl ProxyStack {
    /// Starts keygate with the rules fixture and `args`, the upstream,
    /// then the proxy: `start_proxy(dir, keygate, upstream)` gets a fresh
    /// directory of its own and the two addresses to put it in front of.
    pub fn start(
        args: &[&str],
        start_proxy: impl FnOnce(&Path, SocketAddr, SocketAddr) -> EdgeProxy,
    ) -> ProxyStack {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("keygate");
        let proxy_dir = dir.path().join("proxy");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&proxy_dir).unwrap();

        let rules = fixture("rules.toml");
        let keygate = Serve::start(
            &data,
            ServeOptions::new()
                .args(["--rules", rules.to_str().unwrap()])
                .args(args.iter().copied()),
        );
        let admin = keygate.bootstrap_token();
        let (reader, reader_id) = create_reader(&keygate, &admin);
        let upstream = Upstream::start();
        let proxy = start_proxy(&proxy_dir, keygate.addr, upstream.addr);
        ProxyStack {
            proxy,
            keygate,
            upstream,
            admin,
            reader,
            reader_id,
            _dir: dir,
        }
    }

    /// `GET target` through the proxy.
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> http::Response {
        http::get(self.proxy.addr, target, headers)
    }

    /// Context for failure messages: the proxy's log and keygate's stderr.
    pub fn logs(&self) -> String {
        format!(
            "{} log:\n{}\nkeygate stderr:\n{}",
            self.proxy.name,
            self.proxy.log(),
            self.keygate.stderr()
        )
    }

    /// The upstream got exactly `before` requests: nothing since.
    pub fn assert_upstream_untouched(&self, before: usize) {
        assert_upstream_untouched(&self.upstream, before);
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
