-- Reads from one primary-key probe (issue #13). A SCIM read showed the provisioning
-- state and the open task of a user through two correlated subqueries on task per user;
-- right after a bulk import (no statistics yet) the planner chose them badly and a GET
-- cost 20x a primary-key select. The user's first unfinished task (open, awaiting
-- approval, held or in progress: the `pending` state) is now kept on the user row, by a
-- trigger in the transaction of every task change, so a read is the user row only.
alter table scim_user add column open_task_id bigint;

update scim_user u
   set open_task_id = (select min(t.task_id) from task t
                        where t.user_id = u.user_id
                          and t.state in ('open', 'awaiting_approval', 'held', 'in_progress'));

create function track_open_task() returns trigger language plpgsql as $$
declare
    subject uuid;
    first_open bigint;
begin
    if tg_op = 'UPDATE' and old.user_id = new.user_id
       and (old.state in ('open', 'awaiting_approval', 'held', 'in_progress'))
         = (new.state in ('open', 'awaiting_approval', 'held', 'in_progress')) then
        return null;
    end if;
    if tg_op = 'DELETE' then
        subject := old.user_id;
    else
        subject := new.user_id;
    end if;
    -- At most two unfinished tasks per subject (task_one_open_per_subject,
    -- task_one_in_progress_per_subject): a probe of task_subject_idx.
    select min(t.task_id) into first_open from task t
     where t.user_id = subject
       and t.state in ('open', 'awaiting_approval', 'held', 'in_progress');
    -- The subject row is already locked by the write (the lock order: subject, then
    -- its tasks), so this waits for no one.
    update scim_user set open_task_id = first_open
     where user_id = subject and open_task_id is distinct from first_open;
    return null;
end
$$;

create trigger task_open_task
    after insert or update of state, user_id or delete on task
    for each row execute function track_open_task();
