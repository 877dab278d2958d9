-- The first writes of an app could deadlock (40P01, answered 500). count_live_users
-- locked the app's audit_head row only if it existed; before the app's first audited
-- write committed there was none, so a writer took the user counter row without the head,
-- then (in audit_chain) waited for the head held by a writer that came after the first
-- commit and waited for the counter. Every app now has its head row from the start, and
-- the counter trigger creates it when missing (as audit_chain does), so every commit takes
-- the head before the counter: one lock order.
insert into audit_head (app_id, last_hash) select app_id, '\x' from app
    on conflict (app_id) do nothing;

create or replace function count_live_users() returns trigger language plpgsql as $$
declare
    was_live int := 0;
    is_live int := 0;
    app text;
begin
    if tg_op in ('UPDATE', 'DELETE') then
        was_live := (old.deleted_at is null)::int;
        app := old.app_id;
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        is_live := (new.deleted_at is null)::int;
        app := new.app_id;
    end if;
    if is_live <> was_live then
        -- The chain head first: the one lock order of every commit (see audit_chain).
        -- Inserting it when missing holds it too (a concurrent insert waits for us).
        insert into audit_head (app_id, last_hash) values (app, '\x')
            on conflict (app_id) do nothing;
        perform 1 from audit_head where app_id = app for update;
        insert into app_user_count (app_id, live) values (app, is_live - was_live)
            on conflict (app_id) do update set live = app_user_count.live + excluded.live;
    end if;
    return null;
end
$$;

create function create_audit_head() returns trigger language plpgsql as $$
begin
    insert into audit_head (app_id, last_hash) values (new.app_id, '\x')
        on conflict (app_id) do nothing;
    return null;
end
$$;

create trigger app_audit_head after insert on app
    for each row execute function create_audit_head();
