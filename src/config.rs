//! Server settings: flags with environment fallbacks (`scimbridge serve --help`).

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of `scimbridge serve`. Every flag can also be set by its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SCIMBRIDGE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Public base URL (e.g. https://scim.example.com), used in `Location` and
    /// `meta.location`. Default: http://<Host header>.
    #[arg(long, env = "SCIMBRIDGE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "SCIMBRIDGE_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Seconds a request may take before it is answered with 503.
    #[arg(long, env = "SCIMBRIDGE_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Largest snapshot upload (an app's user list, `POST /api/v1/snapshots` and the web
    /// UI's upload), in bytes; larger ones get 413. Separate from --body-limit because a
    /// full export is far larger than any SCIM request (100 000 People.ai rows are ~8 MB);
    /// the file is streamed, so this bounds disk, not memory.
    #[arg(long, env = "SCIMBRIDGE_SNAPSHOT_LIMIT", default_value_t = 256 * 1024 * 1024)]
    pub snapshot_limit: u64,

    /// Seconds a snapshot upload may take (receiving and reconciling it); 503 after. The
    /// reconciliation itself goes on even then, or if the client goes away.
    #[arg(long, env = "SCIMBRIDGE_SNAPSHOT_TIMEOUT", default_value_t = 1800)]
    pub snapshot_timeout_secs: u64,

    /// Seconds a verified token stays cached; a revoked token stops working within this time.
    #[arg(long, env = "SCIMBRIDGE_TOKEN_CACHE_SECONDS", default_value_t = 30)]
    pub token_cache_secs: u64,

    /// Default lease of a claimed task, in seconds.
    #[arg(long, env = "SCIMBRIDGE_LEASE_SECONDS", default_value_t = 900)]
    pub lease_secs: i64,

    /// Claims after which a task whose lease lapsed fails (and its user is flagged for
    /// attention) instead of returning to the queue.
    #[arg(long, env = "SCIMBRIDGE_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,

    /// Seconds between SLA sweeps (due soon, overdue, reminders, escalation); one replica
    /// sweeps at a time.
    #[arg(long, env = "SCIMBRIDGE_SWEEP_INTERVAL", default_value_t = 60)]
    pub sweep_interval_secs: u64,

    /// Attempts before a webhook delivery is marked failed (and listed by the API).
    #[arg(long, env = "SCIMBRIDGE_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: i32,

    /// First webhook retry delay in seconds; doubles each attempt, at most an hour.
    #[arg(long, env = "SCIMBRIDGE_WEBHOOK_BACKOFF", default_value_t = 5)]
    pub webhook_backoff_secs: u64,

    /// Maximum database connections of this process.
    #[arg(long, env = "SCIMBRIDGE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Address of a separate listener serving Prometheus `GET /metrics`, unauthenticated
    /// (e.g. 127.0.0.1:9090 or an internal interface); off when unset. Never served on
    /// the public port: the numbers span all apps.
    #[arg(long, env = "SCIMBRIDGE_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Key of the HS256 JWTs issued by `POST /oauth/token` (at least 32 characters; the
    /// same on every replica). Default: a random key generated once per database.
    #[arg(long, env = "SCIMBRIDGE_JWT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub jwt_secret: Option<Secret>,

    /// Requests per second allowed per bearer token, or per OAuth client for all of its
    /// access tokens together (token bucket, in memory, per replica: N replicas allow N
    /// times this); 0 disables. Over the rate: 429 with `Retry-After`. The default never
    /// throttles a normal Okta or Entra sync.
    #[arg(
        long,
        env = "SCIMBRIDGE_RATE_LIMIT_PER_SECOND",
        default_value_t = 100.0
    )]
    pub rate_limit_per_second: f64,

    /// Largest burst per bearer token (or OAuth client) after a quiet period (the bucket
    /// size).
    #[arg(long, env = "SCIMBRIDGE_RATE_LIMIT_BURST", default_value_t = 1000)]
    pub rate_limit_burst: u32,

    /// Failed authentications allowed per minute per client address (unknown, revoked
    /// or forged bearer tokens, wrong OAuth client secrets, wrong web sign-in tokens); 0
    /// disables. Over it, that address's unproven credentials get 429 with `Retry-After`
    /// before any database lookup; credentials that authenticated lately still work. The
    /// address is the TCP peer: behind a reverse proxy all callers share the proxy's.
    #[arg(
        long,
        env = "SCIMBRIDGE_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 60.0
    )]
    pub auth_failures_per_minute: f64,

    /// Failed authentications allowed in a burst per client address (the bucket size).
    #[arg(long, env = "SCIMBRIDGE_AUTH_FAILURE_BURST", default_value_t = 30)]
    pub auth_failure_burst: u32,

    /// Requests per minute to `POST /oauth/token` allowed per client address, and access
    /// tokens issued per minute per OAuth client; 0 disables. An IdP asks about once an
    /// hour per client.
    #[arg(
        long,
        env = "SCIMBRIDGE_TOKEN_ENDPOINT_PER_MINUTE",
        default_value_t = 60.0
    )]
    pub token_endpoint_per_minute: f64,

    /// Token endpoint requests allowed in a burst per client address and per client.
    #[arg(long, env = "SCIMBRIDGE_TOKEN_ENDPOINT_BURST", default_value_t = 30)]
    pub token_endpoint_burst: u32,

    /// Key sealing the ticket bridge's credentials at rest (AES-256-GCM): 64 hex
    /// characters, the same on every replica (e.g. `openssl rand -hex 32`). Default: a key
    /// generated once per database, so whoever reads the whole database can unseal them.
    #[arg(long, env = "SCIMBRIDGE_SECRETS_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub secrets_key: Option<Secret>,

    /// Seconds after a Jira create request whose answer was lost before the bridge looks
    /// for the ticket (Jira's search index lags writes) instead of creating it again.
    #[arg(long, env = "SCIMBRIDGE_TICKET_SETTLE", default_value_t = 120)]
    pub ticket_settle_secs: u64,

    /// Accept `http://` ticket bridge URLs (a local test double, a proxy on the same
    /// host); off: only `https://`, since the bridge sends credentials with every call.
    #[arg(long, env = "SCIMBRIDGE_TICKET_ALLOW_HTTP")]
    pub ticket_allow_http: bool,

    /// Seconds between looks for ticket statuses due to be polled (each ticket's own
    /// interval starts at its bridge's `poll_seconds` and backs off).
    #[arg(long, env = "SCIMBRIDGE_TICKET_POLL_TICK", default_value_t = 15)]
    pub ticket_poll_tick_secs: u64,

    /// Hosts this server answers for, comma-separated (`scim.example.com`, or
    /// `host:port` for one port only); a request whose `Host` header names another gets
    /// 421 (the health probes excepted). Default: any host. Without --public-url, links
    /// and OAuth token audiences follow the Host header, so set one of the two when the
    /// server is reachable by other names.
    #[arg(long, env = "SCIMBRIDGE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Seconds a client has to send a request's head (request line and headers) from its
    /// first byte; slower connections are closed (slowloris).
    #[arg(long, env = "SCIMBRIDGE_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a connection may stay open without a request (a new one, or kept alive
    /// after a response) before it is closed. Keep it above the idle timeout of a load
    /// balancer in front (60 s on AWS ALB), or the balancer may reuse a closing connection.
    #[arg(long, env = "SCIMBRIDGE_IDLE_TIMEOUT", default_value_t = 75)]
    pub idle_timeout_secs: u64,

    /// Connections served at once; further ones wait in the listen backlog until one
    /// closes (nothing is refused). Keep it below the process's file descriptor limit.
    #[arg(long, env = "SCIMBRIDGE_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,

    /// Most operations one SCIM PATCH may carry (declared in /ServiceProviderConfig as
    /// `patch.maxOperations`); more get 413, like a bulk request over `maxOperations`
    /// (RFC 7644 §3.7.3). Okta and Entra send a handful per PATCH.
    #[arg(long, env = "SCIMBRIDGE_PATCH_MAX_OPERATIONS", default_value_t = 1000)]
    pub patch_max_operations: usize,

    /// Most values a multi-valued attribute of a SCIM resource may hold (a user's
    /// `emails`, `phoneNumbers`, `addresses`, ...; a group's `members` are exempt: groups
    /// legitimately have tens of thousands); more get 400 `invalidValue`. Declared in
    /// /ServiceProviderConfig as `maxAttributeValues`.
    #[arg(long, env = "SCIMBRIDGE_MAX_ATTRIBUTE_VALUES", default_value_t = 100)]
    pub max_attribute_values: usize,

    /// App profiles beyond the built-in ones (`--profiles-dir`).
    #[command(flatten)]
    pub profiles: crate::profiles::ProfilesArgs,
}

