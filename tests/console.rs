//! The console (`GET /console` of `keygate serve`) in a real browser:
//! headless Chromium driven through chromedriver, against a real
//! `keygate serve` process on a loopback socket. Each test skips (saying
//! so) when Chromium is not installed, unless `KEYGATE_REQUIRE_BROWSER=1`.

mod common;

use common::browser::Browser;
use common::{Serve, ServeOptions};
use serde_json::{Value, json};

/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";
/// WebDriver's Escape key.
const ESCAPE: &str = "\u{E00C}";

fn base(serve: &Serve) -> String {
    format!("http://{}", serve.addr)
}

/// Opens the console and signs in with `token` by keyboard (Enter submits).
async fn sign_in(browser: &Browser, serve: &Serve, token: &str) {
    browser.goto(&format!("{}/console", base(serve))).await;
    browser
        .fill("#sign-in-key", &format!("{token}{ENTER}"))
        .await;
    browser.find("#key-table").await;
}

/// What the page keeps: storage, cookies, URL, markup. None may hold `token`.
async fn assert_token_kept_nowhere(browser: &Browser, token: &str) {
    let kept = browser
        .js(
            "return { local: localStorage.length, session: sessionStorage.length, \
             cookie: document.cookie, url: location.href.includes(arguments[0]), \
             markup: document.documentElement.outerHTML.includes(arguments[0]) };",
            vec![json!(token)],
        )
        .await;
    assert_eq!(
        kept,
        json!({"local": 0, "session": 0, "cookie": "", "url": false, "markup": false}),
        "the key must live in the tab's memory only"
    );
}

