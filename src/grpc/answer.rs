//! A [`Decision`] in Envoy's words: the `CheckResponse`.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status;
use http::{HeaderMap, Response};

use crate::gateway::Decision;
use crate::gateway::proxy::Strip;
use crate::verify::Rejection;

/// A header Envoy sets, replacing any copy the client sent; kept even when
/// empty (the identity headers of a public rule are sent empty).
fn set(name: &str, value: &[u8]) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: true,
        ..HeaderValueOption::default()
    }
}

fn all(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(name, value)| set(name.as_str(), value.as_bytes()))
        .collect()
}

/// Allowed: status OK; the identity headers set on the request to the
/// upstream; the credential removed from it (headers and query
/// parameters; a cookie source rewrites `Cookie` without the credential);
/// the rate-limit headers added to the response to the client.
pub(super) fn allow(
    decision: &Decision,
    headers: &HeaderMap,
    strip: &Strip,
) -> Option<CheckResponse> {
    let identity = decision.identity()?;
    let mut ok = OkHttpResponse::default();
    for (name, value) in &identity {
        ok.headers.push(set(name.as_str(), value.as_bytes()));
    }
    let mut stripped = headers.clone();
    strip.headers(&mut stripped);
    for name in headers.keys() {
        if !stripped.contains_key(name) {
            ok.headers_to_remove.push(name.as_str().to_owned());
        } else if stripped
            .get_all(name)
            .iter()
            .ne(headers.get_all(name).iter())
        {
            let values: Vec<&[u8]> = stripped
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            ok.headers
                .push(set(name.as_str(), &values.join(&b", "[..])));
        }
    }
    ok.query_parameters_to_remove = strip.queries.iter().map(|q| q.to_string()).collect();
    if let Some(limit) = decision.rate_limit_headers() {
        let mut limit_headers = HeaderMap::new();
        limit.insert(&mut limit_headers);
        ok.response_headers_to_add = all(&limit_headers);
    }
    Some(CheckResponse {
        status: Some(Status {
            code: 0,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        dynamic_metadata: None,
    })
}

/// Denied: the gRPC status of the refusal, and a `denied_response`
/// carrying the HTTP refusal exactly (status, every header, body).
pub(super) fn deny(code: u8, message: &str, refusal: &Response<Bytes>) -> CheckResponse {
    CheckResponse {
        status: Some(Status {
            code: i32::from(code),
            message: message.to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(refusal.status().as_u16()),
            }),
            headers: all(refusal.headers()),
            body: String::from_utf8_lossy(refusal.body()).into_owned(),
        })),
        dynamic_metadata: None,
    }
}

/// A refusal made before the decision (the `CheckRequest` itself is
/// malformed), as [`deny`] answers it.
pub(super) fn deny_rejection(rejection: &Rejection, refusal: &Response<Bytes>) -> CheckResponse {
    deny(rejection.grpc_status(), rejection.message(), refusal)
}
