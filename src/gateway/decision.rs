//! [`Gateway`]: the access decision shared by forward auth and the proxy.
//!
//! One order for every request: `CONNECT` and `TRACE` are
//! refused (405); a path servers read differently is refused (400
//! `invalid_request`); the rules are applied to the normalized path; a
//! request that no rule allows is refused (403 `forbidden`) **before** any
//! credential is looked at (so the answer tells nothing about the key);
//! then the credential, the key, its IP lists and the rule's scopes.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};

use super::rules::{Access, NormalizedPath, Rules};
use crate::keygate::Keygate;
use crate::limit::LimitState;
use crate::request::CredentialError;
use crate::verify::{AuthenticatedKey, LimitHeaders, Origin, Rejection};

/// `X-Keygate-Key-Id`: the key's id.
pub const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-keygate-key-id");
/// `X-Keygate-Owner`: the key's owner.
pub const OWNER_HEADER: HeaderName = HeaderName::from_static("x-keygate-owner");
/// `X-Keygate-Scopes`: the key's scopes, space-separated.
pub const SCOPES_HEADER: HeaderName = HeaderName::from_static("x-keygate-scopes");
/// `X-Keygate-Environment`: `live` or `test`.
pub const ENVIRONMENT_HEADER: HeaderName = HeaderName::from_static("x-keygate-environment");

/// The four identity headers, in order.
pub const IDENTITY_HEADERS: [HeaderName; 4] = [
    KEY_ID_HEADER,
    OWNER_HEADER,
    SCOPES_HEADER,
    ENVIRONMENT_HEADER,
];

const NO_RULE_BODY: &str = r#"{"error":"forbidden","message":"no rule allows this request"}"#;
const NO_RULE_MESSAGE: &str = "no rule allows this request";
const METHOD_NOT_ALLOWED_BODY: &str =
    r#"{"error":"method_not_allowed","message":"CONNECT and TRACE are not accepted."}"#;
const METHOD_NOT_ALLOWED_MESSAGE: &str = "CONNECT and TRACE are not accepted.";
/// The `Allow` header of that 405: every method but `CONNECT` and `TRACE`
/// (extension methods are accepted too; `Allow` can only name the standard ones).
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// What to do with a request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Let it through; `None` for a public rule.
    Allow(Option<AuthenticatedKey>),
    /// Refuse it with this rejection (a refused path is
    /// [`Rejection::InvalidPath`], a 400 `invalid_request`).
    Deny(Rejection),
    /// A rules file is loaded and none of its rules allows the request:
    /// 403 `{"error":"forbidden","message":"no rule allows this request"}`.
    NoRule,
    /// `CONNECT` or `TRACE`: 405 `method_not_allowed`.
    MethodNotAllowed,
}

/// Where forward auth reads the original request's method and URI, set
/// with [`Gateway::with_forward_auth`] or
/// `keygate serve --forward-auth`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardAuthMode {
    /// nginx `auth_request`: only `X-Original-Method` / `X-Original-URI`.
    Nginx,
    /// Traefik `ForwardAuth`: only `X-Forwarded-Method` / `X-Forwarded-Uri`.
    Traefik,
    /// Envoy `ext_authz` (HTTP): only the request's own method and its path
    /// after `/v1/forward-auth`.
    Envoy,
    /// The default: every convention present is read, and the request is
    /// refused (400 `invalid_request`) when two disagree on the method or
    /// the URI, so a client-sent header that the proxy did not overwrite
    /// never chooses what is judged.
    #[default]
    Auto,
}

impl ForwardAuthMode {
    /// `nginx`, `traefik`, `envoy` or `auto`.
    ///
    /// ```
    /// use keygate::gateway::ForwardAuthMode;
    ///
    /// assert_eq!(ForwardAuthMode::Envoy.as_str(), "envoy");
    /// assert_eq!("nginx".parse::<ForwardAuthMode>().map(ForwardAuthMode::as_str), Ok("nginx"));
    /// assert!("haproxy".parse::<ForwardAuthMode>().is_err());
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardAuthMode::Nginx => "nginx",
            ForwardAuthMode::Traefik => "traefik",
            ForwardAuthMode::Envoy => "envoy",
            ForwardAuthMode::Auto => "auto",
        }
    }
}

