-- Claim order as a stored column (issue #6). Claims take leavers (removals and
-- deactivations) first, then role changes, other updates, and creations last; oldest
-- first within a class. Computed on the fly, that order made every claim sort all open
-- tasks of the app (O(open tasks) per claim); stored and indexed, a claim reads the
-- index from its start and stops at the first claimable task.
alter table task add column priority smallint generated always as (
    case kind when 'remove' then 0 when 'deactivate' then 0 when 'change_role' then 1
              when 'create_account' then 3 else 2 end) stored;

create index task_claim_order_idx on task (app_id, priority, task_id)
    where state in ('open', 'in_progress');

-- Lapsed leases: every claim first fails the tasks whose last allowed lease lapsed;
-- this finds them without reading the open tasks.
create index task_lease_idx on task (app_id, lease_expires_at) where state = 'in_progress';

-- Superseded by task_claim_order_idx (same rows, same leading column).
drop index task_claimable_idx;
