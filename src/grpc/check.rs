//! [`CheckService`]: `envoy.service.auth.v3.Authorization/Check`, answered
//! by the gateway's decision.

use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};

use super::answer;
use super::request::{Original, client};
use crate::gateway::Gateway;
use crate::gateway::proxy::Strip;
use crate::request::peer_ip;

/// Envoy's external authorization API over gRPC, deciding each `Check`
/// exactly as forward auth decides a request: the same [`Gateway`], so the
/// same rules, trusted proxies, limits and costs.
///
/// The method, path (with its query) and headers come from
/// `attributes.request.http`; the client address from
/// `attributes.source.address`, believed only when the caller of `Check`
/// is a trusted proxy (past trusted hops, `X-Forwarded-For` is walked as
/// for forward auth; from an untrusted caller the client is unknown and
/// keys with IP lists are refused).
///
/// - Allowed: gRPC status OK in the `CheckResponse`, an `ok_response`
///   setting the four `X-Keygate-*` identity headers (empty for a public
///   rule), removing the credential (`headers_to_remove`,
///   `query_parameters_to_remove`), and adding `RateLimit-Policy` /
///   `RateLimit` to the client's response when the request was counted.
/// - Denied: the refusal's gRPC status code and message, and a
///   `denied_response` with exactly the HTTP status, headers and body
///   that `/v1/forward-auth` answers.
///
/// The RPC itself always succeeds: the verdict is in the response.
///
/// # Example
///
/// ```
/// use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
/// use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
/// use keygate::gateway::{Gateway, Rules};
/// use keygate::{CheckService, Keygate, MemoryStore, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let check = CheckService::new(Gateway::new(keygate, Rules::default()));
/// // A CheckRequest without any HTTP attributes is refused (400 invalid_request).
/// let answer = check.check(tonic::Request::new(CheckRequest::default())).await?;
/// assert_eq!(answer.get_ref().status.as_ref().unwrap().code, 16);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CheckService {
    gateway: Gateway,
    strip: Arc<Strip>,
}

impl CheckService {
    /// A `Check` service deciding with `gateway`.
    pub fn new(gateway: Gateway) -> CheckService {
        let strip = Arc::new(Strip::new(gateway.keygate().credential_sources()));
        CheckService { gateway, strip }
    }

    /// The tonic service to add to a tonic `Server`.
    pub fn into_server(self) -> AuthorizationServer<CheckService> {
        AuthorizationServer::new(self)
    }

    /// Decides one `CheckRequest` from `caller` (the gRPC peer).
    pub async fn decide(
        &self,
        check: &CheckRequest,
        caller: Option<std::net::IpAddr>,
    ) -> CheckResponse {
        let started = std::time::Instant::now();
        let original = match Original::parse(check) {
            Ok(original) => original,
            Err(rejection) => {
                tracing::debug!("Check: the CheckRequest does not describe an HTTP request");
                return answer::deny_rejection(&rejection, &self.gateway.deny(&rejection));
            }
        };
        let client = client(
            check,
            &original.headers,
            caller,
            self.gateway.trusted_proxies(),
        );
        let decision = self
            .gateway
            .decide(&original.method, &original.uri, &original.headers, client)
            .await;
        if let Some(allowed) = answer::allow(&decision, &original.headers, &self.strip) {
            crate::gateway::access_log::log(
                "grpc",
                &original.method,
                original.uri.path(),
                &decision,
                http::StatusCode::OK,
                started,
            );
            return allowed;
        }
        let (code, message) = decision
            .grpc_status()
            .unwrap_or((16, crate::verify::Rejection::InvalidPath.message()));
        let refusal = self
            .gateway
            .refusal(&decision)
            .unwrap_or_else(|| self.gateway.deny(&crate::verify::Rejection::InvalidPath));
        crate::gateway::access_log::log(
            "grpc",
            &original.method,
            original.uri.path(),
            &decision,
            refusal.status(),
            started,
        );
        answer::deny(code, message, &refusal)
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        // The bounded listener records the peer (`ConnectInfo`), a tonic
        // server its `TcpConnectInfo`: either is read.
        let caller = peer_ip(request.extensions());
        Ok(tonic::Response::new(
            self.decide(request.get_ref(), caller).await,
        ))
    }
}
