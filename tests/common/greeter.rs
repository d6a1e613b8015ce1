//! A small gRPC service, `demo.Greeter` with `SayHello` and `SayGoodbye`,
//! written with tonic's codegen-free API (prost messages by hand, no
//! protoc): it answers with the owner of the key keygate put in the
//! request extensions, and a client for it.

use std::convert::Infallible;
use std::task::{Context, Poll};

use keygate::AuthenticatedKey;
use tonic::codegen::{BoxFuture, Service};

/// `demo.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `demo.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The service: `/demo.Greeter/SayHello` and `/demo.Greeter/SayGoodbye`
/// answer `"<verb> <name>, from <key owner>"` (`anonymous` without a key).
#[derive(Clone, Default)]
pub struct Greeter;

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

#[derive(Clone)]
struct Method(&'static str);

impl tonic::server::UnaryService<HelloRequest> for Method {
    type Response = HelloReply;
    type Future = BoxFuture<tonic::Response<HelloReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        let verb = self.0;
        Box::pin(async move {
            let owner = request
                .extensions()
                .get::<AuthenticatedKey>()
                .map_or("anonymous".to_owned(), |key| key.owner().to_owned());
            Ok(tonic::Response::new(HelloReply {
                message: format!("{verb} {}, from {owner}", request.get_ref().name),
            }))
        })
    }
}

impl<B> Service<http::Request<B>> for Greeter
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = match request.uri().path() {
            "/demo.Greeter/SayHello" => Some(Method("hello")),
            "/demo.Greeter/SayGoodbye" => Some(Method("goodbye")),
            _ => None,
        };
        Box::pin(async move {
            Ok(match method {
                Some(method) => {
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    grpc.unary(method, request).await
                }
                None => tonic::Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// Calls `/demo.Greeter/<method>` on `channel` with `name`, and `metadata`
/// (`(key, value)` pairs) on the request.
pub async fn call(
    channel: tonic::transport::Channel,
    method: &'static str,
    name: &str,
    metadata: &[(&'static str, &str)],
) -> Result<tonic::Response<HelloReply>, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let mut request = tonic::Request::new(HelloRequest { name: name.into() });
    for (key, value) in metadata {
        request
            .metadata_mut()
            .insert(*key, value.parse().expect("ASCII metadata"));
    }
    let path = match method {
        "SayHello" => "/demo.Greeter/SayHello",
        "SayGoodbye" => "/demo.Greeter/SayGoodbye",
        _ => "/demo.Greeter/Unknown",
    };
    client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(path),
            tonic_prost::ProstCodec::default(),
        )
        .await
}
