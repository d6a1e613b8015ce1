//! `serve --redis-url`: the Redis limiter connected at start, and the URL
//! as it may be shown — never with its password.

use std::error::Error as _;

use crate::limit::RedisLimiter;

/// What replaces a password in a shown URL.
const REDACTED: &str = "[redacted]";

/// Connects the limiter of `--redis-url`; Redis must answer now.
///
/// # Errors
///
/// One line naming the URL (redacted) and why: an invalid URL, Redis
/// unreachable or too slow. No password appears in it, even where a
/// driver's message would have repeated one.
pub(crate) async fn connect(url: &str) -> Result<RedisLimiter, String> {
    RedisLimiter::connect(url).await.map_err(|error| {
        let mut why = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            // Drivers often repeat their cause in their own message.
            let cause_text = cause.to_string();
            if !why.contains(&cause_text) {
                why.push_str(": ");
                why.push_str(&cause_text);
            }
            source = cause.source();
        }
        let mut line = format!("--redis-url {}: {why}", redact(url));
        for secret in secrets(url) {
            line = line.replace(secret, REDACTED);
        }
        line
    })
}

/// `url` with its password replaced by `[redacted]`: the one of the
/// authority (`redis://user:PASSWORD@host`, `redis://:PASSWORD@host`; a
/// lone `redis://SECRET@host` is redacted whole, some clients read it as a
/// password) and the `pass=`/`password=` query parameters of socket URLs
/// (`redis+unix:///run/redis.sock?pass=PASSWORD`).
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{REDACTED}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_password_parameter(name) => {
                        format!("{name}={REDACTED}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

fn is_password_parameter(name: &str) -> bool {
    name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password")
}

/// Every secret [`redact`] hides, non-empty, as written in `url`.
fn secrets(url: &str) -> Vec<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut secrets = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        secrets.push(userinfo.split_once(':').map_or(userinfo, |(_, p)| p));
    }
    if let Some((_, query)) = tail.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && is_password_parameter(name)
            {
                secrets.push(value);
            }
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

#[cfg(test)]
mod tests {
    use super::{connect, redact};

    #[test]
    fn a_password_in_the_authority_is_redacted_and_the_rest_kept() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
            (
                "redis://:secretpw@127.0.0.1:1",
                "redis://:[redacted]@127.0.0.1:1",
            ),
            (
                "rediss://app:secret@cache.internal:6380/3",
                "rediss://app:[redacted]@cache.internal:6380/3",
            ),
            ("redis://secret@host", "redis://[redacted]@host"),
            // A password holding `@` or `:`: everything up to the last `@`.
            ("redis://u:p@ss:w@host/0", "redis://u:[redacted]@host/0"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn a_password_in_the_query_of_a_socket_url_is_redacted() {
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=[redacted]"
        );
        assert_eq!(
            redact("unix:///run/redis.sock?PASSWORD=secret&user=app"),
            "unix:///run/redis.sock?PASSWORD=[redacted]&user=app"
        );
    }

    #[test]
    fn something_that_is_no_url_is_shown_without_what_looks_like_a_password() {
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(redact("user:secret@host"), "user:[redacted]@host");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_naming_the_url_without_its_password() {
        // Port 1 on loopback: nothing listens there.
        let Err(error) = connect("redis://:secretpw@127.0.0.1:1").await else {
            panic!("nothing listens on port 1");
        };
        assert!(
            error.starts_with("--redis-url redis://:[redacted]@127.0.0.1:1: "),
            "{error}"
        );
        assert!(!error.contains("secretpw"), "{error}");
    }

    #[tokio::test]
    async fn an_invalid_url_is_an_error_naming_it_without_its_password() {
        let Err(error) = connect("http://:secretpw@127.0.0.1:6379").await else {
            panic!("not a Redis URL");
        };
        assert!(error.contains("invalid"), "{error}");
        assert!(!error.contains("secretpw"), "{error}");
    }
}
