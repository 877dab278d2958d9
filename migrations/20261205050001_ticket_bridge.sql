-- The ticket bridge (issue #15 item 5): an app may mirror its tasks to Jira (an issue or
-- a Service Management request) or ServiceNow (a Table API record), keep the ticket's key
-- on the task, and close the task when the ticket reaches a configured status.
--
-- Outbound work (create, comment, transition) goes through the notification outbox:
-- each bridge is a webhook row of format 'ticket' on its own channel 'ticket', so the
-- outbox's claim-send-record cycle, retries with backoff, failed list and requeue apply
-- to tickets unchanged, and ordinary webhooks never see ticket events.
-- Forward-only: never edit this file once applied; add a new migration instead.

alter table webhook drop constraint webhook_format_check,
    add constraint webhook_format_check check (format in ('json', 'slack', 'ticket'));
alter table webhook drop constraint webhook_channel_check,
    add constraint webhook_channel_check check (channel in ('primary', 'escalation', 'ticket'));

-- One bridge per app. Secrets (the API credential and the inbound hook's shared secret)
-- are sealed with AES-256-GCM by the server before they reach this table (see
-- src/secrets.rs); `settings` holds everything else (target project or table, status
-- mapping, completion-field mapping), never a secret. The bridge is live while its
-- webhook row is (disabled_at null).
create table ticket_bridge (
    bridge_id    uuid primary key,
    app_id       text not null unique references app,
    webhook_id   uuid not null unique references webhook,
    system       text not null check (system in ('jira', 'jira_service_management', 'servicenow')),
    base_url     text not null check (base_url ~ '^https?://'),
    settings     jsonb not null,
    -- Task kinds mirrored.
    kinds        text[] not null,
    auth_kind    text not null check (auth_kind in ('basic', 'bearer')),
    username     text,
    credential   text not null,
    hook_secret  text not null,
    -- First interval of the status poll (doubling while nothing changes); 0: webhook only.
    poll_seconds integer not null check (poll_seconds = 0 or poll_seconds between 30 and 86400),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    updated_by   text not null
);

-- The ticket of a task. `state`: pending (to be created), creating (a create request was
-- sent and its answer is not known: a retry first looks for the ticket by `correlation`,
-- so a lost answer never makes a second ticket), open (created; key known), closed (the
-- task finished and the ticket was told).
create table ticket (
    task_id            bigint primary key references task,
    app_id             text not null references app,
    bridge_id          uuid not null references ticket_bridge,
    -- Found in the ticket system: a Jira label, a ServiceNow correlation_id, the end of a
    -- Service Management request's summary.
    correlation        text not null unique,
    state              text not null default 'pending'
                       check (state in ('pending', 'creating', 'open', 'closed')),
    -- ABC-123 / SCTASK0010001 / INC0010001, the Jira issue id or ServiceNow sys_id, and
    -- where a person opens it.
    key                text,
    remote_id          text,
    url                text,
    create_attempts    integer not null default 0,
    create_attempted_at timestamptz,
    -- The ticket's status as last seen (poll or webhook).
    remote_status      text,
    remote_status_at   timestamptz,
    next_poll_at       timestamptz,
    poll_interval_secs integer,
    poll_error         text,
    -- The ticket reached a closing status but the task could not be closed from it (a
    -- required completion field the ticket does not supply, a task waiting for another):
    -- why, for the person who completes it instead.
    done_pending       text,
    -- The task was closed because the ticket reached a closing status.
    closed_by_ticket   boolean not null default false,
    -- The task was reopened (a snapshot contradicted its completion) while its ticket
    -- showed this closing status: that status no longer closes the task until the
    -- ticket has shown another one.
    reopened_status    text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);
create unique index ticket_key_uq on ticket (bridge_id, key) where key is not null;
create index ticket_remote_idx on ticket (bridge_id, remote_id) where remote_id is not null;
create index ticket_poll_idx on ticket (next_poll_at) where state = 'open';

-- Mirrors task transitions into ticket events, in the transaction of the transition, so
-- every path that changes a task (claims, completions, derivation, approvals, batches,
-- reassignment, revocation, reconciliation) is covered without each calling the bridge:
-- - a task of a mirrored kind that becomes workable (open or in progress) and has no
--   ticket yet: ticket.create (tasks awaiting approval or held in a batch get theirs
--   once released to the queue);
-- - a task with a ticket that finishes (done, failed, not applicable, cancelled):
--   ticket.close;
-- - a finished task with a ticket that is reopened (a snapshot contradicts it):
--   ticket.reopen;
-- - an unfinished task with a ticket whose title changed (re-planned): ticket.update.
create function ticket_mirror() returns trigger language plpgsql as $$
declare
    b record;
    kind text;
begin
    select tb.bridge_id, tb.webhook_id, tb.kinds into b
      from ticket_bridge tb join webhook w using (webhook_id)
     where tb.app_id = new.app_id and w.disabled_at is null;
    if not found then
        return null;
    end if;
    if not exists (select 1 from ticket where task_id = new.task_id) then
        if new.state in ('open', 'in_progress') and new.kind::text = any(b.kinds) then
            insert into ticket (task_id, app_id, bridge_id, correlation)
                values (new.task_id, new.app_id, b.bridge_id,
                        'scimbridge-' || new.app_id || '-' || new.task_id);
            kind := 'ticket.create';
        else
            return null;
        end if;
    elsif tg_op = 'UPDATE' and new.state in ('open', 'in_progress')
          and old.state in ('done', 'failed', 'not_applicable', 'cancelled') then
        kind := 'ticket.reopen';
    elsif new.state in ('done', 'failed', 'not_applicable', 'cancelled') then
        if tg_op = 'UPDATE' and old.state = new.state then
            return null;
        end if;
        kind := 'ticket.close';
    elsif tg_op = 'UPDATE' and old.title is distinct from new.title then
        kind := 'ticket.update';
    else
        return null;
    end if;
    with e as (
        insert into event (app_id, kind, task_id, payload)
        values (new.app_id, kind, new.task_id,
                jsonb_build_object('task_id', new.task_id, 'state', new.state, 'title', new.title))
        returning event_id)
    insert into delivery (event_id, webhook_id) select e.event_id, b.webhook_id from e;
    return null;
end
$$;

create trigger ticket_mirror after insert or update of state, title on task
    for each row execute function ticket_mirror();
