-- Snapshots of an app's user list: the *observed* state (issue #15, DESIGN.md "Three
-- states, not two"). An admin or agent uploads the app's export; its rows are kept for
-- the audit trail, compared with desired and confirmed state, and every difference is a
-- finding on the subject's task.
-- Forward-only: never edit this file once applied; add a new migration instead.

-- Accounts in the app that no IdP user owns get a task of their own. (Added here, used
-- only from the next transaction on, as Postgres requires of a new enum value.)
alter type task_kind add value if not exists 'review_account';

create table snapshot (
    snapshot_id     bigint generated always as identity primary key,
    app_id          text not null references app,
    -- receiving: rows arriving; held: the safeguard waits for an admin; applying: being
    -- reconciled (progress_at moves per batch); applied; discarded (by an admin).
    state           text not null default 'receiving'
                    check (state in ('receiving', 'held', 'applying', 'applied', 'discarded')),
    format          text not null check (format in ('csv', 'json')),
    filename        text,
    submitted_by    text not null,
    submitted_role  text not null,
    created_at      timestamptz not null default now(),
    -- When the export was taken (the upload time unless the uploader says otherwise):
    -- anything confirmed after it is not contradicted by it.
    taken_at        timestamptz not null,
    sha256          bytea,
    bytes           bigint,
    row_count       bigint,
    unknown_columns text[] not null default '{}',
    observed_fields text[] not null default '{}',
    hold_reason     text,
    -- What applying would do (counts and the first flagged subjects), computed before.
    preview         jsonb,
    -- What applying did.
    summary         jsonb,
    decided_by      text,
    decided_at      timestamptz,
    applied_at      timestamptz,
    progress_at     timestamptz
);
create index snapshot_app_idx on snapshot (app_id, snapshot_id);

-- One row per account of the export, as observed (kept with its snapshot).
create table snapshot_row (
    snapshot_id bigint not null references snapshot,
    -- The match key (email by default), lower-cased: one account per key.
    match_key   text not null,
    -- CSV row (header = 1) or JSON row number, for messages.
    line        bigint not null,
    observed    jsonb not null,
    -- The subject the row belongs to (an IdP user, or an orphan account), once matched.
    subject_id  uuid,
    primary key (snapshot_id, match_key)
);
create index snapshot_row_line_idx on snapshot_row (snapshot_id, line);
create unique index snapshot_row_subject_idx on snapshot_row (snapshot_id, subject_id)
    where subject_id is not null;

-- Subjects: a row of scim_user is an IdP user (`user`) or an account the app has that no
-- IdP user owns (`account`, an orphan a snapshot found). Orphan rows are never visible
-- over SCIM: they are stored as deleted (deleted_at set), which every SCIM read excludes,
-- so tasks, locks and audit work for them exactly as for users.
alter table scim_user
    add column subject_kind text not null default 'user' check (subject_kind in ('user', 'account')),
    -- The account as the last applied snapshot showed it (null: not in that snapshot).
    add column observed jsonb,
    add column observed_at timestamptz,
    add column observed_snapshot bigint references snapshot,
    -- When a snapshot last showed the app as the IdP wants it (`lastVerified`).
    add column verified_at timestamptz,
    -- The last snapshot showed the app differing from what the IdP wants.
    add column drift boolean not null default false,
    -- Orphans: what the review decided (removed, linked, kept; gone when a later snapshot
    -- no longer had the account).
    add column resolution text check (resolution in ('removed', 'linked', 'kept', 'gone'));

-- Matching a snapshot row: by the email (or userName) the app is known to have.
create index scim_user_confirmed_email_idx on scim_user (app_id, lower(confirmed->>'email'));
create index scim_user_confirmed_name_idx on scim_user (app_id, lower(confirmed->>'user_name'));
create index scim_user_orphan_idx on scim_user (app_id, lower(user_name)) where subject_kind = 'account';

-- What snapshots found on a task, oldest first: [{"finding", "snapshot", "text", "at"}].
alter table task add column findings jsonb not null default '[]';

-- Findings: one per subject and difference while it lasts, so a snapshot seen again
-- finds nothing new (re-importing a file is idempotent).
create table finding (
    finding_id    bigint generated always as identity primary key,
    app_id        text not null references app,
    subject_id    uuid not null references scim_user,
    kind          text not null check (kind in ('drift', 'missing', 'contradiction', 'orphan')),
    -- The difference itself (kind and changes): the same difference is the same finding.
    fingerprint   text not null,
    text          text not null,
    changes       jsonb not null default '[]',
    snapshot_id   bigint not null references snapshot,
    last_seen     bigint not null references snapshot,
    task_id       bigint references task,
    created_at    timestamptz not null default now(),
    resolved_at   timestamptz,
    resolved_by   bigint references snapshot
);
create unique index finding_open_idx on finding (subject_id, fingerprint) where resolved_at is null;
create index finding_app_idx on finding (app_id, kind, finding_id);
create index finding_snapshot_idx on finding (snapshot_id);
