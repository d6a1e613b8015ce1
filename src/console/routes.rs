//! The console's routes and the headers on every one of their answers.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CSP, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::files;

/// The `Content-Security-Policy` of every console answer: everything from
/// this origin only, no inline script or style, no plugin, no framing, no
/// `<base>`, no form submission, and Trusted Types required (so no string
/// can reach an HTML sink such as `innerHTML`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
require-trusted-types-for 'script'; trusted-types 'none'";

/// The routes `GET /console`, `GET /console/` (the page) and
/// `GET /console/{file}` (its scripts, style sheet and icon), with no
/// credential needed: the page holds no data. A name that is not one of
/// the console's files answers 404 with the API's JSON error object. Every
/// answer carries [`CONTENT_SECURITY_POLICY`], `X-Frame-Options: DENY`,
/// `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff`,
/// `Cross-Origin-Opener-Policy: same-origin` and
/// `Cross-Origin-Resource-Policy: same-origin`; files are sent with
/// `Cache-Control: no-cache` and an `ETag` (`If-None-Match` answers 304).
///
/// Merge it at the root, beside [`admin::router`](crate::admin::router):
/// the page loads `/console/…` and calls `/v1/…` on its own origin.
///
/// ```
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let request = http::Request::get("/console").body(axum::body::Body::empty()).unwrap();
/// let response = keygate::console::router().oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["x-frame-options"], "DENY");
/// assert_eq!(
///     response.headers()["content-security-policy"],
///     keygate::console::CONTENT_SECURITY_POLICY
/// );
/// # }
/// ```
pub fn router() -> Router {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/{file}", get(file))
}

async fn page(headers: HeaderMap) -> Response {
    serve("", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some((index, file)) = files::find(name) else {
        let body = serde_json::json!({
            "error": "not_found",
            "message": "The console has no such file.",
        });
        let mut response = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        secure(response.headers_mut());
        return response;
    };
    let etag = files::etag(index);
    let fresh = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let mut response = match fresh {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => ([(CONTENT_TYPE, file.content_type)], file.body).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, value);
    }
    secure(headers);
    response
}

/// The security headers of every console answer.
fn secure(headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 7] = [
        (CSP, CONTENT_SECURITY_POLICY),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = http::Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn assert_secure(response: &Response) {
        let headers = response.headers();
        assert_eq!(headers[CSP], CONTENT_SECURITY_POLICY);
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_tag_and_security_headers() {
        for path in ["/console", "/console/"] {
            let response = get(path, &[]).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
            assert_secure(&response);
        }
        for file in files::FILES.iter().filter(|f| !f.name.is_empty()) {
            let response = get(&format!("/console/{}", file.name), &[]).await;
            assert_eq!(response.status(), 200, "{}", file.name);
            assert_eq!(response.headers()[CONTENT_TYPE], file.content_type);
            assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
            assert_secure(&response);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(&body[..], file.body);
        }
    }

    #[tokio::test]
    async fn a_matching_etag_answers_304_and_another_the_file() {
        let first = get("/console/app.js", &[]).await;
        let tag = first.headers()[ETAG].to_str().unwrap().to_owned();
        let again = get("/console/app.js", &[("if-none-match", &tag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_secure(&again);
        let other = get("/console/app.js", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(other.status(), 200);
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_json_404_with_the_same_headers() {
        for path in [
            "/console/nope.js",
            "/console/..%2FCargo.toml",
            "/console/index.html",
        ] {
            let response = get(path, &[]).await;
            assert_eq!(response.status(), 404, "{path}");
            assert_secure(&response);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"], "not_found");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(files::FILES[0].body).unwrap();
        let scripts = page.matches("<script").count();
        assert_eq!(
            scripts,
            page.matches("<script type=\"module\" src=\"/console/")
                .count()
        );
        assert!(!page.contains("<style"));
        assert!(!page.contains(" style="));
        let handler = page.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler attribute");
    }
}
