//! `--api-url`: the commands that act through a running `keygate serve`'s
//! HTTP API instead of the database. A small JSON client over hyper-util's
//! HTTP/1.1 client: plain `http://` only (put TLS in front with a tunnel
//! or a local proxy); the key to act with comes from `KEYGATE_TOKEN`,
//! sent as `Authorization: Bearer`, and is never printed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::secret::SecretToken;

/// The environment variable holding the key the CLI acts with.
pub(crate) const TOKEN_VARIABLE: &str = "KEYGATE_TOKEN";
/// How long one exchange with the server may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read.
const MAX_BODY: usize = 16 << 20;

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    /// The command line or the environment is unusable (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or answered something unreadable.
    #[error("{0}")]
    Transport(String),
    /// The server refused: its status and JSON error object.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code of the body (`not_found`, `forbidden`, …).
        code: String,
        /// The body's one-sentence message.
        message: String,
        /// The field named, if any.
        field: Option<String>,
        /// For `insufficient_scope`: the requirement that was not met.
        required: Option<String>,
    },
}

/// A server's HTTP API, and the key to call it with.
pub(crate) struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port` and any path prefix, without a trailing `/`.
    base: String,
    token: SecretToken,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// The API at `url`, called with the key in `KEYGATE_TOKEN`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Usage`] for a URL that is not `http://host[:port][/prefix]`
    /// or a missing or empty `KEYGATE_TOKEN`.
    pub(crate) fn new(url: &str, token: Option<String>) -> Result<Api, RemoteError> {
        let uri: http::Uri = url.parse().map_err(|_| {
            RemoteError::Usage("--api-url: not a URL (expected http://HOST:PORT)".into())
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(RemoteError::Usage(
                    "--api-url: https:// is not supported by this build; reach the server over \
                     http:// through a tunnel (ssh -L) or a local TLS proxy"
                        .into(),
                ));
            }
            _ => {
                return Err(RemoteError::Usage(
                    "--api-url: expected an http:// URL, e.g. http://127.0.0.1:8080".into(),
                ));
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| RemoteError::Usage("--api-url: the URL has no host".into()))?;
        if uri.query().is_some() || authority.as_str().contains('@') {
            return Err(RemoteError::Usage(
                "--api-url: expected http://HOST[:PORT][/PREFIX], without user or query".into(),
            ));
        }
        let base = format!("http://{authority}{}", uri.path().trim_end_matches('/'));
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            RemoteError::Usage(format!(
                "--api-url needs the key to act with in the environment variable {TOKEN_VARIABLE}"
            ))
        })?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Api {
            client,
            base,
            token: SecretToken::new(token),
        })
    }

    /// The base URL, for messages.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `METHOD path` with an optional JSON body; the JSON answer of a 2xx
    /// (`None` for 204).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Transport`] when the server cannot be reached in
    /// time or answers what is not JSON; [`RemoteError::Api`] for a
    /// non-2xx answer.
    pub(crate) async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, RemoteError> {
        let url = format!("{}{path}", self.base);
        let bytes = match body {
            Some(v) => Bytes::from(v.to_string()),
            None => Bytes::new(),
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("keygate-cli/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| {
                RemoteError::Usage(format!(
                    "{TOKEN_VARIABLE} holds characters that cannot be sent in a header"
                ))
            })?;
        auth.set_sensitive(true);
        let request = request
            .header(http::header::AUTHORIZATION, auth)
            .body(Full::new(bytes))
            .map_err(|_| RemoteError::Usage(format!("--api-url: cannot request {url}")))?;
        let unreachable = |why: String| {
            RemoteError::Transport(format!("cannot reach the API at {}: {why}", self.base))
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, RemoteError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))??;
        if status == 204 {
            return Ok(None);
        }
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if (200..300).contains(&status) {
            return json.map(Some).ok_or_else(|| {
                RemoteError::Transport(format!(
                    "the API at {} answered {status} with a body that is not JSON",
                    self.base
                ))
            });
        }
        let text = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Err(RemoteError::Api {
            status,
            code: text("error").unwrap_or_else(|| "unavailable".into()),
            message: text("message")
                .unwrap_or_else(|| format!("the API at {} answered HTTP {status}", self.base)),
            field: text("field"),
            required: text("required"),
        })
    }
}

/// `error: cause: cause`, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `text` percent-encoded for a query string.
pub(crate) fn query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::{Api, RemoteError};

    #[test]
    fn only_plain_http_urls_with_a_token_are_accepted() {
        let api = Api::new("http://127.0.0.1:8080/", Some("kg_live_x".into())).unwrap();
        assert_eq!(api.base(), "http://127.0.0.1:8080");
        let api = Api::new("http://gw.internal/keygate/", Some("t".into())).unwrap();
        assert_eq!(api.base(), "http://gw.internal/keygate");
        for url in [
            "https://gw.internal",
            "ftp://gw",
            "gw.internal:8080",
            "http://user:pw@gw",
            "http://gw/?a=1",
            "",
        ] {
            let error = Api::new(url, Some("t".into())).unwrap_err();
            assert!(matches!(error, RemoteError::Usage(_)), "{url}: {error}");
            assert!(!error.to_string().contains("pw"), "{url}: {error}");
        }
        for token in [None, Some(String::new())] {
            let error = Api::new("http://127.0.0.1:1", token).unwrap_err();
            assert!(error.to_string().contains("KEYGATE_TOKEN"), "{error}");
        }
    }

    proptest::proptest! {
        /// Any text as --api-url is accepted as a plain http:// base
        /// without a trailing slash, or refused as a usage error; never a
        /// panic.
        #[test]
        fn any_url_is_a_base_or_a_usage_error(url in "(http://|https://)?[ -~]{0,40}") {
            match Api::new(&url, Some("t".into())) {
                Ok(api) => {
                    proptest::prop_assert!(api.base().starts_with("http://"));
                    proptest::prop_assert!(!api.base().ends_with('/'));
                }
                Err(e) => proptest::prop_assert!(matches!(e, RemoteError::Usage(_))),
            }
        }
    }

    #[test]
    fn the_token_is_redacted_in_debug() {
        let secret = "kg_live_AAAAAAAAAAAAAAAAbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let api = Api::new("http://127.0.0.1:1", Some(secret.into())).unwrap();
        assert!(!format!("{api:?}").contains("bbbbbbbb"));
    }
}
