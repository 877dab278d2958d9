"""Crash safety (issue #7: a SCIM write answers 2xx only once its change, task and audit
record have committed together): the real server on a fresh database
takes 1,000 concurrent SCIM creates and updates, is killed with SIGKILL in the middle,
and is restarted. Every request answered 2xx must have its resource, its task and its
audit record (matched by the X-Request-Id sent); no request refused at connect (it never
reached the server) may have left an audit record or a task; the restarted server must
answer /readyz and a SCIM GET at once."""

import concurrent.futures as cf
import os
import threading
import time

from lib import Db, Refused, Server, fail, log, patch_body, request, token, user_body, cli

N = int(os.environ.get("CRASH_REQUESTS", "1000"))
WORKERS = int(os.environ.get("CRASH_CONCURRENCY", "32"))
KILL_AFTER = int(os.environ.get("CRASH_KILL_AFTER", str(N * 2 // 5)))
SEEDS = N // 4  # users created before the storm; each is updated once during it


def main():
    db = Db("crash")
    server = None
    try:
        cli(db.url, "migrate")
        tok = token(db.url, "scim", "okta")
        server = Server(db.url, "crash").start()
        port = server.port

        seeds = []
        for i in range(SEEDS):
            st, _, body = request(port, "POST", "/scim/v2/Users", user_body(f"seed{i}@example.com"),
                                  tok, {"X-Request-Id": f"seed-{i}"})
            if st != 201:
                fail(f"seed create answered {st}: {body}")
            seeds.append(body["id"])

        # The storm: every 4th request updates a seed user (its own, once), the rest create.
        plan = []
        for i in range(N):
            rid = f"crash-{i}"
            if i % 4 == 3 and i // 4 < len(seeds):
                uid = seeds[i // 4]
                plan.append((rid, "update", uid, f"G{i}"))
            else:
                plan.append((rid, "create", f"u{i}@example.com", None))

        results = {}
        done = [0]
        lock = threading.Lock()
        killed = threading.Event()

        def send(item):
            rid, kind, target, given = item
            try:
                if kind == "create":
                    st, _, body = request(port, "POST", "/scim/v2/Users", user_body(target), tok,
                                          {"X-Request-Id": rid}, timeout=30)
                else:
                    st, _, body = request(port, "PATCH", f"/scim/v2/Users/{target}",
                                          patch_body([{"op": "replace", "path": "name.givenName",
                                                       "value": given}]),
                                          tok, {"X-Request-Id": rid}, timeout=30)
                out = ("status", st, body)
            except Refused:
                out = ("refused", None, None)
            except OSError as e:
                out = ("lost", None, repr(e))
            with lock:
                results[rid] = out
                done[0] += 1
                if done[0] >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    server.kill9()
                    log(f"kill -9 after {done[0]} answered requests")
            return out

        t0 = time.time()
        with cf.ThreadPoolExecutor(WORKERS) as ex:
            list(ex.map(send, plan))
        log(f"storm took {time.time() - t0:.1f}s")
        if not killed.is_set():
            fail("the server was never killed (KILL_AFTER too high?)")

        # Restart and check it answers at once.
        t1 = time.time()
        server.start(wait=True)
        ready_after = time.time() - t1
        st, _, body = request(port, "GET", "/scim/v2/Users?count=1", token=tok)
        if st != 200:
            fail(f"SCIM GET after restart answered {st}: {body}")
        log(f"restarted server ready after {ready_after:.2f}s; SCIM GET 200")
        if ready_after > 15:
            fail(f"restart took {ready_after:.1f}s")

        ok = {rid: r for rid, r in results.items() if r[0] == "status" and 200 <= r[1] < 300}
        refused = [rid for rid, r in results.items() if r[0] == "refused"]
        lost = [rid for rid, r in results.items() if r[0] == "lost"]
        other = {rid: r for rid, r in results.items() if r[0] == "status" and not 200 <= r[1] < 300}
        # Any non-2xx answer must be a clean one (the kill can only cut connections).
        for rid, r in other.items():
            if r[1] >= 500 and r[1] != 503:
                fail(f"{rid} answered {r[1]}: {r[2]}")

        audits = {}
        for line in db.q("select request_id, action, outcome, subject_id from audit "
                         "where request_id like 'crash-%'").splitlines():
            rid, action, outcome, subject = line.split("|")
            audits.setdefault(rid, []).append((action, outcome, subject))
        users = set(db.q("select user_id from scim_user where deleted_at is null").split())
        task_users = {}
        for line in db.q("select user_id, kind, state, coalesce(target::text, '') from task").splitlines():
            uid, kind, state, target = line.split("|", 3)
            task_users.setdefault(uid, []).append((kind, state, target))

        plan_by = {p[0]: p for p in plan}
        problems = []
        found_res = found_task = found_audit = unchanged = 0
        for rid, (_, st, body) in ok.items():
            _, kind, target, given = plan_by[rid]
            uid = body.get("id") if isinstance(body, dict) else None
            if kind == "update":
                uid = target
            if uid in users:
                found_res += 1
            else:
                problems.append(f"{rid}: 2xx but user {uid} missing")
            a = audits.get(rid, [])
            # One user.* record of the change (plus task.* records of the derived task).
            mine = [x for x in a if x[0].startswith("user.")]
            if len(mine) == 1:
                found_audit += 1
            else:
                problems.append(f"{rid}: 2xx but {len(mine)} user audit records ({a})")
            tasks = task_users.get(uid, [])
            if kind == "create":
                has = any(k == "create_account" for k, _, _ in tasks)
            else:
                if any(x[1] == "unchanged" for x in a):
                    unchanged += 1
                    has = True
                else:
                    has = any(given in t for _, _, t in tasks)
            if has:
                found_task += 1
            else:
                problems.append(f"{rid}: 2xx but no task ({tasks})")
        for rid in refused:
            if rid in audits:
                problems.append(f"{rid}: refused at connect but has an audit record")
            _, kind, target, given = plan_by[rid]
            if kind == "create":
                n = db.scalar(f"select count(*) from scim_user where user_name = '{target}'")
                if n != "0":
                    problems.append(f"{rid}: refused at connect but user {target} exists")
            elif any(given in t for _, _, t in task_users.get(target, [])):
                problems.append(f"{rid}: refused at connect but a task carries its change")
        # Requests whose connection broke after sending may or may not have committed:
        # both are fine, but one that did must be whole (user + task + audit).
        lost_committed = 0
        for rid in lost:
            if rid in audits:
                lost_committed += 1
                _, kind, target, given = plan_by[rid]
                if kind == "create":
                    n = db.scalar(f"select count(*) from scim_user u join task t using (user_id) "
                                  f"where u.user_name = '{target}' and t.kind = 'create_account'")
                    if n == "0":
                        problems.append(f"{rid}: committed (audited) without user and task")
        # No audit record for a request id that was never sent or answered non-2xx.
        for rid in audits:
            r = results.get(rid)
            if r is None or (r[0] == "status" and not 200 <= r[1] < 300):
                problems.append(f"{rid}: audit record but answered {r}")

        # Every user is a seed or was created by a crash-* request that left its audit
        # record (a user row without its audit record would break invariant 1).
        orphans = db.q("select u.user_name, coalesce(string_agg(a.request_id || ':' || a.action, ','), '') "
                       "from scim_user u left join audit a on a.subject_id = u.user_id::text "
                       "and a.action = 'user.create' where u.user_name not like 'seed%' "
                       "group by 1 having count(a.request_id) filter (where a.request_id like 'crash-%') <> 1")
        for line in orphans.splitlines():
            problems.append(f"user without exactly one crash-* user.create audit record: {line}")
        log(f"requests sent: {len(plan)}; answered 2xx: {len(ok)}; answered non-2xx: {len(other)}; "
            f"refused (never reached the server): {len(refused)}; connection lost in the kill: "
            f"{len(lost)} ({lost_committed} of them committed)")
        hist = {}
        for r in other.values():
            hist[r[1]] = hist.get(r[1], 0) + 1
        if other:
            log(f"non-2xx answers by status: {hist}; e.g. {next(iter(other.values()))[2]}")
        log(f"for the 2xx: resources found {found_res}, tasks found {found_task} "
            f"({unchanged} documented none: unchanged), audit records found {found_audit}")
        log(f"rows: audit records with crash-* request ids {sum(len(v) for v in audits.values())}, "
            f"users {len(users)}, tasks {sum(len(v) for v in task_users.values())}")
        if len(ok) < 50:
            problems.append(f"only {len(ok)} requests answered 2xx before the kill")
        if not refused and not lost:
            problems.append("the kill interrupted nothing")
        if problems:
            for p in problems[:30]:
                log("  " + p)
            fail(f"{len(problems)} problems")
        log("ok: crash safety")
    finally:
        if server:
            server.stop()
        db.close()


if __name__ == "__main__":
    main()
