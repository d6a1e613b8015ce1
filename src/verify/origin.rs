//! [`Origin`]: where the credential being authorized comes from.

use std::net::IpAddr;

/// Where a credential being [authorized](crate::Verifier::authorize) comes
/// from: what the key's IP lists are checked against and what usage
/// tracking records.
///
/// # Example
///
/// ```
/// use std::net::IpAddr;
/// use keygate::Origin;
///
/// let ip: IpAddr = "192.0.2.7".parse().unwrap();
/// assert_eq!(Origin::from(Some(ip)), Origin::Client(ip));
/// assert_eq!(Origin::from(None), Origin::Unknown);
/// assert_eq!(Origin::Client(ip).ip(), Some(ip));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A request from this client address.
    Client(IpAddr),
    /// A request whose client address is not known (no peer address in the
    /// request, or a forwarding header that does not parse). A key with IP
    /// lists is refused: it fails closed.
    Unknown,
    /// No request at all: an operator inspecting a token (`keygate
    /// verify`). The key's IP lists are not checked and no use is recorded.
    Inspection,
}

impl Origin {
    /// The client address, when there is one.
    ///
    /// ```
    /// use keygate::Origin;
    ///
    /// let client = Origin::Client("192.0.2.1".parse()?);
    /// assert_eq!(client.ip(), Some("192.0.2.1".parse()?));
    /// assert_eq!(Origin::Unknown.ip(), None);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Origin::Client(ip) => Some(ip),
            Origin::Unknown | Origin::Inspection => None,
        }
    }
}

impl From<IpAddr> for Origin {
    fn from(ip: IpAddr) -> Origin {
        Origin::Client(ip)
    }
}

impl From<Option<IpAddr>> for Origin {
    /// `None` is [`Origin::Unknown`].
    fn from(ip: Option<IpAddr>) -> Origin {
        ip.map_or(Origin::Unknown, Origin::Client)
    }
}