impl Config {
    /// Settings for tests and embedding: listen on 127.0.0.1 on a free port, no caching,
    /// no rate limit.
    pub fn for_tests() -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            body_limit: 1024 * 1024,
            request_timeout_secs: 30,
            snapshot_limit: 256 * 1024 * 1024,
            snapshot_timeout_secs: 1800,
            token_cache_secs: 0,
            lease_secs: 900,
            max_attempts: 3,
            sweep_interval_secs: 60,
            webhook_max_attempts: 8,
            webhook_backoff_secs: 5,
            db_max_connections: 8,
            metrics_bind: None,
            jwt_secret: None,
            // Off: tests that create many users would trip it; rate limit tests turn it on.
            rate_limit_per_second: 0.0,
            rate_limit_burst: 200,
            // Off too: many tests send bad tokens on purpose.
            auth_failures_per_minute: 0.0,
            auth_failure_burst: 30,
            token_endpoint_per_minute: 0.0,
            token_endpoint_burst: 30,
            secrets_key: None,
            // Tests' fake ticket systems search consistently.
            ticket_settle_secs: 0,
            // The tests' fake Jira and ServiceNow listen on http://127.0.0.1.
            ticket_allow_http: true,
            ticket_poll_tick_secs: 60,
            allowed_hosts: Vec::new(),
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connections: 1000,
            patch_max_operations: 1000,
            max_attribute_values: 100,
            profiles: Default::default(),
        }
    }

    /// The `--secrets-key`, parsed (None when unset or invalid; `validate` reports an
    /// invalid one before the server starts).
    pub fn secrets_key(&self) -> Option<[u8; 32]> {
        self.secrets_key
            .as_ref()
            .and_then(|s| crate::secrets::parse_key(&s.0).ok())
    }

    /// The warning to log at start when links and token audiences follow the `Host`
    /// header: no --public-url and a bind other clients can reach.
    pub fn host_warning(&self) -> Option<String> {
        (self.public_url.is_none() && !self.bind.ip().is_loopback()).then(|| {
            format!(
                "--public-url is not set and {} is reachable from other hosts: links and \
                     OAuth token audiences follow each request's Host header; set --public-url \
                     (and --allowed-hosts to refuse other names)",
                self.bind
            )
        })
    }

    /// The connection limits of the listener.
    pub fn conn_limits(&self) -> crate::server::ConnLimits {
        crate::server::ConnLimits {
            header_read: Duration::from_secs(self.header_read_timeout_secs),
            idle: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
        }
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Checks settings that clap cannot, with messages that say what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "--public-url must start with http:// or https://, got {url:?}"
            );
        }
        anyhow::ensure!(
            self.body_limit >= 1024,
            "--body-limit must be at least 1024 bytes"
        );
        anyhow::ensure!(
            self.request_timeout_secs >= 1,
            "--request-timeout-secs must be at least 1 second"
        );
        anyhow::ensure!(
            self.snapshot_timeout_secs >= 1,
            "--snapshot-timeout-secs must be at least 1 second"
        );
        anyhow::ensure!(
            (10..=86_400).contains(&self.lease_secs),
            "--lease-secs must be between 10 and 86400"
        );
        anyhow::ensure!(
            self.sweep_interval_secs >= 1,
            "--sweep-interval-secs must be at least 1"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.webhook_max_attempts),
            "--webhook-max-attempts must be between 1 and 100"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.max_attempts),
            "--max-attempts must be between 1 and 100"
        );
        anyhow::ensure!(
            self.rate_limit_per_second.is_finite() && self.rate_limit_per_second >= 0.0,
            "--rate-limit-per-second must be 0 (off) or a positive number, got {}",
            self.rate_limit_per_second
        );
        anyhow::ensure!(
            self.rate_limit_burst >= 1,
            "--rate-limit-burst must be at least 1"
        );
        for (flag, per_minute) in [
            ("--auth-failures-per-minute", self.auth_failures_per_minute),
            (
                "--token-endpoint-per-minute",
                self.token_endpoint_per_minute,
            ),
        ] {
            anyhow::ensure!(
                per_minute.is_finite() && per_minute >= 0.0,
                "{flag} must be 0 (off) or a positive number, got {per_minute}"
            );
        }
        anyhow::ensure!(
            self.auth_failure_burst >= 1 && self.token_endpoint_burst >= 1,
            "--auth-failure-burst and --token-endpoint-burst must be at least 1"
        );
        if let Some(s) = &self.jwt_secret {
            anyhow::ensure!(
                s.0.len() >= 32,
                "--jwt-secret must be at least 32 characters (e.g. openssl rand -hex 32)"
            );
        }
        if let Some(s) = &self.secrets_key {
            crate::secrets::parse_key(&s.0).map_err(anyhow::Error::msg)?;
        }
        anyhow::ensure!(
            self.header_read_timeout_secs >= 1 && self.idle_timeout_secs >= 1,
            "--header-read-timeout-secs and --idle-timeout-secs must be at least 1 second"
        );
        anyhow::ensure!(
            self.max_connections >= 1,
            "--max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.patch_max_operations >= 1 && self.max_attribute_values >= 1,
            "--patch-max-operations and --max-attribute-values must be at least 1"
        );
        anyhow::ensure!(
            self.ticket_poll_tick_secs >= 1,
            "--ticket-poll-tick-secs must be at least 1"
        );
        Ok(())
    }
}

/// A secret setting: its `Debug` never shows it (so `{config:?}` is safe to log).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_links_follow_the_host_header_on_a_reachable_bind() {
        let local = Config::for_tests();
        assert!(local.host_warning().is_none());
        let open = Config {
            bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ..Config::for_tests()
        };
        assert!(open
            .host_warning()
            .is_some_and(|w| w.contains("--public-url")));
        let pinned = Config {
            public_url: Some("https://scim.example.com".into()),
            ..open
        };
        assert!(pinned.host_warning().is_none());
    }
}
