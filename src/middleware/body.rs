//! [`AuthBody`]: the response body of the middleware — the inner service's
//! body, or a rejection's JSON.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// The body of a response passing through keygate's layers: either the
    /// inner service's body, untouched, or a rejection's JSON.
    #[derive(Debug)]
    pub struct AuthBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Rejection {
            body: Option<Bytes>,
        },
    }
}

impl<B> AuthBody<B> {
    pub(crate) fn inner(body: B) -> AuthBody<B> {
        AuthBody {
            kind: Kind::Inner { body },
        }
    }

    /// A rejection's body; an empty one (a gRPC trailers-only refusal)
    /// ends at once, so the headers go out with the end of the stream.
    pub(crate) fn rejection(bytes: Bytes) -> AuthBody<B> {
        let body = (!bytes.is_empty()).then_some(bytes);
        AuthBody {
            kind: Kind::Rejection { body },
        }
    }
}

impl<B> Body for AuthBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
