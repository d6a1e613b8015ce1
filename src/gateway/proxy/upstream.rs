//! The upstream: the `http://` URL allowed requests go to, and how a
//! request's URI is rewritten for it.

use std::borrow::Cow;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};

use super::strip::strip_query;

/// A [`Proxy`](super::Proxy) that cannot be built from its upstream URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The upstream is not a URL. (The URL itself is left out of the message:
    /// it may hold a password.)
    #[error("the upstream is not a valid URL")]
    InvalidUrl(#[source] http::uri::InvalidUri),
    /// The upstream is not absolute, such as `127.0.0.1:3000` or `/api`.
    #[error(
        "the upstream must be an absolute http:// URL with a host, such as http://127.0.0.1:3000"
    )]
    NotAbsolute,
    /// An `https://` upstream.
    #[error(
        "https upstreams are not supported: the proxy speaks plain http:// to its upstream \
         (put it next to the service, on a private network)"
    )]
    Https,
    /// A scheme other than `http`.
    #[error("unsupported upstream scheme {0:?}: only http:// upstreams are supported")]
    UnsupportedScheme(String),
    /// User info (`user:password@`) in the upstream URL.
    #[error("the upstream URL must not contain user info (user:password@)")]
    UserInfo,
    /// A query in the upstream URL.
    #[error("the upstream URL must not contain a query")]
    Query,
}

/// Where allowed requests go: an `http://` authority and an optional base
/// path.
#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) authority: Authority,
    /// The `Host` header sent upstream: the authority.
    pub(super) host: HeaderValue,
    /// `""` or a path starting with `/`, without a trailing `/`.
    pub(super) base_path: Box<str>,
}

impl Upstream {
    pub(super) fn parse(text: &str) -> Result<Upstream, ProxyError> {
        let uri: Uri = text.parse().map_err(ProxyError::InvalidUrl)?;
        match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => return Err(ProxyError::Https),
            Some(scheme) => return Err(ProxyError::UnsupportedScheme(scheme.to_owned())),
            None => return Err(ProxyError::NotAbsolute),
        }
        let authority = uri.authority().cloned().ok_or(ProxyError::NotAbsolute)?;
        if authority.as_str().contains('@') {
            return Err(ProxyError::UserInfo);
        }
        if authority.host().is_empty() {
            return Err(ProxyError::NotAbsolute);
        }
        if uri.query().is_some() {
            return Err(ProxyError::Query);
        }
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::NotAbsolute)?;
        Ok(Upstream {
            authority,
            host,
            base_path: uri.path().trim_end_matches('/').into(),
        })
    }

    /// The upstream URI: the base path joined with the normalized `path`
    /// that was judged, and the original URI's query without the
    /// credential query parameters.
    pub(super) fn uri(
        &self,
        original: &Uri,
        path: &str,
        strip: &[Box<str>],
    ) -> Result<Uri, http::Error> {
        let query = original.query().map(|q| strip_query(q, strip));
        let unchanged = self.base_path.is_empty()
            && original.path() == path
            && matches!(query, None | Some(Cow::Borrowed(_)));
        let path_and_query = match original.path_and_query() {
            // The common case: no copy (`PathAndQuery` is shared bytes).
            Some(pq) if unchanged => pq.clone(),
            _ => {
                let query = query.as_deref().unwrap_or("");
                let mut joined =
                    String::with_capacity(self.base_path.len() + path.len() + query.len() + 1);
                joined.push_str(&self.base_path);
                joined.push_str(path);
                if !query.is_empty() {
                    joined.push('?');
                    joined.push_str(query);
                }
                PathAndQuery::try_from(joined)?
            }
        };
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|name| (*name).into()).collect()
    }

    #[test]
    fn upstream_urls_are_checked() {
        assert!(matches!(
            Upstream::parse("https://a.example"),
            Err(ProxyError::Https)
        ));
        assert!(matches!(
            Upstream::parse("ftp://a.example"),
            Err(ProxyError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Upstream::parse("127.0.0.1:3000"),
            Err(ProxyError::NotAbsolute)
        ));
        assert!(matches!(
            Upstream::parse("/api"),
            Err(ProxyError::NotAbsolute)
        ));
        assert!(matches!(
            Upstream::parse("http://u:p@a.example"),
            Err(ProxyError::UserInfo)
        ));
        assert!(matches!(
            Upstream::parse("http://a.example/?x=1"),
            Err(ProxyError::Query)
        ));
        assert!(matches!(
            Upstream::parse("http://a b"),
            Err(ProxyError::InvalidUrl(_))
        ));
        let upstream = Upstream::parse("http://a.example:81/base/").unwrap();
        assert_eq!(upstream.host, "a.example:81");
        assert_eq!(&*upstream.base_path, "/base");
    }

    #[test]
    fn upstream_uri_joins_the_base_path_and_keeps_the_query() {
        let plain = Upstream::parse("http://up:1").unwrap();
        let based = Upstream::parse("http://up:1/base").unwrap();
        let none: &[Box<str>] = &[];
        let uri = |u: &Upstream, original: &str, strip: &[Box<str>]| {
            let original: Uri = original.parse().unwrap();
            u.uri(&original, original.path(), strip)
                .unwrap()
                .to_string()
        };
        assert_eq!(uri(&plain, "/a/b?x=1", none), "http://up:1/a/b?x=1");
        assert_eq!(
            uri(&plain, "http://other/a?x", none),
            "http://up:1/a?x",
            "absolute-form"
        );
        assert_eq!(uri(&based, "/a/b?x=1", none), "http://up:1/base/a/b?x=1");
        assert_eq!(uri(&based, "/", none), "http://up:1/base/");
        let judged = plain
            .uri(&"/a/../b//c?x=1".parse().unwrap(), "/b/c", none)
            .unwrap();
        assert_eq!(
            judged.to_string(),
            "http://up:1/b/c?x=1",
            "the judged path, not the raw one"
        );
        let strip = names(&["api_key"]);
        assert_eq!(
            uri(&plain, "/a?x=1&api_key=t&y=2", &strip),
            "http://up:1/a?x=1&y=2"
        );
        assert_eq!(uri(&plain, "/a?api_key=t", &strip), "http://up:1/a");
        assert_eq!(uri(&based, "/a?api_key=t", &strip), "http://up:1/base/a");
    }
}
