-- The audit chain, linked at commit (issue #6). Before, each record was chained by a
-- BEFORE INSERT trigger, so a write held its app's chain head from its first audit
-- record to its commit: with derivation between the two, every write of an app waited for the
-- previous one's whole second half. Now records are inserted unchained (chain_seq null)
-- and a deferred trigger links them when the transaction commits, so the head is held
-- only for the linking and the commit itself. Records of one app are still chained in
-- commit order, and a record is never visible unchained (the link is part of the same
-- transaction). The chain head is the last lock every write takes, so it cannot deadlock.
alter table audit alter column chain_seq drop not null, alter column chain_seq drop default;

create or replace function audit_chain() returns trigger language plpgsql as $$
declare
    prev bytea;
    seq bigint;
    linked audit;
begin
    select last_hash, last_seq into prev, seq from audit_head where app_id = new.app_id for update;
    if not found then
        insert into audit_head (app_id, last_hash) values (new.app_id, '\x')
            on conflict (app_id) do nothing;
        select last_hash, last_seq into prev, seq from audit_head where app_id = new.app_id for update;
    end if;
    linked := new;
    linked.chain_seq := seq + 1;
    linked.prev_hash := prev;
    linked.hash := sha256(prev || audit_payload(linked));
    update audit set chain_seq = linked.chain_seq, prev_hash = linked.prev_hash, hash = linked.hash
     where audit_id = new.audit_id;
    update audit_head set last_hash = linked.hash, last_seq = linked.chain_seq where app_id = new.app_id;
    return null;
end
$$;

drop trigger audit_chain on audit;
create constraint trigger audit_chain after insert on audit
    deferrable initially deferred
    for each row execute function audit_chain();
