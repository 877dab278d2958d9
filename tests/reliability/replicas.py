"""Replicas (issue #7: claiming is safe with any number of workers and replicas, nothing
is done twice): two server processes on one database.
Agents claim and complete through both (POST /api/v1/tasks/claim and /complete, long
leases so no lease lapses legitimately); every task must be claimed once and completed
once (the audit trail has exactly one task.claim and one task.complete per task). The
SLA sweeper (advisory lock) and the webhook deliverers (SKIP LOCKED) run in both: a
webhook receiver in this test must get each event exactly once."""

import http.server
import threading
import time

from lib import Db, Server, cli, fail, log, request, token, user_body

USERS = 150
OVERDUE = 20
AGENTS_PER_SERVER = 3


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.got = []
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.got.append((self.headers.get("x-scimbridge-delivery"),
                                    self.headers.get("x-scimbridge-event"), body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def main():
    db = Db("replicas")
    rx = Receiver()
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    servers = []
    try:
        cli(db.url, "migrate")
        scim = token(db.url, "scim", "okta")
        agents = [token(db.url, "agent", f"robot{i}") for i in range(2 * AGENTS_PER_SERVER)]
        db.q(f"insert into webhook (webhook_id, app_id, name, url, format, secret) values "
             f"(gen_random_uuid(), 'peopleai', 'reliability', "
             f"'http://127.0.0.1:{rx.server_address[1]}/hook', 'json', 'sekrit')")
        env = {"SCIMBRIDGE_SWEEP_INTERVAL": "1", "SCIMBRIDGE_LEASE_SECONDS": "3600",
               "SCIMBRIDGE_WEBHOOK_BACKOFF": "1"}
        servers = [Server(db.url, f"replica{i}", env).start() for i in range(2)]

        for i in range(USERS):
            srv = servers[i % 2]
            st, _, body = request(srv.port, "POST", "/scim/v2/Users",
                                  user_body(f"r{i}@example.com"), scim)
            if st != 201:
                fail(f"create answered {st}: {body}")
        n_tasks = int(db.scalar("select count(*) from task where state = 'open'"))
        # Some tasks overdue at once: both sweepers see them; each must be reported once.
        db.q(f"update task set due_at = now() - interval '1 minute' where task_id in "
             f"(select task_id from task order by task_id limit {OVERDUE})")
        time.sleep(3)

        claims, completes, errors = [], [], []
        lock = threading.Lock()

        def agent(i):
            srv = servers[i % 2]
            tok = agents[i]
            empty = 0
            for _ in range(10 * USERS):  # bounded
                st, _, body = request(srv.port, "POST", "/api/v1/tasks/claim",
                                      {"lease_seconds": 3600}, tok,
                                      {"Content-Type": "application/json"})
                if st == 204:
                    empty += 1
                    if empty >= 3:
                        return
                    time.sleep(0.2)
                    continue
                if st != 200:
                    with lock:
                        errors.append(f"claim {st}: {body}")
                    return
                empty = 0
                with lock:
                    claims.append(body["id"])
                st, _, res = request(srv.port, "POST", f"/api/v1/tasks/{body['id']}/complete",
                                     {"outcome": "done", "lease_id": body["lease_id"],
                                      "fields": {}}, tok, {"Content-Type": "application/json"})
                with lock:
                    if st == 200:
                        completes.append(body["id"])
                    else:
                        errors.append(f"complete {body['id']} {st}: {res}")

        threads = [threading.Thread(target=agent, args=(i,)) for i in range(len(agents))]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        log(f"{len(agents)} agents on 2 replicas: {len(claims)} claims, {len(completes)} "
            f"completions of {n_tasks} tasks in {time.time() - t0:.1f}s")

        problems = list(errors)
        if len(set(claims)) != len(claims):
            problems.append("a task was handed out twice")
        if sorted(completes) != sorted(set(claims)) or len(completes) != n_tasks:
            problems.append(f"completions {len(completes)} != tasks {n_tasks}")
        not_done = db.scalar("select count(*) from task where state <> 'done'")
        if not_done != "0":
            problems.append(f"{not_done} tasks not done")
        dup = db.q("select task_id, action, count(*) from audit where action in "
                   "('task.claim', 'task.complete') group by 1, 2 having count(*) <> 1")
        if dup.strip():
            problems.append(f"tasks with other than one claim/complete audit record: {dup[:300]}")
        per_task = db.q("select action, count(*) from audit where action in "
                        "('task.claim', 'task.complete') group by 1 order by 1")
        log(f"audit: {' '.join(per_task.split())}")
        overdue = db.q("select task_id, count(*) from event where kind = 'task.overdue' "
                       "group by 1 having count(*) <> 1")
        n_overdue = db.scalar("select count(*) from event where kind = 'task.overdue'")
        if overdue.strip():
            problems.append(f"tasks reported overdue more than once: {overdue[:300]}")
        if n_overdue != str(OVERDUE):
            problems.append(f"{n_overdue} overdue events for {OVERDUE} overdue tasks")

        # Webhooks: wait (bounded) until every delivery is settled, then count arrivals.
        deadline = time.time() + 90
        while time.time() < deadline:
            if db.scalar("select count(*) from delivery where state = 'pending'") == "0":
                break
            time.sleep(0.5)
        time.sleep(1)
        events = int(db.scalar("select count(*) from event"))
        delivered = db.scalar("select count(*) from delivery where state = 'delivered'")
        with rx.lock:
            ids = [g[0] for g in rx.got]
        seen = {}
        for d in ids:
            seen[d] = seen.get(d, 0) + 1
        twice = {d: n for d, n in seen.items() if n > 1}
        log(f"webhooks: {events} events, {delivered} deliveries recorded delivered, "
            f"{len(ids)} requests received, {len(seen)} distinct, {len(twice)} received twice; "
            f"task.overdue events {n_overdue} for {OVERDUE} overdue tasks")
        if twice:
            problems.append(f"events delivered more than once: {list(twice.items())[:5]}")
        if len(seen) != events or str(events) != delivered:
            problems.append(f"{events} events but {len(seen)} received, {delivered} delivered")
        if events == 0:
            problems.append("no events at all")
        for s in servers:
            if s.proc.poll() is not None:
                problems.append(f"{s.name} died")
        if problems:
            for p in problems[:30]:
                log("  " + p)
            fail(f"{len(problems)} problems")
        log("ok: replicas")
    finally:
        for s in servers:
            s.stop()
        rx.shutdown()
        db.close()


if __name__ == "__main__":
    main()
