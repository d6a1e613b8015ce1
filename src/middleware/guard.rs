//! [`Guard`]: what the middleware and the gateway hold to turn a request
//! into a verdict and a refusal into a response.

use std::sync::Arc;

use super::rejection::RejectionResponder;
use crate::request::Reader;
use crate::verify::Verifier;

/// The verifier, where a request's credential and client are read, and
/// how refusals are answered: shared (behind one `Arc`) by a keygate, its
/// layers and its gateway.
pub(crate) struct Guard {
    pub(crate) verifier: Verifier,
    pub(crate) reader: Reader,
    pub(crate) responder: Arc<dyn RejectionResponder>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("verifier", &self.verifier)
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}