/// Every form control on the page has a label (or an aria-label).
async fn assert_every_control_labelled(browser: &Browser) {
    let unlabelled = browser
        .js(
            "return [...document.querySelectorAll('input, select, textarea')] \
             .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label')) \
             .map(e => e.name || e.id || e.outerHTML);",
            vec![],
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

/// The page is no wider than the window (no sideways scrolling).
async fn assert_fits_the_width(browser: &Browser, what: &str) {
    let sizes = browser
        .js(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let (scroll, inner) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
    assert!(
        scroll <= inner,
        "{what}: {scroll} px wide in a {inner} px window"
    );
}

/// Over a plain socket, no browser needed: what `keygate serve` answers.
#[test]
fn serve_answers_the_console_with_security_headers_and_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), ServeOptions::new());
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let response = common::http::get(serve.addr, path, &[]);
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("content-type"), Some(content_type));
        let csp = response.header("content-security-policy").unwrap_or("");
        assert!(
            csp.starts_with("default-src 'self'; script-src 'self'; style-src 'self'"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert!(response.header("etag").is_some(), "{path}");
        assert!(
            response.header("x-request-id").is_some(),
            "{path}: a request id"
        );
    }
    // The page itself holds no key and needs none; the API still does.
    let page = common::http::get(serve.addr, "/console", &[]).text();
    assert!(!page.contains(&serve.bootstrap_token()));
    let api = common::http::get(serve.addr, "/v1/keys", &[]);
    assert_eq!(api.status, 401);
    let missing = common::http::get(serve.addr, "/console/missing.js", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    assert_eq!(missing.header("x-frame-options"), Some("DENY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_creates_uses_rotates_revokes_and_deletes_a_key() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    // A few keys, for a list worth looking at.
    for (owner, name, scopes) in [
        ("ci", "deploy pipeline", json!(["keys:read"])),
        ("analytics", "nightly export", json!(["audit:read"])),
        ("web", "frontend", json!(["keys:read", "keys:create"])),
    ] {
        serve.create_key(
            &admin,
            json!({"owner": owner, "name": name, "scopes": scopes}),
        );
    }

    // A wrong key is refused in plain words, and the page stays signed out.
    browser.goto(&format!("{}/console", base(&serve))).await;
    browser
        .fill("#sign-in-key", &format!("kg_live_not-a-key{ENTER}"))
        .await;
    browser.wait_text("#error", "The key was refused").await;
    assert!(browser.all("#key-table").await.is_empty());

    sign_in(&browser, &serve, &admin).await;
    let list = browser.text("#key-table").await;
    for name in ["bootstrap", "deploy pipeline", "nightly export", "frontend"] {
        assert!(list.contains(name), "the list shows {name}: {list}");
    }
    assert_token_kept_nowhere(&browser, &admin).await;
    browser.screenshot("list").await;

    // Search by owner (the API's filter) and by name (the console's walk).
    browser.fill("#search input[name=owner]", "web").await;
    browser.click("#search button[type=submit]").await;
    let filtered = browser
        .wait_text_until("#key-table", "only the owner web", |t| {
            t.contains("frontend") && !t.contains("nightly export")
        })
        .await;
    assert!(!filtered.contains("bootstrap"), "{filtered}");
    browser.fill("#search input[name=owner]", "").await;
    browser
        .fill("#search input[name=name]", &format!("nightly{ENTER}"))
        .await;
    let filtered = browser
        .wait_text_until("#key-table", "only names with nightly", |t| {
            t.contains("nightly export") && !t.contains("frontend")
        })
        .await;
    assert!(!filtered.contains("deploy pipeline"), "{filtered}");

    // Create, with every kind of field.
    browser.click("a[href='#/new']").await;
    browser.find("#create-form").await;
    let catalog = browser.text("#scope-list").await;
    assert!(
        catalog.contains("keys:read") && catalog.contains("Read the Prometheus metrics"),
        "the scopes come with the catalog's descriptions: {catalog}"
    );
    assert_every_control_labelled(&browser).await;
    browser
        .fill("#create-form [name=name]", "console made")
        .await;
    browser.fill("#create-form [name=owner]", "web").await;
    browser
        .fill("#create-form [name=description]", "made in the browser")
        .await;
    browser
        .click("#create-form input[name=scope][value='keys:read']")
        .await;
    browser
        .fill("#create-form [name=scopes]", "audit:read")
        .await;
    browser
        .select("#create-form [name=expires_in]", "30d")
        .await;
    browser
        .fill("#create-form [name=ip_allow]", "127.0.0.0/8\n::1/128")
        .await;
    browser
        .fill("#create-form [name=ip_deny]", "10.0.0.0/8")
        .await;
    browser
        .fill(
            "#create-form [name=metadata]",
            r#"{"team": "web", "tier": 2}"#,
        )
        .await;
    browser.click("#create-form .add-limit").await;
    browser
        .fill("#create-form [name=limit-name]", "burst")
        .await;
    browser.fill("#create-form [name=limit-limit]", "100").await;
    browser
        .fill("#create-form [name=limit-period]", "1min")
        .await;
    browser
        .fill("#create-form [name=credits-remaining]", "5000")
        .await;
    browser
        .fill("#create-form [name=credits-refill]", "5000")
        .await;
    browser
        .select("#create-form [name=credits-every]", "month")
        .await;
    assert_every_control_labelled(&browser).await;
    // Tall enough for the whole form, from its top.
    browser
        .client
        .set_window_size(1280, 2400)
        .await
        .expect("resize");
    browser.js("window.scrollTo(0, 0);", vec![]).await;
    browser.screenshot("create-form").await;
    browser
        .client
        .set_window_size(1280, 900)
        .await
        .expect("resize");
    browser.click("#create-form button[type=submit]").await;

    // The token, shown once, works against the API.
    let field = browser.find("#new-token").await;
    let token = field.prop("value").await.unwrap().unwrap_or_default();
    assert!(token.starts_with("kg_live_"), "a token: {token:?}");
    assert!(
        browser
            .text("#token-panel")
            .await
            .contains("This token is shown once"),
        "the warning"
    );
    assert!(!browser.all("#copy-token").await.is_empty());
    let answer = serve.call("GET", "/v1/keys", &token, "");
    assert_eq!(answer.status, 200, "the shown token works: {answer:?}");
    let created = serve.call("GET", "/v1/keys?owner=web", &admin, "").json();
    let record = created["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "console made")
        .cloned()
        .expect("the created key");
    assert_eq!(record["description"], "made in the browser");
    let mut scopes: Vec<&str> = record["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["audit:read", "keys:read"]);
    assert_eq!(record["ip_allow"], json!(["127.0.0.0/8", "::1/128"]));
    assert_eq!(record["ip_deny"], json!(["10.0.0.0/8"]));
    assert_eq!(record["metadata"], json!({"team": "web", "tier": 2}));
    assert_eq!(record["rate_limits"][0]["name"], "burst");
    assert_eq!(record["rate_limits"][0]["limit"], 100);
    assert_eq!(record["credits"]["refill"]["every"], "month");
    assert!(record["expires_at"].is_string());
    let first_id = record["id"].as_str().unwrap().to_owned();

    // Dismissed, it is gone from the page.
    browser.click("#dismiss-token").await;
    browser.wait_gone("#new-token").await;
    browser.wait_text("#key-name", "console made").await;
    assert_token_kept_nowhere(&browser, &token).await;
    browser.wait_text("#audit", "key.create").await;
    // The balance as the store holds it (this process may have reserved a
    // block of it for the call made above), and the refill.
    let held = serve
        .call("GET", &format!("/v1/keys/{first_id}"), &admin, "")
        .json()["credits"]["remaining"]
        .clone();
    let credits = browser.text("#key-credits").await;
    assert_eq!(
        credits,
        format!("{held} remaining, set to 5000 every month")
    );

    // Update.
    browser.click("#edit-key").await;
    browser
        .fill("#edit-form [name=name]", "console renamed")
        .await;
    browser.click("#edit-form button[type=submit]").await;
    browser.wait_text("#key-name", "console renamed").await;
    let renamed = serve
        .call("GET", &format!("/v1/keys/{first_id}"), &admin, "")
        .json();
    assert_eq!(renamed["name"], "console renamed");
    browser.wait_text("#audit", "key.update").await;
    browser.screenshot("key").await;

    // Rotate (no grace): a new token shown once; the old one is refused.
    browser.click("#rotate-key").await;
    browser.find("dialog[open] #rotate-grace").await;
    browser.click("dialog[open] button.primary").await;
    let rotated = browser
        .find("#new-token")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(rotated.starts_with("kg_live_") && rotated != token);
    assert_eq!(serve.call("GET", "/v1/keys", &rotated, "").status, 200);
    assert_eq!(serve.call("GET", "/v1/keys", &token, "").status, 401);
    browser.click("#dismiss-token").await;
    browser.wait_gone("#new-token").await;
    browser.wait_text("#key-name", "console renamed").await;
    let second_id = common::token_id(&rotated).to_owned();
    assert_ne!(second_id, first_id);

    // Escape closes a confirmation without doing anything.
    browser.click("#delete-key").await;
    browser.find("dialog[open]").await;
    let focused = browser
        .client
        .active_element()
        .await
        .expect("the focused control");
    focused.send_keys(ESCAPE).await.expect("press Escape");
    browser.wait_gone("dialog[open]").await;
    let still = serve.call("GET", &format!("/v1/keys/{second_id}"), &admin, "");
    assert_eq!(still.status, 200);

    // Revoke with a reason: the API refuses the token from then on.
    browser.click("#revoke-key").await;
    browser
        .fill("dialog[open] #revoke-reason", "done with the test")
        .await;
    browser.click("dialog[open] button.danger").await;
    browser.wait_text(".head .badge", "revoked").await;
    browser.wait_text("main", "done with the test").await;
    let refused = serve.call("GET", "/v1/keys", &rotated, "");
    assert_eq!(refused.status, 401, "a revoked key is refused: {refused:?}");
    browser.wait_text("#audit", "key.revoke").await;

    // Delete, confirmed: the record is gone.
    browser.click("#delete-key").await;
    browser.click("dialog[open] button.danger").await;
    browser.find("#key-table").await;
    browser
        .wait_text("#status", "Deleted key console renamed")
        .await;
    let gone = serve.call("GET", &format!("/v1/keys/{second_id}"), &admin, "");
    assert_eq!(gone.status, 404);

    // Signing out forgets the key.
    browser.click("#sign-out").await;
    browser.find("#sign-in-key").await;
    assert_token_kept_nowhere(&browser, &admin).await;
    let signed_in = browser
        .js("return document.getElementById('who').textContent;", vec![])
        .await;
    assert_eq!(signed_in, json!(""));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_name_description_or_metadata_renders_as_text() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    let name = r#"<img src=x onerror="window.__xss=1">"#;
    let description = r#"<script>window.__xss=2</script>"onerror=alert(1) x=""#;
    let metadata = json!({"<b>bold</b>": "<img src=x onerror=window.__xss=3>", "note": "\"><svg onload=window.__xss=4>"});
    let (_, record) = serve.create_key(
        &admin,
        json!({"owner": "<i>owner</i>", "name": name, "description": description, "metadata": metadata}),
    );
    let id = record["id"].as_str().unwrap().to_owned();

    sign_in(&browser, &serve, &admin).await;
    let list = browser.wait_text("#key-table", name).await;
    assert!(list.contains("<i>owner</i>"), "{list}");
    browser.click(&format!("a[href='#/key/{id}']")).await;
    assert_eq!(browser.wait_text("#key-name", "<img").await, name);
    assert_eq!(browser.text("#key-description").await, description);
    let shown: Value =
        serde_json::from_str(&browser.text("#key-metadata").await).expect("metadata as JSON text");
    assert_eq!(shown, metadata);
    // Open the edit form too: the values go into fields as values.
    browser.click("#edit-key").await;
    let value = browser
        .find("#edit-form [name=name]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some(name));
    let injected = browser
        .js(
            "return { xss: typeof window.__xss, \
             img: document.querySelectorAll('img[src=x], main img, main svg, main script, main b, main i').length };",
            vec![],
        )
        .await;
    assert_eq!(
        injected,
        json!({"xss": "undefined", "img": 0}),
        "markup ran or became elements"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_fits_a_360_px_screen_and_labels_every_control() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    let (_, record) = serve.create_key(
        &admin,
        json!({"name": "a key with a rather long name for a narrow screen", "scopes": ["keys:read"],
               "rate_limits": [{"name": "burst", "limit": 5, "period": "1s"}],
               "credits": {"remaining": 10}}),
    );
    browser
        .client
        .set_window_size(360, 800)
        .await
        .expect("resize");
    browser.goto(&format!("{}/console", base(&serve))).await;
    browser.find("#sign-in-key").await;
    assert_every_control_labelled(&browser).await;
    assert_fits_the_width(&browser, "sign in").await;
    sign_in(&browser, &serve, &admin).await;
    assert_every_control_labelled(&browser).await;
    assert_fits_the_width(&browser, "the list").await;
    browser.click("a[href='#/new']").await;
    browser.find("#create-form").await;
    browser.click("#create-form .add-limit").await;
    assert_fits_the_width(&browser, "the create form").await;
    let id = record["id"].as_str().unwrap();
    browser
        .goto(&format!("{}/console#/key/{id}", base(&serve)))
        .await;
    browser.client.refresh().await.expect("reload");
    // A reload forgets the key: the page asks for it again.
    browser.find("#sign-in-key").await;
    browser
        .fill("#sign-in-key", &format!("{admin}{ENTER}"))
        .await;
    browser.wait_text("#key-name", "rather long name").await;
    browser.wait_text("#audit", "key.create").await;
    assert_fits_the_width(&browser, "a key").await;
    browser.screenshot("key-360px").await;
    browser.click("#edit-key").await;
    browser.find("#edit-form").await;
    assert_every_control_labelled(&browser).await;
    assert_fits_the_width(&browser, "the edit form").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_scope_is_told_so_in_plain_words_and_nothing_is_written() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    let (reader, _) = serve.create_key(
        &admin,
        json!({"owner": "team", "name": "reader", "scopes": ["keys:read"]}),
    );
    sign_in(&browser, &serve, &reader).await;
    let list = browser.text("#key-table").await;
    assert!(
        list.contains("reader") && !list.contains("bootstrap"),
        "{list}"
    );
    browser.click("a[href='#/new']").await;
    browser
        .fill("#create-form [name=name]", "not allowed")
        .await;
    browser.click("#create-form button[type=submit]").await;
    browser
        .wait_text(
            "#error",
            "Your key may not do this: it lacks the scope keys:create.",
        )
        .await;
    assert!(browser.all("#new-token").await.is_empty());
    let keys = serve.call("GET", "/v1/keys?owner=team", &admin, "").json();
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    // A field the page can check is refused, in plain words, before any call.
    browser.fill("#create-form [name=metadata]", "[1, 2]").await;
    browser.click("#create-form button[type=submit]").await;
    browser
        .wait_text("#error", "Metadata must be a JSON object")
        .await;
    browser.close().await;
}

/// The API page a name or status search of the console fetches at a time
/// (`WALK_PAGE` in app.js: the API's largest page).
const WALK_PAGE: usize = 1000;

/// The names of the rows of the key table now.
async fn row_names(browser: &Browser) -> Vec<String> {
    let names = browser
        .js(
            "return [...document.querySelectorAll('#key-table tbody tr td:first-child')].map(e => e.textContent);",
            vec![],
        )
        .await;
    serde_json::from_value(names).expect("names")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_and_status_searches_cover_every_page_of_the_listing() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), ServeOptions::new());
    let admin = serve.bootstrap_token();
    let fillers = WALK_PAGE + 50;
    std::thread::scope(|scope| {
        for part in 0..2 {
            let (serve, admin) = (&serve, &admin);
            scope.spawn(move || {
                for i in (part..fillers).step_by(2) {
                    serve.create_key(
                        admin,
                        json!({"owner": "bulk", "name": format!("filler {i:04}")}),
                    );
                }
            });
        }
    });
    // A second later: after every filler in the listing's (created_at, id) order.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    serve.create_key(
        &admin,
        json!({"owner": "bulk", "name": "needle in the haystack"}),
    );
    let (_, late) = serve.create_key(&admin, json!({"owner": "bulk", "name": "late revoked"}));
    let revoked = serve.call(
        "POST",
        &format!("/v1/keys/{}/revoke", late["id"].as_str().unwrap()),
        &admin,
        "{}",
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let total = fillers + 3;
    // Neither is on the API's first page, even of the largest size.
    let first = serve
        .call(
            "GET",
            &format!("/v1/keys?include_revoked=true&limit={WALK_PAGE}"),
            &admin,
            "",
        )
        .json();
    let first_names: Vec<&str> = first["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(first_names.len(), WALK_PAGE);
    assert!(first["next_cursor"].is_string());
    assert!(
        !first_names.contains(&"needle in the haystack") && !first_names.contains(&"late revoked")
    );

    sign_in(&browser, &serve, &admin).await;
    // By name: found on the API's second page.
    browser
        .fill("#search input[name=name]", &format!("haystack{ENTER}"))
        .await;
    browser
        .wait_text("#key-table", "needle in the haystack")
        .await;
    assert_eq!(row_names(&browser).await, ["needle in the haystack"]);
    browser
        .wait_text(
            "#search-summary",
            &format!("Searched all 1,{:03} keys.", total - 1000),
        )
        .await;
    assert!(
        browser
            .find("#next-page")
            .await
            .attr("disabled")
            .await
            .unwrap()
            .is_some(),
        "nothing more to search"
    );

    // By status: the revoked key, beyond the first page, and only it.
    browser.fill("#search input[name=name]", "").await;
    browser
        .select("#search select[name=status]", "revoked")
        .await;
    browser.click("#search button[type=submit]").await;
    browser
        .wait_text_until("#key-table", "only the revoked key", |t| {
            t.contains("late revoked") && !t.contains("needle")
        })
        .await;
    assert_eq!(row_names(&browser).await, ["late revoked"]);
    // No active key has that name.
    browser
        .select("#search select[name=status]", "active")
        .await;
    browser
        .fill("#search input[name=name]", &format!("revoked{ENTER}"))
        .await;
    browser.wait_text("#results", "No key matches.").await;

    // A page full of matches stops the walk; "More matches" continues
    // from the match after the last one shown, without repeating any.
    browser.select("#search select[name=status]", "").await;
    browser
        .fill("#search input[name=name]", &format!("filler{ENTER}"))
        .await;
    browser
        .wait_text("#search-summary", "Searched the first 1,000 keys")
        .await;
    let page_one = row_names(&browser).await;
    assert_eq!(page_one.len(), 25, "{page_one:?}");
    browser.click("#next-page").await;
    browser.wait_text("#key-table caption", "page 2").await;
    let page_two = row_names(&browser).await;
    assert_eq!(page_two.len(), 25, "{page_two:?}");
    assert!(
        page_one.iter().all(|name| !page_two.contains(name)),
        "{page_one:?} {page_two:?}"
    );
    browser.click("#previous-page").await;
    browser.wait_text("#key-table caption", "page 1").await;
    assert_eq!(row_names(&browser).await, page_one);

    // A new search cancels the walk in progress: its results never show.
    browser
        .js(
            "window.__stale = false; \
             const main = document.getElementById('main'); \
             new MutationObserver(() => { \
               if (main.textContent.includes('needle in the haystack')) window.__stale = true; \
             }).observe(main, { subtree: true, childList: true, characterData: true }); \
             const search = (text) => { \
               const form = document.getElementById('search'); \
               form.querySelector('[name=name]').value = text; \
               form.requestSubmit(); \
             }; \
             search('needle'); search('filler 0007');",
            vec![],
        )
        .await;
    browser.wait_text("#key-table", "filler 0007").await;
    browser.wait_text("#search-summary", "Searched all").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(row_names(&browser).await, ["filler 0007"]);
    let stale = browser.js("return window.__stale;", vec![]).await;
    assert_eq!(stale, json!(false), "the cancelled search's results showed");
    browser.close().await;
}
