//! [`Ceiling`]: a key never creates a key more powerful than itself.

use std::sync::LazyLock;

use ipnet::IpNet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::KeyError;
use crate::credits::{CreditChange, Credits};
use crate::key::ApiKey;
use crate::limit::{RateLimit, RateLimits};
use crate::scope::{Scope, ScopeSet};
use crate::token::Environment;
use crate::verify::AuthenticatedKey;

/// The scope that reaches every owner and lifts the ceiling. `keys:*` does
/// not cover it; `admin:*` and `*:*` do.
static ADMIN_KEYS: LazyLock<Scope> =
    LazyLock::new(|| Scope::parse("admin:keys").unwrap_or_else(|_| unreachable!("a valid scope")));

/// Whether `scopes` hold `admin:keys` (directly or through `admin:*`,
/// `*:keys` or `*:*`).
pub(crate) fn holds_admin_keys(scopes: &ScopeSet) -> bool {
    scopes.allows(&ADMIN_KEYS)
}

/// The limits a calling key puts on every key it creates, rotates or
/// updates (the mint ceiling), built from the caller's own
/// record with [`Ceiling::of`].
///
/// - **Scopes**: within the caller's grants (a wildcard only from an equal
///   or wider wildcard), for every caller, `admin:keys` included.
///
/// Unless the caller holds `admin:keys`, also:
///
/// - **Expiry** no later than the caller's own: a caller that expires cannot
///   create a key that never expires. When a create asks for no lifetime,
///   the default lifetime is cut to the caller's expiry instead of refused;
///   a rotated key never outlives the caller either.
/// - **Environment** and **organization**: the caller's own. When a create
///   names neither, the new key takes the caller's.
/// - **`ip_allow`**: when the caller has an allow list, every requested
///   network lies inside one of the caller's networks; an empty list
///   (every address) is too wide.
/// - **`ip_deny`**: covers every network the caller denies.
/// - **`rate_limits`**: no looser than the caller's. For each rate limit
///   the caller has, the key must have one of the same name with a
///   `limit` no larger than the caller's (the burst) and a rate
///   `limit / period` no higher than the caller's; `shared` may differ.
///   The key may add limits of other names. A caller without rate limits
///   imposes none, and limits are never inherited: a limited caller must
///   give them.
/// - **`credits`**: no larger than the caller's. A caller with credits
///   may only give a key credits (never leave it unlimited) with a
///   `remaining` no larger than its own, and a refill only when it has one
///   itself, of the same period (`every`) and an amount no larger than
///   its own. A credit adjustment (add or set) may not leave the key with
///   more than the caller's own `remaining`. A caller without credits
///   imposes none; credits are never inherited.
///
/// A violation is [`KeyError::Forbidden`] naming the field (`scopes`,
/// `expires_at`, `environment`, `organization`, `ip_allow`, `ip_deny`,
/// `rate_limits`, `credits`);
/// nothing is written. The operator's methods ([`Keys::create`],
/// [`Keys::rotate`], [`Keys::update`]) are not bound by any ceiling.
///
/// [`Keys::create`]: crate::Keys::create
/// [`Keys::rotate`]: crate::Keys::rotate
/// [`Keys::update`]: crate::Keys::update
///
/// # Example
///
/// ```
/// use keygate::{Ceiling, KeyError, Keygate, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let caller = keygate
///     .keys()
///     .create(NewKey::new("alice", "ci").scopes(["keys:create"]).ip_allow(["127.0.0.1"]))
///     .await?;
/// let ceiling = Ceiling::of_record(&caller.key);
/// let wider = NewKey::new("alice", "anywhere").scopes(["keys:create"]);
/// let err = keygate.keys().create_as(&ceiling, wider).await.unwrap_err();
/// assert!(matches!(err, KeyError::Forbidden { field: "ip_allow", .. }));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Ceiling<'a> {
    caller: &'a ApiKey,
    admin: bool,
}

