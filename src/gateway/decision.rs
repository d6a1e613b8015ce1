//! [`Gateway`]: the access decision shared by forward auth and the proxy.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, Uri};

use super::rules::{Access, Rules};
use crate::credentials::{self, CredentialError};
use crate::keygate::Keygate;
use crate::rejection::Rejection;
use crate::validator::AuthenticatedKey;

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

/// What to do with a request.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Let it through; `None` for a public rule.
    Allow(Option<AuthenticatedKey>),
    /// Refuse it with this rejection.
    Deny(Rejection),
}

impl Decision {
    /// The identity headers for an allowed request (empty values for a
    /// public rule); `None` for a denial.
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
#[derive(Clone, Debug)]
pub struct Gateway {
    keygate: Keygate,
    rules: Arc<Rules>,
}

impl Gateway {
    /// A gateway applying `rules` with `keygate`.
    pub fn new(keygate: Keygate, rules: Rules) -> Gateway {
        Gateway {
            keygate,
            rules: Arc::new(rules),
        }
    }

    /// The keygate.
    pub fn keygate(&self) -> &Keygate {
        &self.keygate
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Decides a request for `method` and `uri` (path and query of the
    /// original request) carrying `headers`, from `client`.
    pub async fn decide(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Decision {
        let requirement = match self.rules.evaluate(method, uri.path()) {
            Access::Public => return Decision::Allow(None),
            Access::Key(requirement) => requirement,
        };
        let credential = match credentials::extract(headers, uri, &self.keygate.inner.sources) {
            Ok(credential) => credential,
            Err(CredentialError::Missing) => return Decision::Deny(Rejection::MissingToken),
            Err(CredentialError::InvalidRequest) => {
                return Decision::Deny(Rejection::InvalidRequest);
            }
        };
        let key = match self.keygate.authenticate(credential.as_str(), client).await {
            Ok(key) => key,
            Err(rejection) => return Decision::Deny(rejection),
        };
        match requirement {
            Some(required) if !key.scopes().satisfies(required) => {
                Decision::Deny(Rejection::InsufficientScope(required.clone()))
            }
            _ => Decision::Allow(Some(key)),
        }
    }

    /// The SPEC §3 response for a denial.
    pub fn deny(&self, rejection: &Rejection) -> Response<Bytes> {
        self.keygate.inner.responder.respond(rejection)
    }

    /// The proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.keygate.inner.trusted_proxies
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
    fn public_rules_send_empty_identity_headers() {
        let identity = Decision::Allow(None).identity().unwrap();
        assert!(identity.iter().all(|(_, v)| v.is_empty()));
        assert!(Decision::Deny(Rejection::MissingToken).identity().is_none());
    }
}