impl std::fmt::Display for ForwardAuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A forward-auth mode that is not `nginx`, `traefik`, `envoy` or `auto`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown forward-auth mode {0:?}: expected nginx, traefik, envoy or auto")]
pub struct UnknownForwardAuthMode(String);

impl FromStr for ForwardAuthMode {
    type Err = UnknownForwardAuthMode;

    /// Case-insensitive.
    fn from_str(text: &str) -> Result<ForwardAuthMode, UnknownForwardAuthMode> {
        [
            ForwardAuthMode::Nginx,
            ForwardAuthMode::Traefik,
            ForwardAuthMode::Envoy,
            ForwardAuthMode::Auto,
        ]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| UnknownForwardAuthMode(text.to_owned()))
    }
}

impl Decision {
    /// Where the key's tightest rate limit stands, when the request was
    /// allowed and counted: what the `RateLimit-Policy` and `RateLimit`
    /// headers of the answer describe.
    ///
    /// ```
    /// use keygate::gateway::Decision;
    ///
    /// assert!(Decision::Allow(None).rate_limit().is_none()); // nothing was counted
    /// ```
    pub fn rate_limit(&self) -> Option<&LimitState> {
        match self {
            Decision::Allow(Some(key)) => key.rate_limit(),
            _ => None,
        }
    }

    /// The header values of [`rate_limit`](Decision::rate_limit).
    pub(crate) fn rate_limit_headers(&self) -> Option<LimitHeaders> {
        match self {
            Decision::Allow(Some(key)) => key.rate_limit_headers(),
            _ => None,
        }
    }

    /// The gRPC status code and message a gRPC caller is refused with;
    /// `None` for [`Decision::Allow`]. A rejection maps as
    /// [`Rejection::grpc_status`] says; a request no rule allows and a
    /// `CONNECT`/`TRACE` are 7 `PERMISSION_DENIED`.
    ///
    /// ```
    /// use keygate::gateway::Decision;
    /// use keygate::Rejection;
    ///
    /// assert_eq!(Decision::Deny(Rejection::MissingToken).grpc_status().map(|(code, _)| code), Some(16));
    /// assert_eq!(Decision::NoRule.grpc_status().map(|(code, _)| code), Some(7));
    /// assert_eq!(Decision::Allow(None).grpc_status(), None);
    /// ```
    pub fn grpc_status(&self) -> Option<(u8, &'static str)> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(rejection) => Some((rejection.grpc_status(), rejection.message())),
            Decision::NoRule => Some((7, NO_RULE_MESSAGE)),
            Decision::MethodNotAllowed => Some((7, METHOD_NOT_ALLOWED_MESSAGE)),
        }
    }

    /// The identity headers for an allowed request (empty values for a
    /// public rule); `None` for a denial.
    ///
    /// ```
    /// use keygate::gateway::Decision;
    ///
    /// let public = Decision::Allow(None).identity().expect("allowed");
    /// assert_eq!(public[1].0, "x-keygate-owner");
    /// assert!(public.iter().all(|(_, value)| value.is_empty())); // a public rule: empty values
    /// assert!(Decision::NoRule.identity().is_none());
    /// ```
    pub fn identity(&self) -> Option<[(HeaderName, HeaderValue); 4]> {
        let Decision::Allow(key) = self else {
            return None;
        };
        // Owners may be any printable text: non-ASCII is sent as raw UTF-8
        // bytes (obs-text), never dropped. Control characters cannot occur
        // (they are refused when keys are created).
        let value = |text: &str| {
            HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static(""))
        };
        Some(match key {
            None => IDENTITY_HEADERS.map(|name| (name, HeaderValue::from_static(""))),
            Some(key) => [
                (KEY_ID_HEADER, value(key.id().as_str())),
                (OWNER_HEADER, value(key.owner())),
                (SCOPES_HEADER, value(&key.scopes().to_string())),
                (ENVIRONMENT_HEADER, value(key.environment().as_str())),
            ],
        })
    }
}

