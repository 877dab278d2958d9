-- scimbridge schema, version 1.
--
-- The model (see DESIGN.md): for every user of an app we keep the *desired* state
-- (the SCIM resource exactly as the IdP left it), the *confirmed* state (what the app
-- is known to have, written only when a task completes) and the *tasks* between them.
-- Forward-only: never edit this file once applied; add a new migration instead.

-- An app is one manual-only target system (People.ai, 6sense, ...). It owns users,
-- groups, tasks, tokens and audit records; nothing crosses apps.
create table app (
    app_id       text primary key check (app_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    display_name text not null,
    profile      text not null,
    created_at   timestamptz not null default now()
);

insert into app (app_id, display_name, profile) values ('peopleai', 'People.ai', 'peopleai');

create type token_role as enum ('scim', 'agent', 'admin');

-- Bearer tokens. Only the SHA-256 of the secret is stored (tokens are 256-bit random,
-- so a fast hash is enough: there is nothing to brute-force).
create table token (
    token_id    uuid primary key,
    app_id      text not null references app,
    role        token_role not null,
    name        text not null check (length(name) between 1 and 200),
    secret_hash bytea not null unique,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index token_app_idx on token (app_id, created_at);

-- Users: desired state in `doc` (the SCIM resource without id/meta/groups), with the
-- looked-up attributes copied into indexed columns. `confirmed` is the account the
-- app is known to have (null: none). Deleted users keep their row for audit
-- (RFC 7644 §3.6 only requires that the resource is no longer returned).
create table scim_user (
    user_id         uuid primary key,
    app_id          text not null references app,
    seq             bigint generated always as identity,
    user_name       text not null,
    external_id     text,
    active          boolean not null,
    emails          text[] not null default '{}',
    doc             jsonb not null,
    version         bigint not null default 1,
    confirmed       jsonb,
    confirmed_at    timestamptz,
    needs_attention boolean not null default false,
    -- When an admin rejected the user's last change (approval or held batch): the app
    -- stays as it was until the IdP changes the user again.
    rejected_at     timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    deleted_at      timestamptz
);
-- RFC 7643 §4.1.1: userName is unique and caseExact=false, so uniqueness and lookups
-- use lower(user_name); the IdP's `userName eq` filter hits exactly this expression.
create unique index scim_user_name_uq on scim_user (app_id, lower(user_name)) where deleted_at is null;
create index scim_user_external_id_idx on scim_user (app_id, external_id) where deleted_at is null;
create index scim_user_page_idx on scim_user (app_id, seq) where deleted_at is null;
create index scim_user_emails_idx on scim_user using gin (emails) where deleted_at is null;

create table scim_group (
    group_id     uuid primary key,
    app_id       text not null references app,
    seq          bigint generated always as identity,
    display_name text not null,
    external_id  text,
    doc          jsonb not null,
    version      bigint not null default 1,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    deleted_at   timestamptz
);
create unique index scim_group_name_uq on scim_group (app_id, lower(display_name)) where deleted_at is null;
create index scim_group_external_id_idx on scim_group (app_id, external_id) where deleted_at is null;
create index scim_group_page_idx on scim_group (app_id, seq) where deleted_at is null;

-- Membership is rows, so adding one member never rewrites the whole group.
create table group_member (
    group_id uuid not null references scim_group on delete cascade,
    user_id  uuid not null references scim_user,
    -- The member's `display` as the IdP sent it (RFC 7643 §4.2), echoed back on reads.
    display  text,
    primary key (group_id, user_id)
);
create index group_member_user_idx on group_member (user_id);

-- A batch of changes the mass-change guard holds for review: a burst of leavers, or one
-- group change that would plan many tasks. An admin releases or cancels it as a whole.
create table batch (
    batch_id    bigint generated always as identity primary key,
    app_id      text not null references app,
    kind        text not null check (kind in ('leavers', 'group_push')),
    state       text not null default 'held' check (state in ('held', 'released', 'cancelled')),
    reason      text not null,
    created_at  timestamptz not null default now(),
    decided_by  text,
    decided_at  timestamptz
);
create index batch_app_idx on batch (app_id, state, batch_id);

create type task_kind as enum (
    'create_account', 'update_attributes', 'change_role', 'deactivate', 'reactivate', 'remove'
);
-- not_applicable: the worker found the app already in the task's target state (e.g. the
-- user to remove never had an account); like done, it moves the confirmed state.
-- awaiting_approval: planned, waits for an admin (profile approval rules) before anyone
-- may claim it. held: part of a batch the mass-change guard holds for review.
create type task_state as enum (
    'open', 'awaiting_approval', 'held', 'in_progress', 'done', 'failed', 'not_applicable', 'cancelled'
);

-- Tasks are derived: one open (unclaimed) task per subject closes the difference between
-- the desired state and what the subject will have once its in-progress task is done.
create table task (
    task_id          bigint generated always as identity primary key,
    app_id           text not null references app,
    user_id          uuid not null references scim_user,
    kind             task_kind not null,
    state            task_state not null default 'open',
    title            text not null,
    instructions     jsonb not null,
    -- What completing as done must record, from the app profile when the task was planned.
    completion_fields jsonb not null default '[]',
    changes          jsonb not null,
    base             jsonb,
    target           jsonb,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    claimed_by       text,
    claimed_token    uuid,
    claimed_at       timestamptz,
    lease_id         uuid,
    lease_seconds    integer,
    lease_expires_at timestamptz,
    attempts         integer not null default 0,
    finished_at      timestamptz,
    finished_by      text,
    note             text,
    evidence         jsonb,
    -- The Idempotency-Key of the completion, so a retried completion returns its result.
    completion_key   text,
    cancel_reason    text,
    -- SLA (from the app profile): when the task is due, and what the sweeper has seen.
    due_at           timestamptz,
    -- Approval (profile rules) and the mass-change guard.
    needs_approval   boolean not null default false,
    approved_by      text,
    approved_at      timestamptz,
    batch_id         bigint references batch,
    sla_state        text not null default 'ok' check (sla_state in ('ok', 'due_soon', 'overdue')),
    last_reminder_at timestamptz,
    escalated_at     timestamptz
);
-- Invariant 2 (DESIGN.md), enforced by the database, not only by the code.
create unique index task_one_open_per_subject on task (user_id)
    where state in ('open', 'awaiting_approval', 'held');
create unique index task_one_in_progress_per_subject on task (user_id) where state = 'in_progress';
create index task_claimable_idx on task (app_id, task_id) where state in ('open', 'in_progress');
create index task_leavers_idx on task (app_id, created_at) where kind in ('remove', 'deactivate');
create index task_batch_idx on task (batch_id) where batch_id is not null;
create index task_list_idx on task (app_id, task_id);
create index task_subject_idx on task (user_id, task_id);

-- Evidence files attached to a completion (e.g. a screenshot of the app's console).
create table task_attachment (
    task_id      bigint not null references task,
    n            integer not null,
    filename     text not null,
    content_type text not null,
    size         integer not null,
    data         bytea not null,
    created_at   timestamptz not null default now(),
    primary key (task_id, n)
);

-- The audit trail: every accepted write, in the transaction of the write itself.
create table audit (
    audit_id     bigint generated always as identity primary key,
    app_id       text not null references app,
    at           timestamptz not null default now(),
    actor        text not null,
    actor_role   text not null,
    action       text not null,
    subject_type text not null,
    subject_id   text not null,
    task_id      bigint references task,
    request_id   text,
    outcome      text not null,
    detail       jsonb not null default '{}',
    -- Tamper evidence: each record carries the hash of its predecessor in the same app
    -- and its own hash over (predecessor hash, its content). Filled by the trigger below.
    chain_seq    bigint not null default 0,
    prev_hash    bytea not null default '\x',
    hash         bytea not null default '\x'
);
create index audit_subject_idx on audit (app_id, subject_id, audit_id);
create index audit_task_idx on audit (task_id, audit_id) where task_id is not null;
create unique index audit_chain_idx on audit (app_id, chain_seq);

-- The head of each app's chain. Locked by the insert trigger, so the records of one app
-- are chained in commit order; a transaction holds it from its first audit record to
-- its commit (every write takes its row locks before writing audit records, so this
-- lock is always taken last and cannot deadlock).
create table audit_head (
    app_id        text primary key references app,
    last_hash     bytea not null,
    last_seq      bigint not null default 0
);

-- What a record's hash covers: every column but the hashes (its position in the chain
-- included), in a fixed text form
-- (jsonb's text form is canonical; the time as microseconds since the epoch).
create function audit_payload(a audit) returns bytea language sql immutable as $$
    select convert_to(concat_ws('|', a.chain_seq, a.audit_id, a.app_id,
        (extract(epoch from a.at) * 1000000)::bigint, a.actor, a.actor_role, a.action,
        a.subject_type, a.subject_id, coalesce(a.task_id::text, ''), coalesce(a.request_id, ''),
        a.outcome, a.detail::text), 'UTF8')
$$;

create function audit_chain() returns trigger language plpgsql as $$
declare
    prev bytea;
    seq bigint;
begin
    select last_hash, last_seq into prev, seq from audit_head where app_id = new.app_id for update;
    if not found then
        insert into audit_head (app_id, last_hash) values (new.app_id, '\x')
            on conflict (app_id) do nothing;
        select last_hash, last_seq into prev, seq from audit_head where app_id = new.app_id for update;
    end if;
    new.chain_seq := seq + 1;
    new.prev_hash := prev;
    new.hash := sha256(prev || audit_payload(new));
    update audit_head set last_hash = new.hash, last_seq = new.chain_seq where app_id = new.app_id;
    return new;
end
$$;

create trigger audit_chain before insert on audit for each row execute function audit_chain();

-- Notifications: a transactional outbox. An event is written in the transaction of its
-- cause, with one delivery row per subscribed webhook; deliverers claim due deliveries
-- with SKIP LOCKED and hold the row lock while sending, so under normal operation each
-- event reaches each webhook once.
create table webhook (
    webhook_id  uuid primary key,
    app_id      text not null references app,
    name        text not null,
    url         text not null check (url ~ '^https?://'),
    format      text not null check (format in ('json', 'slack')),
    -- HMAC-SHA256 key of `json` webhooks (signature header); Slack URLs are their own secret.
    secret      text,
    -- Event kinds wanted; null: all of the channel.
    events      text[],
    -- `escalation` webhooks get only escalations (overdue leaver tasks); `primary` the rest.
    channel     text not null default 'primary' check (channel in ('primary', 'escalation')),
    created_at  timestamptz not null default now(),
    disabled_at timestamptz
);
create index webhook_app_idx on webhook (app_id) where disabled_at is null;

create table event (
    event_id   bigint generated always as identity primary key,
    app_id     text not null references app,
    kind       text not null,
    task_id    bigint references task,
    payload    jsonb not null,
    created_at timestamptz not null default now()
);

create table delivery (
    event_id        bigint not null references event,
    webhook_id      uuid not null references webhook,
    state           text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    delivered_at    timestamptz,
    primary key (event_id, webhook_id)
);
create index delivery_due_idx on delivery (next_attempt_at) where state = 'pending';
create index delivery_state_idx on delivery (webhook_id, state, event_id);