fn forbidden(field: &'static str, message: impl Into<String>) -> KeyError {
    KeyError::Forbidden {
        field,
        message: message.into(),
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

impl<'a> Ceiling<'a> {
    /// The ceiling of the key that made the request.
    ///
    /// ```
    /// # use keygate::{Ceiling, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").scopes(["keys:create"])).await?;
    /// let caller = keygate.verify(created.token.expose()).await?;
    /// assert!(!Ceiling::of(&caller).is_admin());
    /// # Ok(())
    /// # }
    /// ```
    pub fn of(caller: &'a AuthenticatedKey) -> Ceiling<'a> {
        Ceiling::of_record(caller.record())
    }

    /// The ceiling of a key, from its record.
    ///
    /// ```
    /// use keygate::{ApiKey, Ceiling, KeyId, ScopeSet};
    ///
    /// let mut record = ApiKey::new(KeyId::parse("0000000000000001")?, "root");
    /// record.scopes = ScopeSet::parse(["admin:keys"])?;
    /// assert!(Ceiling::of_record(&record).is_admin());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn of_record(caller: &'a ApiKey) -> Ceiling<'a> {
        Ceiling {
            caller,
            admin: holds_admin_keys(&caller.scopes),
        }
    }

    /// Whether the caller holds `admin:keys`: every owner, and no limit but
    /// its scopes.
    ///
    /// ```
    /// use keygate::{ApiKey, Ceiling, KeyId, ScopeSet};
    ///
    /// let mut record = ApiKey::new(KeyId::parse("0000000000000001")?, "ops");
    /// record.scopes = ScopeSet::parse(["keys:*"])?;
    /// assert!(!Ceiling::of_record(&record).is_admin()); // keys:* is own-owner only
    /// record.scopes = ScopeSet::parse(["*:*"])?;
    /// assert!(Ceiling::of_record(&record).is_admin());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The caller's limits other than scopes, unless it is an admin.
    fn limits(&self) -> Option<&'a ApiKey> {
        (!self.admin).then_some(self.caller)
    }

    /// The environment of a new key that names none: the caller's, unless
    /// the caller is an admin.
    pub(crate) fn default_environment(&self) -> Option<Environment> {
        self.limits().map(|c| c.environment)
    }

    /// The organization of a new key that names none: the caller's, unless
    /// the caller is an admin.
    pub(crate) fn default_organization(&self) -> Option<&'a str> {
        self.limits().and_then(|c| c.organization.as_deref())
    }

    /// Scopes within the caller's grants.
    pub(crate) fn check_scopes(&self, scopes: &ScopeSet) -> Result<(), KeyError> {
        match self.caller.scopes.check_can_mint(scopes) {
            Ok(()) => Ok(()),
            Err(scope) => Err(forbidden(
                "scopes",
                format!("scope {scope} is not within the calling key's own scopes"),
            )),
        }
    }

    /// An expiry no later than the caller's.
    pub(crate) fn check_expiry(&self, at: Option<OffsetDateTime>) -> Result<(), KeyError> {
        let Some(limit) = self.limits().and_then(|c| c.expires_at) else {
            return Ok(());
        };
        match at {
            None => Err(forbidden(
                "expires_at",
                format!(
                    "the calling key expires at {}, so it cannot create a key that never expires",
                    rfc3339(limit)
                ),
            )),
            Some(at) if at > limit => Err(forbidden(
                "expires_at",
                format!(
                    "the key would expire after the calling key, which expires at {}",
                    rfc3339(limit)
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// `at`, cut to the caller's expiry (for defaults and renewals, which
    /// the caller did not ask for explicitly).
    pub(crate) fn cap_expiry(&self, at: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
        match (at, self.limits().and_then(|c| c.expires_at)) {
            (Some(at), Some(limit)) => Some(at.min(limit)),
            (None, limit) => limit,
            (at, None) => at,
        }
    }

    /// The caller's environment.
    pub(crate) fn check_environment(&self, environment: Environment) -> Result<(), KeyError> {
        match self.limits() {
            Some(c) if c.environment != environment => Err(forbidden(
                "environment",
                format!(
                    "a {} key cannot create or hand out a {} key",
                    c.environment, environment
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The caller's organization.
    pub(crate) fn check_organization(&self, organization: Option<&str>) -> Result<(), KeyError> {
        match self.limits() {
            Some(c) if c.organization.as_deref() != organization => Err(forbidden(
                "organization",
                match &c.organization {
                    Some(_) => "the key must belong to the calling key's own organization",
                    None => "the calling key has no organization, so neither may the key",
                },
            )),
            _ => Ok(()),
        }
    }

    /// An allow list inside the caller's, when the caller has one.
    pub(crate) fn check_ip_allow(&self, allow: &[IpNet]) -> Result<(), KeyError> {
        let Some(own) = self.limits().map(|c| &c.ip_allow).filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        if allow.is_empty() {
            return Err(forbidden(
                "ip_allow",
                "the calling key is limited to an IP allow list, so the key must have one within it",
            ));
        }
        match allow
            .iter()
            .find(|net| !own.iter().any(|mine| mine.contains(*net)))
        {
            Some(net) => Err(forbidden(
                "ip_allow",
                format!("{net} is not within the calling key's IP allow list"),
            )),
            None => Ok(()),
        }
    }

    /// A deny list covering every network the caller denies.
    pub(crate) fn check_ip_deny(&self, deny: &[IpNet]) -> Result<(), KeyError> {
        let Some(own) = self.limits().map(|c| &c.ip_deny) else {
            return Ok(());
        };
        match own
            .iter()
            .find(|mine| !deny.iter().any(|net| net.contains(*mine)))
        {
            Some(net) => Err(forbidden(
                "ip_deny",
                format!("the key must deny {net}, as the calling key does"),
            )),
            None => Ok(()),
        }
    }

    /// Rate limits no looser than the caller's: for each of the caller's
    /// limits, one of the same name with no larger `limit` and no higher
    /// `limit / period`.
    pub(crate) fn check_rate_limits(&self, limits: &RateLimits) -> Result<(), KeyError> {
        let Some(own) = self.limits().map(|c| &c.rate_limits) else {
            return Ok(());
        };
        for mine in own {
            let name = mine.name();
            match limits.iter().find(|limit| limit.name() == name) {
                None => {
                    return Err(forbidden(
                        "rate_limits",
                        format!(
                            "the calling key has the rate limit {name} ({}), so the key must have \
                             one named {name} no looser",
                            shown(mine)
                        ),
                    ));
                }
                Some(limit) if is_looser(limit, mine) => {
                    return Err(forbidden(
                        "rate_limits",
                        format!(
                            "the rate limit {name} ({}) is looser than the calling key's ({})",
                            shown(limit),
                            shown(mine)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Credits no larger than the caller's: see the type's docs.
    pub(crate) fn check_credits(&self, credits: Option<&Credits>) -> Result<(), KeyError> {
        let Some(own) = self.limits().and_then(|c| c.credits.as_ref()) else {
            return Ok(());
        };
        let Some(credits) = credits else {
            return Err(forbidden(
                "credits",
                format!(
                    "the calling key has credits ({} remaining), so the key must have credits too",
                    own.remaining()
                ),
            ));
        };
        if credits.remaining() > own.remaining() {
            return Err(forbidden(
                "credits",
                format!(
                    "the key would have {} credits, more than the calling key's {}",
                    credits.remaining(),
                    own.remaining()
                ),
            ));
        }
        match (credits.refill(), own.refill()) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(forbidden(
                "credits",
                "the calling key is never refilled, so the key may not be either",
            )),
            (Some(refill), Some(mine)) if refill.every() != mine.every() => Err(forbidden(
                "credits",
                format!(
                    "the key's refill must be every {}, as the calling key's is",
                    mine.every()
                ),
            )),
            (Some(refill), Some(mine)) if refill.amount() > mine.amount() => Err(forbidden(
                "credits",
                format!(
                    "the key's refill of {} is larger than the calling key's {} every {}",
                    refill.amount(),
                    mine.amount(),
                    mine.every()
                ),
            )),
            (Some(_), Some(_)) => Ok(()),
        }
    }

    /// A credit adjustment of a key holding `current` credits that leaves
    /// it with no more than the caller's own remaining (the balance after
    /// an add is judged from `current`, as read before the change).
    pub(crate) fn check_credit_change(
        &self,
        current: Option<&Credits>,
        change: &CreditChange,
    ) -> Result<(), KeyError> {
        let Some(own) = self.limits().and_then(|c| c.credits.as_ref()) else {
            return Ok(());
        };
        let after = match change {
            CreditChange::Add(n) => current.map_or(*n, |c| c.remaining().saturating_add(*n)),
            CreditChange::Set(n) => *n,
            CreditChange::Replace(credits) => return self.check_credits(credits.as_ref()),
        };
        if after > own.remaining() {
            return Err(forbidden(
                "credits",
                format!(
                    "the key would have {after} credits, more than the calling key's {}",
                    own.remaining()
                ),
            ));
        }
        Ok(())
    }

    /// Every attribute of `key` within the ceiling (rotation hands out a
    /// token for a copy of it).
    pub(crate) fn check_key(&self, key: &ApiKey) -> Result<(), KeyError> {
        self.check_scopes(&key.scopes)?;
        self.check_expiry(key.expires_at)?;
        self.check_environment(key.environment)?;
        self.check_organization(key.organization.as_deref())?;
        self.check_ip_allow(&key.ip_allow)?;
        self.check_ip_deny(&key.ip_deny)?;
        self.check_rate_limits(&key.rate_limits)?;
        self.check_credits(key.credits.as_ref())
    }
}

/// `limit/period`, as the CLI writes it.
fn shown(limit: &RateLimit) -> String {
    format!("{}/{}", limit.limit(), limit.period())
}

/// Whether `limit` allows more than `bound`: a larger burst, or a higher
/// rate. Rates compare by cross-multiplying (`a/p > b/q` ⟺ `a·q > b·p`),
/// exact in integers: at most 10⁹ · 86 400, far inside a `u64`.
fn is_looser(limit: &RateLimit, bound: &RateLimit) -> bool {
    limit.limit() > bound.limit()
        || limit.limit() * bound.period().as_secs() > bound.limit() * limit.period().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::KeyId;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn caller() -> ApiKey {
        let mut key = ApiKey::new(KeyId::generate(), "alice");
        key.scopes = ScopeSet::parse(["keys:create", "workspaces:*"]).unwrap();
        key.expires_at = Some(time::macros::datetime!(2030-01-01 00:00:00 UTC));
        key.environment = Environment::Test;
        key.organization = Some("acme".into());
        key.ip_allow = vec![net("10.0.0.0/8"), net("192.168.1.0/24")];
        key.ip_deny = vec![net("10.9.0.0/16")];
        key
    }

    #[test]
    fn a_key_within_every_limit_passes() {
        let me = caller();
        let ceiling = Ceiling::of_record(&me);
        assert!(!ceiling.is_admin());
        assert!(ceiling.check_key(&me).is_ok(), "a key fits its own ceiling");
        let mut narrower = me.clone();
        narrower.scopes = ScopeSet::parse(["workspaces:read"]).unwrap();
        narrower.expires_at = Some(time::macros::datetime!(2029-01-01 00:00:00 UTC));
        narrower.ip_allow = vec![net("10.1.0.0/16"), net("192.168.1.7/32")];
        narrower.ip_deny = vec![net("10.0.0.0/12"), net("172.16.0.0/12")];
        assert!(ceiling.check_key(&narrower).is_ok());
    }

    #[test]
    fn each_wider_attribute_is_forbidden_naming_its_field() {
        let me = caller();
        let ceiling = Ceiling::of_record(&me);
        let field = |change: &dyn Fn(&mut ApiKey)| {
            let mut key = me.clone();
            change(&mut key);
            let err = ceiling.check_key(&key).unwrap_err();
            assert_eq!(err.code(), "forbidden");
            err.field()
        };
        assert_eq!(
            field(&|k| k.scopes = ScopeSet::parse(["*:*"]).unwrap()),
            Some("scopes")
        );
        assert_eq!(field(&|k| k.expires_at = None), Some("expires_at"));
        assert_eq!(
            field(&|k| k.expires_at = Some(time::macros::datetime!(2030-01-01 00:00:01 UTC))),
            Some("expires_at")
        );
        assert_eq!(
            field(&|k| k.environment = Environment::Live),
            Some("environment")
        );
        assert_eq!(field(&|k| k.organization = None), Some("organization"));
        assert_eq!(
            field(&|k| k.organization = Some("other".into())),
            Some("organization")
        );
        assert_eq!(field(&|k| k.ip_allow = vec![]), Some("ip_allow"));
        assert_eq!(
            field(&|k| k.ip_allow = vec![net("10.0.0.0/7")]),
            Some("ip_allow")
        );
        assert_eq!(
            field(&|k| k.ip_allow = vec![net("2001:db8::/32")]),
            Some("ip_allow")
        );
        assert_eq!(field(&|k| k.ip_deny = vec![]), Some("ip_deny"));
        assert_eq!(
            field(&|k| k.ip_deny = vec![net("10.9.0.0/17")]),
            Some("ip_deny")
        );
    }

    #[test]
    fn admin_keys_lifts_every_limit_but_scopes() {
        let mut me = caller();
        me.scopes = ScopeSet::parse(["admin:keys", "keys:create"]).unwrap();
        let ceiling = Ceiling::of_record(&me);
        assert!(ceiling.is_admin());
        let mut wide = ApiKey::new(KeyId::generate(), "bob");
        wide.scopes = ScopeSet::parse(["keys:create"]).unwrap();
        assert!(ceiling.check_key(&wide).is_ok());
        wide.scopes = ScopeSet::parse(["*:*"]).unwrap();
        assert_eq!(
            ceiling.check_key(&wide).unwrap_err().field(),
            Some("scopes")
        );
        assert_eq!(ceiling.default_environment(), None);
        assert_eq!(ceiling.cap_expiry(None), None);
    }

    #[test]
    fn keys_wildcard_is_not_admin() {
        let mut me = caller();
        me.scopes = ScopeSet::parse(["keys:*"]).unwrap();
        assert!(!Ceiling::of_record(&me).is_admin());
        me.scopes = ScopeSet::parse(["admin:*"]).unwrap();
        assert!(Ceiling::of_record(&me).is_admin());
    }

    #[test]
    fn defaults_are_cut_to_the_callers_expiry() {
        let me = caller();
        let ceiling = Ceiling::of_record(&me);
        let limit = me.expires_at;
        assert_eq!(ceiling.cap_expiry(None), limit);
        let later = Some(time::macros::datetime!(2031-01-01 00:00:00 UTC));
        assert_eq!(ceiling.cap_expiry(later), limit);
        let sooner = Some(time::macros::datetime!(2029-01-01 00:00:00 UTC));
        assert_eq!(ceiling.cap_expiry(sooner), sooner);
        assert_eq!(ceiling.default_environment(), Some(Environment::Test));
        assert_eq!(ceiling.default_organization(), Some("acme"));
    }

    fn limits(json: &str) -> RateLimits {
        serde_json::from_str(json).unwrap()
    }

    fn limited_caller(scopes: &[&str]) -> ApiKey {
        let mut key = ApiKey::new(KeyId::generate(), "alice");
        key.scopes = ScopeSet::parse(scopes.iter().copied()).unwrap();
        key.rate_limits = limits(
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 1000, "period": "1h", "shared": true}]"#,
        );
        key
    }

    #[test]
    fn limits_as_tight_or_tighter_pass_whatever_shared_says() {
        let me = limited_caller(&["keys:create"]);
        let ceiling = Ceiling::of_record(&me);
        for ok in [
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 1000, "period": "1h"}]"#,
            r#"[{"name": "hourly", "limit": 10, "period": "1min", "shared": true},
                {"name": "burst", "limit": 5, "period": "1s"},
                {"name": "daily", "limit": 99, "period": "1d"}]"#,
            // The same rate with a smaller burst, a slower rate.
            r#"[{"name": "burst", "limit": 20, "period": "2s"},
                {"name": "hourly", "limit": 500, "period": "30min"}]"#,
        ] {
            assert!(ceiling.check_rate_limits(&limits(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_missing_larger_or_faster_limit_is_forbidden() {
        let me = limited_caller(&["keys:create"]);
        let ceiling = Ceiling::of_record(&me);
        for bad in [
            "[]",
            r#"[{"name": "burst", "limit": 20, "period": "1s"}]"#,
            // A larger burst.
            r#"[{"name": "burst", "limit": 21, "period": "2s"},
                {"name": "hourly", "limit": 1000, "period": "1h"}]"#,
            // A smaller burst but a higher rate: 1000/1h < 17/1min.
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 17, "period": "1min"}]"#,
            // The same burst, refilled a second sooner: a higher rate.
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 1000, "period": "3599s"}]"#,
        ] {
            let err = ceiling.check_rate_limits(&limits(bad)).unwrap_err();
            assert_eq!(
                (err.code(), err.field()),
                ("forbidden", Some("rate_limits")),
                "{bad}"
            );
        }
        let key = ApiKey::new(KeyId::generate(), "alice");
        assert_eq!(
            ceiling.check_key(&key).unwrap_err().field(),
            Some("rate_limits"),
            "rotation judges the limits too"
        );
    }

    #[test]
    fn admins_and_callers_without_limits_impose_none() {
        let admin = limited_caller(&["admin:keys"]);
        assert!(
            Ceiling::of_record(&admin)
                .check_rate_limits(&RateLimits::empty())
                .is_ok()
        );
        let mut free = limited_caller(&["keys:create"]);
        free.rate_limits = RateLimits::empty();
        let wide = limits(r#"[{"name": "burst", "limit": 1000000000, "period": "1s"}]"#);
        assert!(Ceiling::of_record(&free).check_rate_limits(&wide).is_ok());
    }

    fn credits(remaining: u64, refill: Option<(u64, crate::credits::RefillEvery)>) -> Credits {
        Credits::new(remaining).unwrap().with_refill(
            refill.map(|(amount, every)| crate::credits::Refill::new(amount, every).unwrap()),
        )
    }

    #[test]
    fn credits_no_larger_than_the_callers_pass() {
        use crate::credits::RefillEvery::{Day, Month};
        let mut caller = caller();
        caller.credits = Some(credits(100, Some((100, Month))));
        let ceiling = Ceiling::of_record(&caller);
        for ok in [
            credits(100, Some((100, Month))),
            credits(0, None),
            credits(50, Some((10, Month))),
        ] {
            ceiling.check_credits(Some(&ok)).unwrap();
        }
        for (bad, why) in [
            (None, "must have credits"),
            (Some(credits(101, None)), "more than"),
            (Some(credits(10, Some((10, Day)))), "every month"),
            (Some(credits(10, Some((101, Month)))), "larger"),
        ] {
            let error = ceiling.check_credits(bad.as_ref()).unwrap_err();
            assert_eq!(error.field(), Some("credits"));
            assert_eq!(error.code(), "forbidden");
            assert!(error.to_string().contains(why), "{error}");
        }
        caller.credits = Some(credits(100, None));
        let ceiling = Ceiling::of_record(&caller);
        let refilled = credits(1, Some((1, Day)));
        assert!(
            ceiling.check_credits(Some(&refilled)).is_err(),
            "no refill to give"
        );
        let mut key = caller.clone();
        key.credits = Some(credits(101, None));
        assert_eq!(
            ceiling.check_key(&key).unwrap_err().field(),
            Some("credits"),
            "rotation checks credits too"
        );
    }

    #[test]
    fn adjustments_may_not_raise_a_key_past_the_callers_balance() {
        let mut caller = caller();
        caller.credits = Some(credits(100, None));
        let ceiling = Ceiling::of_record(&caller);
        let current = credits(60, None);
        ceiling
            .check_credit_change(Some(&current), &CreditChange::Add(40))
            .unwrap();
        ceiling
            .check_credit_change(Some(&current), &CreditChange::Set(100))
            .unwrap();
        for change in [CreditChange::Add(41), CreditChange::Set(101)] {
            let error = ceiling
                .check_credit_change(Some(&current), &change)
                .unwrap_err();
            assert_eq!(error.field(), Some("credits"), "{change:?}");
        }
        assert!(
            ceiling
                .check_credit_change(None, &CreditChange::Replace(None))
                .is_err()
        );
    }

    #[test]
    fn admins_and_callers_without_credits_impose_no_credit_limit() {
        let plain = caller();
        let ceiling = Ceiling::of_record(&plain);
        ceiling.check_credits(None).unwrap();
        ceiling
            .check_credits(Some(&credits(crate::credits::MAX_CREDITS, None)))
            .unwrap();
        ceiling
            .check_credit_change(None, &CreditChange::Set(crate::credits::MAX_CREDITS))
            .unwrap();
        let mut admin = caller();
        admin.scopes = ScopeSet::parse(["admin:keys"]).unwrap();
        admin.credits = Some(credits(1, None));
        let ceiling = Ceiling::of_record(&admin);
        ceiling.check_credits(None).unwrap();
        ceiling
            .check_credit_change(None, &CreditChange::Set(1000))
            .unwrap();
    }
}
