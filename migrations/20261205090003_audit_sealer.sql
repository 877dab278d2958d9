-- The audit chain off the write path (issue #13). Every audited write of an app used to
-- take the app's audit_head row at commit to link its records, so an app's writes
-- committed one at a time. Now a write only inserts its records, unsealed (chain_seq,
-- prev_hash and hash null), and locks nothing shared; a sealer (Store::seal_audit, every
-- 250 ms from each replica's housekeeper, one replica at a time under an advisory lock)
-- links the committed records in order, app by app, as a transparency log does. Tamper
-- evidence is kept for every sealed record: each record's hash covers its predecessor's
-- hash and its content, its position included. What an unsealed record can and cannot
-- show is in docs/operations.md ("Audit chain").
drop trigger audit_chain on audit;
drop function audit_chain();

alter table audit alter column prev_hash drop not null, alter column prev_hash drop default,
                  alter column hash drop not null, alter column hash drop default;

-- The sealer's queue: unsealed records in insertion order.
create index audit_unsealed_idx on audit (audit_id) where chain_seq is null;

-- Links up to `batch` committed unsealed records, each app's in audit_id order, after
-- that app's last sealed record; returns how many. Only records committed before the
-- call are visible to it: a record committed later is sealed by a later call, after the
-- ones sealed before it (the chain's order is sealing order).
create function seal_audit(batch int) returns int language plpgsql as $$
declare
    rec audit;
    app text := null;
    prev bytea;
    seq bigint;
    n int := 0;
begin
    for rec in select * from audit where chain_seq is null
                order by app_id, audit_id limit batch for update skip locked loop
        if app is distinct from rec.app_id then
            if app is not null then
                update audit_head set last_hash = prev, last_seq = seq where app_id = app;
            end if;
            app := rec.app_id;
            insert into audit_head (app_id, last_hash) values (app, '\x')
                on conflict (app_id) do nothing;
            select last_hash, last_seq into prev, seq from audit_head
             where app_id = app for update;
        end if;
        seq := seq + 1;
        rec.chain_seq := seq;
        rec.prev_hash := prev;
        rec.hash := sha256(prev || audit_payload(rec));
        update audit set chain_seq = rec.chain_seq, prev_hash = rec.prev_hash, hash = rec.hash
         where audit_id = rec.audit_id;
        prev := rec.hash;
        n := n + 1;
    end loop;
    if app is not null then
        update audit_head set last_hash = prev, last_seq = seq where app_id = app;
    end if;
    return n;
end
$$;

-- The counter trigger and the app trigger no longer need the head for a lock order; the
-- app trigger still creates it (the sealer does too, when missing).
