//! Rate limits: token buckets in memory, per process (N replicas allow N times a rate).
//!
//! - **Per credential**: every authenticated request draws from its credential's bucket,
//!   a token's (by token id) or an OAuth client's (by client id, so all the JWTs a client
//!   is issued share one bucket; a fresh JWT is no fresh bucket).
//! - **Failed authentication per client address**: an unknown, revoked or forged bearer
//!   token, a wrong OAuth client secret or a wrong web sign-in token draws from its
//!   address's bucket. Once that bucket is empty the address's unproven credentials are
//!   refused (429) *before* any database lookup, so a flood of random tokens costs no
//!   query. Credentials that proved valid lately (remembered by hash for a day) and
//!   validly signed JWTs still get through: an attacker's failures do not lock out the
//!   real IdP sharing its address (a NAT, a proxy).
//! - **The token endpoint** per client address (every request) and per OAuth client
//!   (tokens issued): an IdP fetches a token about once an hour.
//!
//! The client address is the TCP peer. There is no trusted-proxy setting: behind a
//! reverse proxy every request shares the proxy's address, so size the failure limit for
//! all callers together, or turn it off (`--auth-failures-per-minute 0`) and limit at
//! the proxy. Refusals are 429 with `Retry-After` in each surface's error format.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Extensions;
use uuid::Uuid;

use crate::config::Config;

/// Buckets kept before idle full ones are dropped (bounds memory under a flood).
const MAX_BUCKETS: usize = 50_000;
/// Credentials remembered as valid lately, at most.
const MAX_KNOWN: usize = 50_000;
/// How long a credential that authenticated stays "known good" for a throttled address.
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);

/// Which limit refused a request (the surfaces word their answers by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The credential (a token, or an OAuth client's JWTs) is over its rate.
    Credential,
    /// The client address failed authentication too often (or, on the token endpoint,
    /// asked too often).
    Address,
    /// The OAuth client asked the token endpoint too often.
    Client,
}

/// A refusal: which limit, and the whole seconds until a request would be allowed
/// (`Retry-After`, RFC 9110 §10.2.3; at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Which limit refused.
    pub scope: Scope,
    /// Seconds to wait.
    pub retry_after: u64,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Buckets<K> {
    /// Tokens added per second; zero disables limiting.
    rate: f64,
    /// Bucket size: the largest burst allowed after a quiet period.
    burst: f64,
    // std Mutex: never held across an .await.
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    /// Buckets allowing `per_second` requests a second per key with bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Buckets<K> {
        Buckets {
            rate: per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the bucket of `key`: `Ok` when allowed, otherwise the
    /// seconds until the next request would be.
    pub fn take(&self, key: K) -> Result<(), u64> {
        self.draw(key, true)
    }

    /// Whether a request of `key` would be allowed now, without taking it.
    pub fn peek(&self, key: K) -> Result<(), u64> {
        self.draw(key, false)
    }

    fn draw(&self, key: K, take: bool) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            // Whole seconds, at least 1 (RFC 9110 §10.2.3 delay-seconds).
            Err((wait.ceil() as u64).max(1))
        }
    }
}

