//! Per-token rate limiting: a token bucket per bearer token, in memory, per process.
//!
//! Requests that carry a bearer token draw from that token's bucket (keyed by the
//! token's SHA-256, the same key the token store uses, so the limiter needs no database
//! round trip and never holds a secret). An empty bucket answers 429 with `Retry-After`
//! in the surface's error format. Limits are per replica: N replicas allow N times the
//! rate. Requests without a bearer token (health probes, the web UI's session cookie)
//! are not limited here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::hash_token;

/// Buckets kept before idle full ones are dropped (bounds memory under a flood of
/// random tokens).
const MAX_BUCKETS: usize = 50_000;

/// Token buckets by token hash.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; zero disables limiting.
    rate: f64,
    /// Bucket size: the largest burst allowed after a quiet period.
    burst: f64,
    // std Mutex: never held across an .await.
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests a second per token with bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the bucket of `key`: `Ok` when allowed, otherwise the
    /// seconds until the next request would be.
    pub fn check(&self, key: [u8; 32]) -> Result<(), u64> {
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
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            // Whole seconds, at least 1 (RFC 9110 §10.2.3 delay-seconds).
            Err((wait.ceil() as u64).max(1))
        }
    }
}

/// The middleware: 429 with `Retry-After` when the request's token is over its rate.
pub async fn limit(limiter: std::sync::Arc<RateLimiter>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| hash_token(token.trim()));
    let Some(key) = key else {
        return next.run(req).await;
    };
    match limiter.check(key) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            tracing::warn!(retry_after, "rate limited");
            let mut res =
                super::surface::refuse(req.uri().path(), super::surface::Refusal::RateLimited);
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after),
            );
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_delay() {
        let l = RateLimiter::new(1.0, 3);
        let k = [7u8; 32];
        assert!(l.check(k).is_ok());
        assert!(l.check(k).is_ok());
        assert!(l.check(k).is_ok());
        assert_eq!(l.check(k), Err(1));
        // Another token has its own bucket.
        assert!(l.check([8u8; 32]).is_ok());
    }

    #[test]
    fn a_zero_rate_never_limits() {
        let l = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            assert!(l.check([1u8; 32]).is_ok());
        }
    }
}
