-- Live users per app: `totalResults` of an unfiltered /Users list (issue #6). Counting
-- the rows on every page made Okta's full import walk O(N²). Kept by a deferred
-- trigger, so the counter row is locked at commit, when a user write already holds its
-- app's audit_head lock (every accepted write is audited): no extra waiting, no new lock
-- order (audit_head, then this row). One statement writing N users updates the row N
-- times at its commit (fine for the server, which writes at most a 1000-operation Bulk
-- at once; a large import by SQL should disable the trigger and recount, as the
-- benchmark's seed does).
create table app_user_count (
    app_id text primary key references app,
    live   bigint not null default 0
);
insert into app_user_count (app_id, live)
    select a.app_id, (select count(*) from scim_user u where u.app_id = a.app_id and u.deleted_at is null)
      from app a;

create function count_live_users() returns trigger language plpgsql as $$
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
        perform 1 from audit_head where app_id = app for update;
        insert into app_user_count (app_id, live) values (app, is_live - was_live)
            on conflict (app_id) do update set live = app_user_count.live + excluded.live;
    end if;
    return null;
end
$$;

create constraint trigger scim_user_live_count
    after insert or update of deleted_at or delete on scim_user
    deferrable initially deferred
    for each row execute function count_live_users();
