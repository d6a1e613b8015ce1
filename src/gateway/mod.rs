//! The gateway: route rules, forward auth for nginx / Traefik /
//! Envoy, and an authenticating reverse proxy — keygate in front of
//! services in any language.
//!
//! [`Rules`] say which requests are public and which scopes others need
//! (with a rules file, what no rule allows is refused); paths that servers
//! read differently are refused before any rule; [`Gateway::decide`]
//! applies them with a [`Keygate`](crate::Keygate);
//! [`forward_auth`] answers auth subrequests; [`proxy`] forwards allowed
//! requests upstream with the credential removed and `X-Keygate-*`
//! identity headers set; [`RequestIdLayer`] gives every request an
//! `X-Request-Id`; forward auth and the proxy write one access-log line
//! (target `keygate::access`) per decision.

pub(crate) mod access_log;
mod decision;
pub mod forward_auth;
pub mod proxy;
mod request_id;
mod rules;

pub use decision::{
    Decision, ENVIRONMENT_HEADER, ForwardAuthMode, Gateway, IDENTITY_HEADERS, KEY_ID_HEADER,
    OWNER_HEADER, SCOPES_HEADER, UnknownForwardAuthMode,
};
pub use request_id::{
    REQUEST_ID_HEADER, RequestId, RequestIdFuture, RequestIdLayer, RequestIdService,
};
pub use rules::{Access, MAX_RULE_COST, Rules, RulesError};
// The fuzz targets' entry (`crate::fuzz`).
#[cfg(feature = "__fuzz")]
pub(crate) use rules::NormalizedPath;
