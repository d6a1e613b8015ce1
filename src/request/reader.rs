//! [`Reader`]: where a request's credential and client address are read.

use http::{Extensions, HeaderMap, Uri};
use ipnet::IpNet;

use super::client_ip::client_ip;
use super::credentials::{self, Credential, CredentialError, CredentialSource};
use crate::verify::Origin;

/// The request-side settings: the credential sources and the proxies
/// whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug)]
pub(crate) struct Reader {
    sources: Vec<CredentialSource>,
    trusted_proxies: Vec<IpNet>,
}

impl Reader {
    /// A reader of `sources` (not empty: the builder checks) trusting
    /// `trusted_proxies`.
    pub(crate) fn new(sources: Vec<CredentialSource>, trusted_proxies: Vec<IpNet>) -> Reader {
        Reader {
            sources,
            trusted_proxies,
        }
    }

    /// The one credential of a request, per the sources.
    pub(crate) fn credential<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &Uri,
    ) -> Result<Credential<'a>, CredentialError> {
        credentials::extract(headers, uri, &self.sources)
    }

    /// Where a request comes from: its client address (the TCP peer, or
    /// past trusted proxies), or [`Origin::Unknown`].
    pub(crate) fn origin(&self, headers: &HeaderMap, extensions: &Extensions) -> Origin {
        Origin::from(client_ip(headers, extensions, &self.trusted_proxies))
    }

    /// The credential sources.
    pub(crate) fn sources(&self) -> &[CredentialSource] {
        &self.sources
    }

    /// The proxies whose forwarding headers are believed.
    pub(crate) fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }
}
