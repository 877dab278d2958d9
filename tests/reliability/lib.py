"""Shared helpers of the reliability tests (tests/reliability/*.py): a fresh database,
the real binary as a server process, raw HTTP on 127.0.0.1, psql queries, and a tiny
TCP proxy that can cut the server off from Postgres. Standard library only."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SCIMBRIDGE_BIN", os.path.join(ROOT, "target", "debug", "scimbridge"))
ADMIN_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_HOST, PG_PORT = "127.0.0.1", 5432
LOGS = os.path.join(ROOT, "target", "reliability")


def log(*a):
    print(*a, flush=True)


def fail(msg):
    log("FAIL: " + msg)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Db:
    """A fresh database, dropped at close."""

    def __init__(self, name):
        self.name = f"scimbridge_rel_{name}_{os.getpid()}"
        self.url = ADMIN_URL.rsplit("/", 1)[0] + "/" + self.name
        psql(ADMIN_URL, f"create database {self.name}")

    def url_via(self, port):
        return f"postgres://postgres@127.0.0.1:{port}/{self.name}"

    def q(self, sql):
        return psql(self.url, sql)

    def scalar(self, sql):
        return self.q(sql).strip()

    def close(self):
        psql(ADMIN_URL, f"drop database if exists {self.name} with (force)", check=False)


def psql(url, sql, check=True):
    r = subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        fail(f"psql: {sql}: {r.stderr}")
    return r.stdout


def cli(db_url, *args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DATABASE_URL": db_url})
    if r.returncode != 0:
        fail(f"scimbridge {' '.join(args)}: {r.stderr}")
    return r.stdout.strip()


def token(db_url, role, name, app="peopleai"):
    return cli(db_url, "token", "create", "--app", app, "--role", role, "--name", name)


class Server:
    """`scimbridge serve` as a child process on a free 127.0.0.1 port."""

    def __init__(self, db_url, name, extra_env=None, port=None):
        self.db_url, self.name = db_url, name
        self.port = port or free_port()
        self.env = {**os.environ, "DATABASE_URL": db_url, "SCIMBRIDGE_TOKEN_CACHE_SECONDS": "30",
                    # Load tests, not rate limit tests: the storm is one token.
                    "SCIMBRIDGE_RATE_LIMIT_PER_SECOND": "0",
                    **(extra_env or {})}
        self.proc = None

    def start(self, wait=True):
        os.makedirs(LOGS, exist_ok=True)
        out = open(os.path.join(LOGS, f"{self.name}.log"), "a")
        self.proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{self.port}"],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail(f"{self.name} exited with {self.proc.returncode} (see {LOGS}/{self.name}.log)")
            try:
                if request(self.port, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except (OSError, Refused):
                pass
            time.sleep(0.1)
        fail(f"{self.name} not ready within {seconds}s")

    def kill9(self):
        self.proc.kill()  # SIGKILL
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Refused(Exception):
    """The connection was refused: the request never reached the server."""


def request(port, method, path, body=None, token=None, headers=None, timeout=30):
    """One request on a fresh connection. Returns (status, headers, parsed body or text).
    Raises Refused when the server could not be reached at all, other OSErrors when the
    connection broke after the request may have been sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.connect()
        except ConnectionRefusedError as e:
            raise Refused() from e
        h = {"Accept": "application/scim+json, application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/scim+json"
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        res = conn.getresponse()
        raw = res.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return res.status, {k.lower(): v for k, v in res.getheaders()}, parsed
    finally:
        conn.close()


def user_body(user_name, given="Ann"):
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": given, "familyName": "Lee"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "active": True,
    }


def patch_body(ops):
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of Postgres. `cut()` closes every proxied
    connection and refuses new ones (the database 'goes away' for this server only);
    `restore()` lets connections through again."""

    def __init__(self, target=(PG_HOST, PG_PORT)):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.up = True
        self.blackhole = False
        self.held = []
        self.lock = threading.Lock()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if not self.up:
                    if self.blackhole:
                        self.held.append(c)  # accepted, never answered
                    else:
                        _rst(c)
                    continue
                try:
                    u = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _rst(c)
                    continue
                u.settimeout(None)
                self.conns.append((c, u))
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, blackhole=False):
        """Closes every proxied connection; new ones are refused, or with `blackhole`
        accepted and never answered (a network partition rather than a refusal)."""
        with self.lock:
            self.up = False
            self.blackhole = blackhole
            for c, u in self.conns:
                _rst(c)
                _rst(u)
            self.conns = []

    def restore(self):
        with self.lock:
            self.up = True
            for c in self.held:
                _rst(c)
            self.held = []


def _rst(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
