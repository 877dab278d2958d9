-- The live-user counter without a hot row (issue #13). app_user_count had one row per app
-- that every create and delete updated at commit: all of an app's writers queued on it,
-- and with the audit chain head it made a lock cycle (40P01 on a fresh database). Now a
-- write only inserts its change (+1 / -1) into app_user_count_delta, which takes no lock
-- any other writer waits for; the total is the app's row plus the sum of its deltas, read
-- in one snapshot, so it stays exact. A background task (Store::compact_user_counts, under
-- an advisory lock so one replica at a time) folds the deltas into app_user_count in one
-- transaction, which keeps the sum short.
create table app_user_count_delta (
    delta_id bigint generated always as identity primary key,
    -- No foreign key: its check would share-lock the app row on every user write.
    app_id   text not null,
    delta    int not null
);
create index app_user_count_delta_app_idx on app_user_count_delta (app_id);

drop trigger scim_user_live_count on scim_user;

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
        insert into app_user_count_delta (app_id, delta) values (app, is_live - was_live);
    end if;
    return null;
end
$$;

-- A plain row trigger now: it locks nothing, so there is no reason to defer it to commit.
create trigger scim_user_live_count
    after insert or update of deleted_at or delete on scim_user
    for each row execute function count_live_users();
