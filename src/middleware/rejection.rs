//! The one place that turns a [`Rejection`] into a response: the
//! responder's HTTP answer, or — for a gRPC request — that answer in the
//! gRPC trailers-only form.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::verify::{InvalidReason, Rejection};

/// Builds the response for a rejection. Replace it with
/// [`KeygateBuilder::responder`](crate::KeygateBuilder::responder); closures
/// `Fn(&Rejection) -> Response<Bytes>` implement it.
///
/// Every auth error is JSON `{"error": "<code>", "message": "<sentence>"}`
/// with `Cache-Control: no-store`; 401s and the scope 403 carry
/// `WWW-Authenticate` (RFC 6750). Every `invalid_token` response is
/// byte-identical whatever the cause, unless the development-only
/// `expose_reason` setting adds a `reason` field.
///
/// # Example
///
/// ```
/// use keygate::{DefaultResponder, Rejection, RejectionResponder};
///
/// let responder = DefaultResponder::new("keygate").unwrap();
/// let response = responder.respond(&Rejection::MissingToken);
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"keygate\"");
/// ```
pub trait RejectionResponder: Send + Sync + 'static {
    /// The response for `rejection`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use keygate::{Rejection, RejectionResponder};
    ///
    /// // Any `Fn(&Rejection) -> Response<Bytes>` is a responder.
    /// let plain = |rejection: &Rejection| {
    ///     Response::builder().status(rejection.status()).body(Bytes::from(rejection.code())).unwrap()
    /// };
    /// let response = plain.respond(&Rejection::IpNotAllowed);
    /// assert_eq!(response.status(), 403);
    /// assert_eq!(response.body(), "ip_not_allowed");
    /// ```
    fn respond(&self, rejection: &Rejection) -> Response<Bytes>;
}

impl<F> RejectionResponder for F
where
    F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// Whether a request is gRPC: its `content-type` starts with