/// Every limit of one process.
#[derive(Debug)]
pub struct Limits {
    credentials: Buckets<Uuid>,
    failures: Buckets<IpAddr>,
    token_addresses: Buckets<IpAddr>,
    token_clients: Buckets<Uuid>,
    /// Hashes of credentials (bearer tokens, client secrets) that authenticated lately.
    known: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Limits {
    /// The limits the settings ask for.
    pub fn new(config: &Config) -> Limits {
        Limits {
            credentials: Buckets::new(config.rate_limit_per_second, config.rate_limit_burst),
            failures: Buckets::new(
                config.auth_failures_per_minute / 60.0,
                config.auth_failure_burst,
            ),
            token_addresses: Buckets::new(
                config.token_endpoint_per_minute / 60.0,
                config.token_endpoint_burst,
            ),
            token_clients: Buckets::new(
                config.token_endpoint_per_minute / 60.0,
                config.token_endpoint_burst,
            ),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// One request of an authenticated credential (a token id, or an OAuth client id for
    /// all of its JWTs).
    pub fn credential(&self, id: Uuid) -> Result<(), Throttled> {
        self.credentials
            .take(id)
            .map_err(|retry_after| throttled(Scope::Credential, retry_after))
    }

    /// Before looking up the credential whose hash is `hash` for `addr`: refused when the
    /// address is over its failure limit and the credential did not prove valid lately.
    pub fn admit(&self, addr: IpAddr, hash: &[u8; 32]) -> Result<(), Throttled> {
        match self.failures.peek(addr) {
            Ok(()) => Ok(()),
            Err(_) if self.is_known(hash) => Ok(()),
            Err(retry_after) => Err(throttled(Scope::Address, retry_after)),
        }
    }

    /// A failed authentication from `addr` (and `hash`, if a credential was looked up,
    /// is no longer known good). `Err` when the address is now over its limit: the
    /// caller answers 429 rather than 401.
    pub fn failed(&self, addr: IpAddr, hash: Option<&[u8; 32]>) -> Result<(), Throttled> {
        if let (Some(hash), Ok(mut known)) = (hash, self.known.lock()) {
            known.remove(hash);
        }
        tracing::debug!(%addr, "authentication failed");
        self.failures.take(addr).map_err(|retry_after| {
            tracing::debug!(%addr, retry_after, "authentication failures over the limit");
            throttled(Scope::Address, retry_after)
        })
    }

    /// A credential that authenticated: it gets through even from a throttled address.
    pub fn succeeded(&self, hash: [u8; 32]) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if known.len() >= MAX_KNOWN && !known.contains_key(&hash) {
            known.retain(|_, at| at.elapsed() < KNOWN_FOR);
            if known.len() >= MAX_KNOWN {
                return;
            }
        }
        known.insert(hash, Instant::now());
    }

    fn is_known(&self, hash: &[u8; 32]) -> bool {
        self.known
            .lock()
            .ok()
            .and_then(|k| k.get(hash).map(|at| at.elapsed() < KNOWN_FOR))
            .unwrap_or(false)
    }

    /// One request to the token endpoint from `addr`.
    pub fn token_request(&self, addr: IpAddr) -> Result<(), Throttled> {
        self.token_addresses
            .take(addr)
            .map_err(|retry_after| throttled(Scope::Address, retry_after))
    }

    /// One access token issued to OAuth client `id`.
    pub fn token_issued(&self, id: Uuid) -> Result<(), Throttled> {
        self.token_clients
            .take(id)
            .map_err(|retry_after| throttled(Scope::Client, retry_after))
    }
}

fn throttled(scope: Scope, retry_after: u64) -> Throttled {
    if scope == Scope::Credential {
        tracing::warn!(retry_after, "rate limited");
    }
    Throttled { scope, retry_after }
}

/// The client address of a request: its TCP peer (see the module comment). A request
/// served without the peer recorded (an embedding without connect info) counts as
/// `0.0.0.0`, one shared address.
pub fn client_addr(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| canonical(a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The client address of a request, as an extractor (see [`client_addr`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

/// An IPv4 peer seen over an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_delay() {
        let l = Buckets::new(1.0, 3);
        let k = [7u8; 32];
        assert!(l.take(k).is_ok());
        assert!(l.take(k).is_ok());
        assert!(l.peek(k).is_ok());
        assert!(l.take(k).is_ok());
        assert_eq!(l.peek(k), Err(1));
        assert_eq!(l.take(k), Err(1));
        // Another key has its own bucket.
        assert!(l.take([8u8; 32]).is_ok());
    }

    #[test]
    fn a_zero_rate_never_limits() {
        let l = Buckets::new(0.0, 1);
        for _ in 0..100 {
            assert!(l.take([1u8; 32]).is_ok());
        }
    }

    #[test]
    fn a_throttled_address_still_admits_a_credential_known_good() {
        let mut c = Config::for_tests();
        c.auth_failures_per_minute = 1.0;
        c.auth_failure_burst = 2;
        let l = Limits::new(&c);
        let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let (good, bad) = ([1u8; 32], [2u8; 32]);
        l.succeeded(good);
        assert!(l.admit(addr, &bad).is_ok());
        assert!(l.failed(addr, Some(&bad)).is_ok());
        assert!(l.failed(addr, Some(&bad)).is_ok());
        assert_eq!(
            l.admit(addr, &bad).map_err(|t| t.scope),
            Err(Scope::Address)
        );
        assert!(l.admit(addr, &good).is_ok());
        // Another address is not throttled.
        assert!(l.admit(IpAddr::V4(Ipv4Addr::LOCALHOST), &bad).is_ok());
        // A known credential that then fails (revoked) is known no more.
        assert!(l.failed(addr, Some(&good)).is_err());
        assert!(l.admit(addr, &good).is_err());
    }

    #[test]
    fn mapped_ipv4_peers_are_their_ipv4_address() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(canonical(mapped), v4);
    }
}
