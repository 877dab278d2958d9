-- The ticket_mirror trigger (20261205050001) inserted a task's ticket row plainly. A
-- bridge's backfill (PUT /api/v1/ticket-bridge with "backfill") inserts ticket rows for
-- existing tasks in its own transaction; had a task's transition committed its row in
-- between, one of the two would fail on the primary key: the backfill (a 500), or worse
-- the task's transition itself (a SCIM write or a completion refused because of the
-- bridge). Now the trigger inserts with `on conflict do nothing` and writes its
-- ticket.create event only for a row it inserted; the backfill does the same.
-- Forward-only: never edit this file once applied; add a new migration instead.

create or replace function ticket_mirror() returns trigger language plpgsql as $$
declare
    b record;
    kind text;
    made bigint;
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
                        'scimbridge-' || new.app_id || '-' || new.task_id)
                on conflict do nothing
                returning task_id into made;
            if made is null then
                return null;
            end if;
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
