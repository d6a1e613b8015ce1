//! A tonic gRPC service protected by keygate: `demo.Greeter/SayHello`
//! answers with the owner of the key that called it.
//!
//! The service is written with tonic's codegen-free API (prost messages
//! by hand, no protoc). Run the server with `cargo run --example tonic
//! --features grpc`; it prints a token, its address and the command that
//! calls it, the same binary as the client:
//!
//! ```text
//! token (shown once): kg_live_…
//! listening on http://127.0.0.1:3003
//! try:
//!   cargo run --example tonic --features grpc -- client 127.0.0.1:3003 kg_live_…
//! ```
//!
//! The client prints
//! `valid key -> OK "hello, alice (you said \"keygate\")", no key -> Unauthenticated "An API key is required."`
//!
//! The client exits non-zero unless the call with the key succeeds and the
//! one without it is refused with `UNAUTHENTICATED`. tonic records each
//! connection's peer, so keys with IP lists work. `KEYGATE_EXAMPLE_ADDR`
//! changes the server's address.

use std::convert::Infallible;
use std::task::{Context, Poll};

use keygate::{AuthenticatedKey, Keygate, MemoryStore, NewKey, Pepper};
use tonic::codegen::{BoxFuture, Service};

/// `demo.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `demo.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const SAY_HELLO: &str = "/demo.Greeter/SayHello";

/// The `demo.Greeter` service.
#[derive(Clone)]
struct Greeter;

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

/// The `SayHello` method.
struct SayHello;

impl tonic::server::UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<tonic::Response<HelloReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        Box::pin(async move {
            // The layer put the authenticated key here.
            let owner = request
                .extensions()
                .get::<AuthenticatedKey>()
                .map(|key| key.owner().to_owned())
                .unwrap_or_default();
            let name = &request.get_ref().name;
            Ok(tonic::Response::new(HelloReply {
                message: format!("hello, {owner} (you said {name:?})"),
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
        Box::pin(async move {
            if request.uri().path() != SAY_HELLO {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(SayHello, request).await)
        })
    }
}

async fn say_hello(
    addr: &str,
    token: Option<&str>,
) -> Result<Result<String, tonic::Status>, Box<dyn std::error::Error>> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await?;
    let mut request = tonic::Request::new(HelloRequest {
        name: "keygate".into(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let answer = client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(SAY_HELLO),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    Ok(answer.map(|reply: tonic::Response<HelloReply>| reply.into_inner().message))
}

async fn client(addr: &str, token: &str) -> Result<(), Box<dyn std::error::Error>> {
    let with_key = say_hello(addr, Some(token)).await?;
    let without = say_hello(addr, None).await?;
    let shown = |answer: &Result<String, tonic::Status>| match answer {
        Ok(message) => format!("OK {message:?}"),
        Err(status) => format!("{:?} {:?}", status.code(), status.message()),
    };
    println!(
        "valid key -> {}, no key -> {}",
        shown(&with_key),
        shown(&without)
    );
    let refused = matches!(&without, Err(s) if s.code() == tonic::Code::Unauthenticated);
    if with_key.is_ok() && refused {
        Ok(())
    } else {
        Err("expected OK with the key and UNAUTHENTICATED without".into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, addr, token] = args.as_slice()
        && mode == "client"
    {
        return client(addr, token).await;
    }

    let keygate = Keygate::builder(MemoryStore::new())
        .pepper(Pepper::random()?)
        .build()?;
    let created = keygate.keys().create(NewKey::new("alice", "tonic")).await?;
    println!("token (shown once): {}", created.token.expose());

    let addr = std::env::var("KEYGATE_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3003".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    println!("try:");
    println!(
        "  cargo run --example tonic --features grpc -- client {local} {}",
        created.token.expose()
    );
    tonic::transport::Server::builder()
        .layer(keygate.layer())
        .add_service(Greeter)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    Ok(())
}
