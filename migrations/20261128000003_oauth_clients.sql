-- OAuth 2.0 client credentials (RFC 6749 §4.4) for IdPs configured with OAuth instead of
-- a long-lived bearer token: each client belongs to one app and gets short-lived JWTs
-- from POST /oauth/token that the SCIM routes accept as bearer tokens.
create table oauth_client (
    client_id   uuid primary key,
    app_id      text not null references app,
    name        text not null,
    -- SHA-256 of the secret (a random 32-byte value, like bearer tokens); shown once.
    secret_hash bytea not null unique,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index oauth_client_app_idx on oauth_client (app_id);

-- Server-wide keys generated once per database (the JWT signing key when --jwt-secret is
-- not set), so every replica signs and verifies with the same key.
create table server_key (
    name       text primary key,
    secret     bytea not null,
    created_at timestamptz not null default now()
);
