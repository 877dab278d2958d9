-- Sessions of the admin web UI (/ui). A person signs in once with an agent or admin token;
-- the browser then holds only a random session id in an HttpOnly cookie, so the token
-- itself never sits in the browser.
--
-- session_id is the hex SHA-256 of the cookie's 256-bit random value: a copy of this table
-- cannot be replayed as cookies (the same reasoning as token.secret_hash).
-- A session acts as its token: it is looked up together with the token row, so revoking the
-- token ends its sessions at once, and every query is scoped to the token's app.
-- Forward-only: never edit this file once applied; add a new migration instead.
create table web_session (
    session_id  text primary key,
    app_id      text not null references app,
    token_id    uuid not null references token,
    -- Recorded as the actor of the session's writes, like the token's own calls.
    token_name  text not null,
    role        token_role not null check (role in ('agent', 'admin')),
    -- Per-session secret every form sends back in a hidden field (CSRF protection).
    csrf_token  text not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null
);
create index web_session_token_idx on web_session (token_id);
-- For purging expired sessions without scanning live ones.
create index web_session_expires_idx on web_session (expires_at);
