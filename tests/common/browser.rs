//! A real browser: Debian's Chromium, headless, driven through chromedriver
//! by fantoccini (WebDriver over HTTP on loopback).
//!
//! [`Browser::start`] returns `None` (the test then skips, saying so)
//! when Chromium or chromedriver is missing, unless
//! `KEYGATE_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes it fail.
//! The binaries are `KEYGATE_CHROMIUM` / `KEYGATE_CHROMEDRIVER`, else the
//! first of the usual paths that exists. Dropping a `Browser` stops its
//! chromedriver (and with it Chromium).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::process::{free_port, stop_child};

/// How long an element or a text may take to appear.
pub const WAIT: Duration = Duration::from_secs(15);

fn first_existing(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// `target/console-screenshots/`: the screenshots the tests leave as artifacts.
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    target.join("console-screenshots")
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    driver_addr: std::net::SocketAddr,
    session: Option<String>,
    /// The WebDriver client.
    pub client: Client,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session, or `None` when they are
    /// not installed (a failure instead with `KEYGATE_REQUIRE_BROWSER=1`).
    pub async fn start() -> Option<Browser> {
        let required = std::env::var("KEYGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        let chromium = first_existing(
            "KEYGATE_CHROMIUM",
            &[
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ],
        );
        let driver = first_existing(
            "KEYGATE_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                !required,
                "KEYGATE_REQUIRE_BROWSER=1 but Chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "skipped: Chromium or chromedriver not installed (KEYGATE_REQUIRE_BROWSER=1 makes this a failure)"
            );
            return None;
        };
        let port = free_port();
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // chromedriver is ready once it listens.
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() >= deadline {
                stop_child(&mut child);
                panic!("chromedriver did not listen on {url} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&url)
            .await
        {
            Ok(client) => client,
            Err(e) => {
                stop_child(&mut child);
                panic!("no Chromium session through chromedriver: {e}");
            }
        };
        let session = client.session_id().await.ok().flatten();
        Some(Browser {
            driver: child,
            driver_addr: addr,
            session,
            client,
            profile,
        })
    }

    /// Ends the session (Chromium exits); chromedriver stops on drop.
    pub async fn close(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.session = None;
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The element matching `css`, waiting for it.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Every element matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find_all {css}: {e}"))
    }

    /// Clears the field `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Chooses the option of value `value` in the select `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// The visible text of `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// Waits until the text of `css` contains `wanted`; returns the text.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        self.wait_text_until(css, &format!("{wanted:?}"), |text| text.contains(wanted))
            .await
    }

    /// Waits until the text of `css` passes `ready` (`what` names it in
    /// the failure); returns the text.
    pub async fn wait_text_until(
        &self,
        css: &str,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.client.find(Locator::Css(css)).await;
            let text = match found {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ready(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {what}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.all(css).await.is_empty() {
            assert!(Instant::now() < deadline, "{css} is still on the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Saves the viewport as `target/console-screenshots/<name>.png`; returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    /// A test that failed before [`Browser::close`] still ends its session
    /// (a plain `DELETE /session/{id}`, no runtime needed), so that no
    /// Chromium outlives its chromedriver.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = super::http::try_request(
                self.driver_addr,
                "DELETE",
                &format!("/session/{session}"),
                &[],
                b"",
            );
        }
        stop_child(&mut self.driver);
    }
}