/// Route rules plus a keygate: decides requests described by method, path,
/// headers and client address, whoever received them.
///
/// One order for every request: `CONNECT` and `TRACE` are
/// refused ([`Decision::MethodNotAllowed`], 405); a path servers read
/// differently is refused (400 `invalid_request`, see [`Rules`]); the rules
/// are applied to the normalized path; a request that no rule allows is
/// refused ([`Decision::NoRule`], 403 `forbidden`) **before** any
/// credential is looked at, so the answer tells nothing about the key;
/// then the credential, the key, its IP lists and the rule's scopes.
#[derive(Clone, Debug)]
pub struct Gateway {
    keygate: Keygate,
    rules: Arc<Rules>,
    forward_auth: ForwardAuthMode,
}

impl Gateway {
    /// A gateway applying `rules` with `keygate`; forward auth in
    /// [`ForwardAuthMode::Auto`].
    ///
    /// ```
    /// use keygate::gateway::{ForwardAuthMode, Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let gateway = Gateway::new(keygate, Rules::parse_toml("[[rule]]\npath = \"/**\"\n")?);
    /// assert_eq!(gateway.forward_auth(), ForwardAuthMode::Auto);
    /// assert_eq!(gateway.rules().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(keygate: Keygate, rules: Rules) -> Gateway {
        Gateway {
            keygate,
            rules: Arc::new(rules),
            forward_auth: ForwardAuthMode::default(),
        }
    }

    /// Where forward auth reads the original request (default
    /// [`ForwardAuthMode::Auto`]). Name the proxy in front when you know
    /// it: then no other convention's headers are even looked at.
    ///
    /// ```
    /// use keygate::gateway::{ForwardAuthMode, Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let gateway = Gateway::new(keygate, Rules::default()).with_forward_auth(ForwardAuthMode::Nginx);
    /// assert_eq!(gateway.forward_auth(), ForwardAuthMode::Nginx);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_forward_auth(mut self, mode: ForwardAuthMode) -> Gateway {
        self.forward_auth = mode;
        self
    }

    /// The forward-auth mode.
    ///
    /// ```
    /// use keygate::gateway::{ForwardAuthMode, Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let gateway = Gateway::new(keygate, Rules::default()).with_forward_auth("traefik".parse()?);
    /// assert_eq!(gateway.forward_auth().as_str(), "traefik");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_auth(&self) -> ForwardAuthMode {
        self.forward_auth
    }

    /// The keygate.
    ///
    /// ```
    /// use keygate::gateway::{Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).prefix("acme").build()?;
    /// let gateway = Gateway::new(keygate, Rules::default());
    /// assert_eq!(gateway.keygate().token_format().prefix(), "acme");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keygate(&self) -> &Keygate {
        &self.keygate
    }

    /// The rules.
    ///
    /// ```
    /// use keygate::gateway::{Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert!(Gateway::new(keygate, Rules::default()).rules().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Decides a request for `method` and `uri` (path and query of the
    /// original request) carrying `headers`, from `client`, in the order
    /// given on [`Gateway`].
    ///
    /// ```
    /// use http::{HeaderMap, Method, Uri};
    /// use keygate::gateway::{Decision, Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let token = keygate.keys().create(NewKey::new("alice", "ci").scopes(["api:read"])).await?.token;
    /// let rules = Rules::parse_toml("[[rule]]\npath = \"/api/**\"\nrequire = \"api:read\"\n")?;
    /// let gateway = Gateway::new(keygate, rules);
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("authorization", format!("Bearer {}", token.expose()).parse()?);
    /// let client = Some("192.0.2.1".parse()?);
    /// let allowed = gateway.decide(&Method::GET, &Uri::from_static("/api/x"), &headers, client).await;
    /// assert!(matches!(allowed, Decision::Allow(Some(ref key)) if key.owner() == "alice"));
    /// let no_rule = gateway.decide(&Method::GET, &Uri::from_static("/other"), &headers, client).await;
    /// assert!(matches!(no_rule, Decision::NoRule));
    /// let trace = gateway.decide(&Method::TRACE, &Uri::from_static("/api/x"), &headers, client).await;
    /// assert!(matches!(trace, Decision::MethodNotAllowed));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn decide(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Decision {
        match self.admit(method, uri) {
            Ok(path) => self.decide_path(method, &path, uri, headers, client).await,
            Err(refused) => refused,
        }
    }

    /// The checks made before any rule: the method, then the path. The
    /// normalized path on success.
    pub(crate) fn admit(&self, method: &Method, uri: &Uri) -> Result<NormalizedPath, Decision> {
        if *method == Method::CONNECT || *method == Method::TRACE {
            return Err(Decision::MethodNotAllowed);
        }
        NormalizedPath::parse(uri.path()).map_err(|error| {
            tracing::debug!(%error, "path refused");
            self.refused_early(Rejection::InvalidPath)
        })
    }

    /// Decides a request whose path [`Gateway::admit`] normalized.
    pub(crate) async fn decide_path(
        &self,
        method: &Method,
        path: &NormalizedPath,
        uri: &Uri,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Decision {
        let (requirement, cost) = match self.rules.evaluate_normalized(method, path) {
            Access::Public => return Decision::Allow(None),
            Access::Key { requirement, cost } => (requirement, cost),
            // Refused before the credential is looked at.
            Access::NoRule => return Decision::NoRule,
            Access::InvalidPath => return self.refused_early(Rejection::InvalidPath),
        };
        let guard = self.keygate.guard();
        let credential = match guard.reader.credential(headers, uri) {
            Ok(credential) => credential,
            Err(CredentialError::Missing) => return self.refused_early(Rejection::MissingToken),
            Err(CredentialError::InvalidRequest) => {
                return self.refused_early(Rejection::InvalidRequest);
            }
        };
        let authorized = guard
            .verifier
            .authorize_charged(credential.as_str(), Origin::from(client), requirement, cost)
            .await;
        // The request's span (when it has one) names the key from here on.
        let span = tracing::Span::current();
        match authorized {
            Ok(authorized) => {
                span.record("key_id", tracing::field::display(authorized.key().id()));
                Decision::Allow(Some(authorized.into_key()))
            }
            Err(refusal) => {
                if let Some(key) = refusal.key() {
                    span.record("key_id", tracing::field::display(key.id()));
                }
                Decision::Deny(refusal.into_rejection())
            }
        }
    }

    /// A denial decided before the verifier saw a token, counted with the
    /// verifier's.
    fn refused_early(&self, rejection: Rejection) -> Decision {
        self.keygate.guard().verifier.count_refusal(&rejection);
        Decision::Deny(rejection)
    }

    /// The response for a denial, from the keygate's responder.
    ///
    /// ```
    /// use keygate::gateway::{Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper, Rejection};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let gateway = Gateway::new(keygate, Rules::default());
    /// let response = gateway.deny(&Rejection::MissingToken);
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["cache-control"], "no-store");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deny(&self, rejection: &Rejection) -> Response<Bytes> {
        self.keygate.responder().respond(rejection)
    }

    /// The response refusing a request, `None` for [`Decision::Allow`]:
    /// [`Gateway::deny`] for a rejection; for [`Decision::NoRule`] and
    /// [`Decision::MethodNotAllowed`] a JSON error with
    /// `Cache-Control: no-store`.
    ///
    /// ```
    /// use keygate::gateway::{Decision, Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let gateway = Gateway::new(keygate, Rules::default());
    /// assert_eq!(gateway.refusal(&Decision::NoRule).map(|r| r.status()), Some(http::StatusCode::FORBIDDEN));
    /// assert_eq!(gateway.refusal(&Decision::MethodNotAllowed).map(|r| r.status().as_u16()), Some(405));
    /// assert!(gateway.refusal(&Decision::Allow(None)).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refusal(&self, decision: &Decision) -> Option<Response<Bytes>> {
        let (status, body) = match decision {
            Decision::Allow(_) => return None,
            Decision::Deny(rejection) => return Some(self.deny(rejection)),
            Decision::NoRule => (StatusCode::FORBIDDEN, NO_RULE_BODY),
            Decision::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED_BODY),
        };
        let mut response = Response::new(Bytes::from_static(body.as_bytes()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(decision, Decision::MethodNotAllowed) {
            // RFC 9110 §15.5.6: a 405 lists the methods that are accepted.
            headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        Some(response)
    }

    /// The proxies whose forwarding headers are believed.
    ///
    /// ```
    /// use keygate::gateway::{Gateway, Rules};
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .trusted_proxies(["10.0.0.0/8".parse()?])
    ///     .build()?;
    /// assert_eq!(Gateway::new(keygate, Rules::default()).trusted_proxies().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        self.keygate.trusted_proxies()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKey, KeyId};

    #[test]
    fn non_ascii_owners_reach_the_identity_header() {
        let key = ApiKey::new(KeyId::parse("0123456789abcdef").unwrap(), "José Müller");
        let decision = Decision::Allow(Some(AuthenticatedKey::from_key(key)));
        let identity = decision.identity().unwrap();
        assert_eq!(identity[1].0, OWNER_HEADER);
        assert_eq!(identity[1].1.as_bytes(), "José Müller".as_bytes());
        assert_eq!(identity[0].1, "0123456789abcdef");
        assert_eq!(identity[3].1, "live");
    }

    #[test]
    fn a_405_lists_the_methods_accepted_and_only_a_405_does() {
        // Found by schemathesis (allow_header_conformance): RFC 9110 wants
        // `Allow` on every 405.
        let keygate = crate::Keygate::builder(crate::MemoryStore::new())
            .pepper(crate::Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap();
        let gateway = Gateway::new(keygate, Rules::default());
        let response = gateway.refusal(&Decision::MethodNotAllowed).unwrap();
        assert_eq!(response.status(), 405);
        let allow = response.headers()[ALLOW].to_str().unwrap();
        let methods: Vec<&str> = allow.split(", ").collect();
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert!(methods.contains(&method), "{allow}");
        }
        assert!(!methods.contains(&"TRACE") && !methods.contains(&"CONNECT"));
        let no_rule = gateway.refusal(&Decision::NoRule).unwrap();
        assert!(!no_rule.headers().contains_key(ALLOW));
    }

    #[test]
    fn refusals_are_json_and_never_cached() {
        let keygate = crate::Keygate::builder(crate::MemoryStore::new())
            .pepper(crate::Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap();
        let gateway = Gateway::new(keygate, Rules::default());
        assert!(gateway.refusal(&Decision::Allow(None)).is_none());
        for (decision, status, body) in [
            (Decision::NoRule, 403, NO_RULE_BODY),
            (Decision::MethodNotAllowed, 405, METHOD_NOT_ALLOWED_BODY),
        ] {
            let response = gateway.refusal(&decision).unwrap();
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
            assert!(!response.headers().contains_key("www-authenticate"));
            let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(
                json,
                serde_json::from_str::<serde_json::Value>(body).unwrap()
            );
        }
        let no_rule: serde_json::Value = serde_json::from_str(NO_RULE_BODY).unwrap();
        assert_eq!(no_rule["error"], "forbidden");
        assert_eq!(no_rule["message"], NO_RULE_MESSAGE);
        let method: serde_json::Value = serde_json::from_str(METHOD_NOT_ALLOWED_BODY).unwrap();
        assert_eq!(method["message"], METHOD_NOT_ALLOWED_MESSAGE);
        assert_eq!(Decision::NoRule.grpc_status(), Some((7, NO_RULE_MESSAGE)));
        assert_eq!(Decision::Allow(None).grpc_status(), None);
        let denied = gateway
            .refusal(&Decision::Deny(Rejection::InvalidRequest))
            .unwrap();
        assert_eq!(denied.status(), 400);
    }

    #[test]
    fn forward_auth_modes_parse_case_insensitively() {
        for mode in ["nginx", "traefik", "envoy", "auto"] {
            let parsed: ForwardAuthMode = mode.to_uppercase().parse().unwrap();
            assert_eq!(parsed.to_string(), mode);
        }
        assert_eq!(ForwardAuthMode::default(), ForwardAuthMode::Auto);
        let error = "haproxy".parse::<ForwardAuthMode>().unwrap_err();
        assert!(error.to_string().contains("\"haproxy\""), "{error}");
    }

    #[test]
    fn public_rules_send_empty_identity_headers() {
        let identity = Decision::Allow(None).identity().unwrap();
        assert!(identity.iter().all(|(_, v)| v.is_empty()));
        assert!(Decision::Deny(Rejection::MissingToken).identity().is_none());
    }
}