/// `application/grpc` (`application/grpc`, `application/grpc+proto`, …).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The refusal of a request: `responder`'s response to `rejection`, in the
/// gRPC trailers-only form when the request is gRPC (`grpc`).
pub(crate) fn refuse(
    responder: &dyn RejectionResponder,
    rejection: &Rejection,
    grpc: bool,
) -> Response<Bytes> {
    let response = responder.respond(rejection);
    if grpc {
        grpc_form(response, rejection.grpc_status(), rejection.message())
    } else {
        response
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// An HTTP refusal as a gRPC trailers-only response: HTTP 200,
/// `content-type: application/grpc`, `grpc-status: <code>` and
/// `grpc-message: <message, percent-encoded>`, no body. The refusal's
/// other headers (`WWW-Authenticate`, `Retry-After`, `RateLimit*`,
/// `Cache-Control`) stay; its JSON body and content headers go.
pub(crate) fn grpc_form(response: Response<Bytes>, code: u8, message: &str) -> Response<Bytes> {
    let (mut parts, _json) = response.into_parts();
    parts.status = StatusCode::OK;
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    parts
        .headers
        .insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::from_str(&grpc_percent_encode(message)) {
        parts.headers.insert(GRPC_MESSAGE, message);
    }
    Response::from_parts(parts, Bytes::new())
}

/// gRPC's `grpc-message` encoding: every byte outside printable ASCII
/// (0x20–0x7E), and `%` itself, as `%XX` (upper-case hex).
fn grpc_percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The configured responder, left in the extensions of requests that an
/// optional layer let through without a key, for the axum extractor.
#[derive(Clone)]
#[cfg_attr(not(feature = "axum"), expect(dead_code))]
pub(crate) struct ResponderHandle(pub(crate) Arc<dyn RejectionResponder>);

/// The default responses: a JSON body `{"error", "message"}`, `Cache-Control: no-store`,
/// and `WWW-Authenticate` on 401s and the scope 403.
///
/// ```
/// use keygate::{DefaultResponder, InvalidReason, Rejection, RejectionResponder as _};
///
/// let responder = DefaultResponder::new("keygate")?;
/// let revoked = responder.respond(&Rejection::InvalidToken(InvalidReason::Revoked));
/// let unknown = responder.respond(&Rejection::InvalidToken(InvalidReason::UnknownId));
/// // Every invalid_token answer is the same, byte for byte.
/// assert_eq!(revoked.body(), unknown.body());
/// assert_eq!(revoked.headers(), unknown.headers());
/// # Ok::<(), keygate::InvalidRealm>(())
/// ```
#[derive(Clone, Debug)]
pub struct DefaultResponder {
    expose_reason: bool,
    missing: HeaderValue,
    invalid_request: HeaderValue,
    invalid_token: HeaderValue,
    realm: Arc<str>,
    /// Bodies of missing_token, invalid_request, invalid_token,
    /// ip_not_allowed, unavailable and the refused path.
    bodies: [Bytes; 6],
}

/// A realm that cannot sit in a quoted-string.
///
/// ```
/// use keygate::DefaultResponder;
///
/// assert!(DefaultResponder::new("bad\nrealm").is_err());
/// assert!(DefaultResponder::new("my app").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the realm must be 1 to 128 visible ASCII characters without '\"' or '\\'")]
pub struct InvalidRealm;

impl DefaultResponder {
    /// Responses for `realm`.
    ///
    /// # Errors
    ///
    /// [`InvalidRealm`] unless the realm is 1–128 visible ASCII characters
    /// (spaces allowed) without `"` or `\`.
    ///
    /// ```
    /// use keygate::{DefaultResponder, Rejection, RejectionResponder as _};
    ///
    /// let responder = DefaultResponder::new("acme")?;
    /// let response = responder.respond(&Rejection::MissingToken);
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="acme""#);
    /// assert!(DefaultResponder::new("a\"b").is_err());
    /// # Ok::<(), keygate::InvalidRealm>(())
    /// ```
    pub fn new(realm: &str) -> Result<DefaultResponder, InvalidRealm> {
        let ok = (1..=128).contains(&realm.len())
            && realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            return Err(InvalidRealm);
        }
        let challenge = |error: Option<&str>| {
            let text = match error {
                None => format!("Bearer realm=\"{realm}\""),
                Some(e) => format!("Bearer realm=\"{realm}\", error=\"{e}\""),
            };
            HeaderValue::from_str(&text).map_err(|_| InvalidRealm)
        };
        let fixed = |r: Rejection| {
            Bytes::from(serde_json::json!({"error": r.code(), "message": r.message()}).to_string())
        };
        Ok(DefaultResponder {
            bodies: [
                fixed(Rejection::MissingToken),
                fixed(Rejection::InvalidRequest),
                fixed(Rejection::InvalidToken(InvalidReason::Malformed)),
                fixed(Rejection::IpNotAllowed),
                fixed(Rejection::Unavailable),
                fixed(Rejection::InvalidPath),
            ],
            expose_reason: false,
            missing: challenge(None)?,
            invalid_request: challenge(Some("invalid_request"))?,
            invalid_token: challenge(Some("invalid_token"))?,
            realm: realm.into(),
        })
    }

    /// Adds `"reason"` (e.g. `expired`) to `invalid_token` bodies.
    /// **For development only**: it tells an attacker which ids exist.
    ///
    /// ```
    /// use keygate::{DefaultResponder, InvalidReason, Rejection, RejectionResponder as _};
    ///
    /// let responder = DefaultResponder::new("keygate")?.expose_reason(true); // development only
    /// let response = responder.respond(&Rejection::InvalidToken(InvalidReason::Expired));
    /// let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    /// assert_eq!(json["reason"], "expired");
    /// # Ok::<(), keygate::InvalidRealm>(())
    /// ```
    pub fn expose_reason(mut self, expose: bool) -> DefaultResponder {
        self.expose_reason = expose;
        self
    }

    fn body(&self, rejection: &Rejection) -> Bytes {
        // Bodies that never vary are built once (a flood of bad tokens then
        // costs no JSON encoding).
        let fixed = match rejection {
            Rejection::MissingToken => Some(&self.bodies[0]),
            Rejection::InvalidRequest => Some(&self.bodies[1]),
            Rejection::InvalidToken(_) if !self.expose_reason => Some(&self.bodies[2]),
            Rejection::IpNotAllowed => Some(&self.bodies[3]),
            Rejection::Unavailable => Some(&self.bodies[4]),
            Rejection::InvalidPath => Some(&self.bodies[5]),
            _ => None,
        };
        if let Some(body) = fixed {
            return body.clone();
        }
        let mut body = serde_json::json!({
            "error": rejection.code(),
            "message": rejection.message(),
        });
        match rejection {
            Rejection::InsufficientScope(required) => {
                body["required"] = serde_json::Value::String(required.to_string());
            }
            Rejection::RateLimited { limit, .. } => {
                body["limit"] = serde_json::Value::String(limit.name.as_str().to_owned());
            }
            Rejection::InvalidToken(reason) if self.expose_reason => {
                body["reason"] = serde_json::Value::String(reason.as_str().to_owned());
            }
            _ => {}
        }
        Bytes::from(body.to_string())
    }
}

impl RejectionResponder for DefaultResponder {
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        let mut response = Response::new(self.body(rejection));
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenge = match rejection {
            Rejection::MissingToken => Some(self.missing.clone()),
            Rejection::InvalidRequest | Rejection::InvalidPath => {
                Some(self.invalid_request.clone())
            }
            Rejection::InvalidToken(_) => Some(self.invalid_token.clone()),
            Rejection::InsufficientScope(required) => {
                let scopes: Vec<&str> = required.scopes().iter().map(|s| s.as_str()).collect();
                HeaderValue::from_str(&format!(
                    "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
                    self.realm,
                    scopes.join(" ")
                ))
                .ok()
            }
            Rejection::IpNotAllowed
            | Rejection::Unavailable
            | Rejection::RateLimited { .. }
            | Rejection::CreditsExhausted { .. } => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        match rejection {
            Rejection::Unavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Rejection::RateLimited {
                limit,
                retry_after_secs,
            } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                limit.insert_headers(headers);
            }
            Rejection::CreditsExhausted {
                retry_after_secs: Some(secs),
            } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Requirement;

    fn responder() -> DefaultResponder {
        DefaultResponder::new("keygate").unwrap()
    }

    fn json(r: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    #[test]
    fn rate_limited_is_429_with_retry_after_and_the_limit_named() {
        let rejection = Rejection::RateLimited {
            limit: Box::new(crate::limit::LimitState {
                name: "burst".parse().unwrap(),
                limit: 20,
                remaining: 0,
                reset_secs: 60,
                period: crate::limit::Period::parse("1min").unwrap(),
            }),
            retry_after_secs: 7,
        };
        let response = responder().respond(&rejection);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        assert_eq!(
            response.headers()["ratelimit-policy"],
            r#""burst";q=20;w=60"#
        );
        assert_eq!(response.headers()["ratelimit"], r#""burst";r=0;t=60"#);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            json(&response),
            serde_json::json!({
                "error": "rate_limited",
                "message": "The API key's rate limit is exhausted; retry after the time given.",
                "limit": "burst",
            })
        );
    }

    #[test]
    fn each_rejection_has_its_status_challenge_and_code() {
        let required = Arc::new(
            Requirement::parse("workspaces:read and (templates:use or templates:*)").unwrap(),
        );
        let cases = [
            (
                Rejection::MissingToken,
                401,
                Some("Bearer realm=\"keygate\""),
            ),
            (
                Rejection::InvalidRequest,
                400,
                Some("Bearer realm=\"keygate\", error=\"invalid_request\""),
            ),
            (
                Rejection::InvalidToken(InvalidReason::Expired),
                401,
                Some("Bearer realm=\"keygate\", error=\"invalid_token\""),
            ),
            (Rejection::IpNotAllowed, 403, None),
            (
                Rejection::InsufficientScope(required),
                403,
                Some(
                    "Bearer realm=\"keygate\", error=\"insufficient_scope\", scope=\"workspaces:read templates:use templates:*\"",
                ),
            ),
            (Rejection::Unavailable, 503, None),
            (
                Rejection::InvalidPath,
                400,
                Some("Bearer realm=\"keygate\", error=\"invalid_request\""),
            ),
        ];
        for (rejection, status, challenge) in cases {
            let r = responder().respond(&rejection);
            assert_eq!(r.status(), status, "{rejection:?}");
            assert_eq!(
                r.headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                challenge,
                "{rejection:?}"
            );
            assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
            assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
            let body = json(&r);
            assert_eq!(body["error"], rejection.code());
            assert!(body["message"].as_str().unwrap().ends_with('.'));
        }
        let r = responder().respond(&Rejection::Unavailable);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn a_refused_path_says_so_and_not_that_the_credential_is_wrong() {
        let body = json(&responder().respond(&Rejection::InvalidPath));
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(
            body["message"],
            "The request path or method is malformed or ambiguous and is refused."
        );
        assert_ne!(body["message"], Rejection::InvalidRequest.message());
    }

    #[test]
    fn insufficient_scope_body_names_the_requirement() {
        let required = Arc::new(Requirement::parse("a:b OR c:d").unwrap());
        let body = json(&responder().respond(&Rejection::InsufficientScope(required)));
        assert_eq!(body["required"], "a:b or c:d");
    }

    #[test]
    fn invalid_token_responses_are_identical_whatever_the_reason() {
        let reasons = [
            InvalidReason::Malformed,
            InvalidReason::BadChecksum,
            InvalidReason::UnknownId,
            InvalidReason::WrongSecret,
            InvalidReason::Revoked,
            InvalidReason::Expired,
            InvalidReason::WrongEnvironment,
            InvalidReason::TooLong,
        ];
        let first = responder().respond(&Rejection::InvalidToken(reasons[0]));
        for reason in reasons {
            let r = responder().respond(&Rejection::InvalidToken(reason));
            assert_eq!(r.body(), first.body());
            assert_eq!(r.headers(), first.headers());
        }
        let dev = responder().expose_reason(true);
        let body = json(&dev.respond(&Rejection::InvalidToken(InvalidReason::Revoked)));
        assert_eq!(body["reason"], "revoked");
    }

    #[test]
    fn grpc_refusals_are_trailers_only_with_the_mapped_status() {
        let cases = [
            (Rejection::MissingToken, "16"),
            (Rejection::InvalidRequest, "16"),
            (Rejection::InvalidToken(InvalidReason::Expired), "16"),
            (Rejection::IpNotAllowed, "7"),
            (
                Rejection::InsufficientScope(Arc::new(Requirement::parse("a:b").unwrap())),
                "7",
            ),
            (
                Rejection::CreditsExhausted {
                    retry_after_secs: None,
                },
                "8",
            ),
            (Rejection::Unavailable, "14"),
        ];
        for (rejection, code) in cases {
            let http = refuse(&responder(), &rejection, false);
            assert_eq!(http.status(), rejection.status());
            let grpc = refuse(&responder(), &rejection, true);
            assert_eq!(grpc.status(), 200, "{rejection:?}");
            assert_eq!(grpc.headers()[CONTENT_TYPE], "application/grpc");
            assert_eq!(grpc.headers()["grpc-status"], code, "{rejection:?}");
            assert_eq!(grpc.headers()["grpc-message"], rejection.message());
            assert_eq!(grpc.headers()[CACHE_CONTROL], "no-store");
            assert!(grpc.body().is_empty());
            assert!(grpc.headers().get(CONTENT_LENGTH).is_none());
        }
        let grpc = refuse(&responder(), &Rejection::Unavailable, true);
        assert_eq!(grpc.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn grpc_invalid_token_refusals_are_identical_whatever_the_reason() {
        let first = refuse(
            &responder(),
            &Rejection::InvalidToken(InvalidReason::UnknownId),
            true,
        );
        for reason in [
            InvalidReason::Malformed,
            InvalidReason::WrongSecret,
            InvalidReason::Revoked,
            InvalidReason::Expired,
        ] {
            let r = refuse(&responder(), &Rejection::InvalidToken(reason), true);
            assert_eq!(r.headers(), first.headers());
            assert_eq!(r.body(), first.body());
        }
    }

    #[test]
    fn grpc_content_types_are_recognised() {
        for (value, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc-web", true),
            ("application/json", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_grpc(&headers), grpc, "{value}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    proptest::proptest! {
        #[test]
        fn grpc_messages_encode_to_a_header_value_that_decodes_back(message in ".{0,64}") {
            let encoded = grpc_percent_encode(&message);
            proptest::prop_assert!(HeaderValue::from_str(&encoded).is_ok());
            let decoded = percent_decode(&encoded);
            proptest::prop_assert_eq!(decoded, message.as_bytes());
        }
    }

    fn percent_decode(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn realms_that_break_the_header_are_refused() {
        for bad in ["", "a\"b", "a\\b", "tab\there", "é", &"r".repeat(129)] {
            assert!(DefaultResponder::new(bad).is_err(), "{bad:?}");
        }
        let r = DefaultResponder::new("My API")
            .unwrap()
            .respond(&Rejection::MissingToken);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"My API\"");
    }
}
