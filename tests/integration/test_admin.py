"""`membraned admin` (contract §13): the operator's tools, run as a separate process of the real
binary on the store of running instances, with no capability.

- OnSqlite: one `serve` on a data directory; `admin` on the same directory lists tenants,
  membranes and grants, and revokes a grant, a membrane or a whole tenant. Requests whose headers
  the running instance authorised before the command (Expect: 100-continue answered), and whose
  bodies come right after it returned, answer 401, and nothing reaches the upstream; so does every
  new request.
- OnTwoInstancesOfOnePostgres: the same with two instances on one PostgreSQL and `admin` run with
  the store URL and the master key only: both instances refuse at once after it returns (their view
  of the revocation state may be 250 ms old: the command's settle time covers it).

The upstream (test_revocation_at_send.StampingUpstream) records every request it receives.
"""
import json
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from harness import BINARY, PgCluster, Server, _pg_program, new_master_key, token_of
from test_revocation_at_send import StampingUpstream, raw_request, read_answer

NOT_FOUND = 3


class EpochWatch:
    """Reads the store's revocation epoch in a loop (SQLite: the database file, read-only;
    PostgreSQL: one psql session) and notes when it first changes: the moment a revoke's commit
    became visible, on this process's monotonic clock."""

    def __init__(self, server):
        self.server = server
        self.changed_at = None
        self.stopping = threading.Event()
        self.read = self.sqlite_reader() if not server.store else self.psql_reader()
        self.before = self.read()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def sqlite_reader(self):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.server.data_dir, "membraned.db"), uri=True,
                             check_same_thread=False)
        self.close = db.close
        return lambda: db.execute("SELECT epoch FROM revocation_epoch WHERE id = 1").fetchone()[0]

    def psql_reader(self):
        psql = subprocess.Popen([_pg_program("psql"), "-X", "-q", "-At", "-d", self.server.store],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

        def read():
            psql.stdin.write("SELECT epoch FROM revocation_epoch WHERE id = 1;\n")
            psql.stdin.flush()
            return psql.stdout.readline().strip()

        def close():
            psql.stdin.close()
            psql.wait(30)

        self.close = close
        return read

    def watch(self):
        while not self.stopping.is_set():
            if self.read() != self.before:
                self.changed_at = time.monotonic()
                return

    def stop(self):
        """When the change was seen (None: never)."""
        self.stopping.set()
        self.thread.join(30)
        self.close()
        return self.changed_at


def run_admin(server, *args, data_dir=None, env=None):
    """`membraned admin ARGS` on `server`'s store and key, the store flags after the subcommand as
    an operator types them: (exit status, parsed JSON or text of stdout, stderr, seconds taken)."""
    cmd = [BINARY, "admin"] + list(args) + ["--data-dir", data_dir or server.data_dir]
    if server.store:
        cmd += ["--store", server.store]
    started = time.monotonic()
    out = subprocess.run(cmd, env=env or server.env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    body = out.stdout
    if out.returncode == 0 and "--text" not in args:
        body = json.loads(out.stdout)
    return out.returncode, body, out.stderr, took


class Admin:
    """The scenarios, over self.servers (instances on one store), self.tenant (the first tenant's
    JSON) and self.upstream."""

    maxDiff = None
    settle_ms = None  # the settle time contract §7 gives the store

    def admin(self, *args, **kwargs):
        return run_admin(self.servers[0], *args, **kwargs)

    def admin_ok(self, *args):
        code, body, err, took = self.admin(*args)
        self.assertEqual(code, 0, err)
        self.assertNotIn("CPBLTY", json.dumps(body), "a token in the output")
        return body, took

    def new_grant(self, create=None, membrane_id=None):
        """A membrane (made on the first instance) and a POST export to the upstream through it:
        (capability, grant id, membrane id, the upstream path)."""
        server = self.servers[0]
        membrane_id = membrane_id or "m " + uuid.uuid4().hex
        status, made, _ = server.call(create or token_of(self.tenant["capabilities"]["create"]), "POST",
                                      body={"id": membrane_id})
        self.assertEqual(status, 201, made)
        path = "/fn/" + uuid.uuid4().hex
        status, exported, _ = server.call(token_of(made["capabilities"]["export"]), "POST",
                                          body={"uri": self.upstream.url(path), "method": "POST"})
        self.assertEqual(status, 201, exported)
        return token_of(exported["capability"]), exported["id"], membrane_id, path

    def invoke(self, server, cap):
        status, body, _ = server.call(cap, "POST", body={"n": 1})
        return status

    def stockpile(self, cap, count=4):
        """Requests on every instance whose headers were authorised (100 Continue) and whose bodies
        wait: the sockets."""
        socks = []
        for i in range(count * len(self.servers)):
            server = self.servers[i % len(self.servers)]
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            socks.append(sock)
            sock.sendall(raw_request(cap, b'{"n":', length=10, expect=True))
        for sock in socks:
            self.assertTrue(sock.recv(1024).startswith(b"HTTP/1.1 100"))
        return socks

    def finish(self, socks):
        """Sends the rest of each stockpiled body: the statuses answered."""
        try:
            for sock in socks:
                sock.sendall(b'"late"}')
            return [read_answer(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()

    def assert_refused_at_once(self, cap, path, revoke):
        """Runs `revoke` (the admin command) while requests stand authorised on every instance:
        right after it returns, they and new ones answer 401 and nothing more reaches the upstream."""
        for server in self.servers:
            self.assertEqual(self.invoke(server, cap), 200)
        arrived = len(self.upstream.arrived(path))
        self.assertEqual(arrived, len(self.servers))
        socks = self.stockpile(cap)
        watch = EpochWatch(self.servers[0])
        body, _ = revoke()
        returned = time.monotonic()
        statuses = self.finish(socks)
        fresh = [self.invoke(server, cap) for server in self.servers]
        committed = watch.stop()
        self.assertEqual(statuses, [401] * len(socks))
        self.assertEqual(fresh, [401] * len(self.servers))
        self.assertEqual(len(self.upstream.arrived(path)), arrived, "a request reached the upstream after the command")
        self.assertEqual(body["settledMs"], self.settle_ms)
        # Seen a little after the commit (a read every millisecond or so): the command returned at
        # least the settle time after it.
        self.assertIsNotNone(committed, "the revocation epoch did not change")
        waited_ms = (returned - committed) * 1000
        print("%s: returned %.1f ms after its commit was seen" % (self.id(), waited_ms), file=sys.stderr)
        self.assertGreaterEqual(waited_ms, self.settle_ms - 5, "the command returned before the settle time")
        return body

    # --- listings --------------------------------------------------------------------------------

    def test_listings_show_tenants_membranes_and_grants_without_a_token(self):
        cap, grant_id, membrane_id, path = self.new_grant()
        other = self.servers[0].tenant_create()
        body, _ = self.admin_ok("tenants")
        self.assertTrue(body["completed"])
        listed = {t["id"]: t for t in body["tenants"]}
        self.assertLessEqual({self.tenant["id"], other["id"]}, set(listed))
        self.assertFalse(listed[other["id"]]["deleted"])
        self.assertRegex(listed[other["id"]]["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        ids = [t["id"] for t in body["tenants"]]
        self.assertEqual(ids, sorted(ids))
        first, _ = self.admin_ok("tenants", "--limit", "1")
        self.assertEqual([t["id"] for t in first["tenants"]], ids[:1])
        self.assertFalse(first["completed"])
        rest, _ = self.admin_ok("tenants", "--after", ids[0])
        self.assertEqual([t["id"] for t in rest["tenants"]], ids[1:])

        body, _ = self.admin_ok("membranes", "--tenant", self.tenant["id"])
        self.assertIn({"id": membrane_id}, body["membranes"])
        body, _ = self.admin_ok("grants", "--tenant", self.tenant["id"], "--membrane", membrane_id)
        self.assertEqual([g["id"] for g in body["grants"]], [grant_id])
        entry = body["grants"][0]
        self.assertEqual((entry["state"], entry["target"], entry["method"], entry["membrane"]),
                         ("active", self.upstream.url(path), "POST", membrane_id))
        # The same entry as the inventory of the API gives its owner (contract §12).
        status, inventory, _ = self.servers[0].call(token_of(self.tenant["capabilities"]["query"]), "GET",
                                                    "/?grant=" + grant_id)
        self.assertEqual(status, 200, inventory)
        body, _ = self.admin_ok("grant", "--tenant", self.tenant["id"], grant_id)
        self.assertEqual(body["grant"], inventory["exports"][0])

        code, text, err, _ = self.admin("grants", "--tenant", self.tenant["id"], "--membrane", membrane_id, "--text")
        self.assertEqual(code, 0, err)
        self.assertIn(grant_id + "  active  invoke " + self.upstream.url(path), text)

    def test_unknown_ids_exit_3_and_change_nothing(self):
        cap, grant_id, membrane_id, _ = self.new_grant()
        for args in (["revoke-grant", "--tenant", self.tenant["id"], "g_000000000000000000000000"],
                     ["revoke-membrane", "--tenant", self.tenant["id"], "--membrane", "never made"],
                     ["delete-tenant", "--tenant", "0" * 32],
                     ["membranes", "--tenant", "0" * 32],
                     ["grants", "--tenant", self.tenant["id"], "--membrane", "never made"],
                     ["grant", "--tenant", "0" * 32, grant_id]):
            code, out, err, _ = self.admin(*args)
            self.assertEqual(code, NOT_FOUND, (args, out, err))
            self.assertEqual(out, "")
            self.assertIn("membraned admin: ", err)
        for server in self.servers:
            self.assertEqual(self.invoke(server, cap), 200)

    # --- revocations -----------------------------------------------------------------------------

    def test_revoke_grant_is_refused_everywhere_when_it_returns(self):
        cap, grant_id, membrane_id, path = self.new_grant()
        sibling, _, _, sibling_path = self.new_grant()
        body = self.assert_refused_at_once(
            cap, path, lambda: self.admin_ok("revoke-grant", "--tenant", self.tenant["id"], grant_id))
        self.assertEqual((body["revoked"], body["tenant"], body["alreadyRevoked"], body["cut"]),
                         ("grant", self.tenant["id"], False, 1))
        self.assertEqual((body["grant"]["id"], body["grant"]["state"], body["grant"]["revoked"]),
                         (grant_id, "revoked", True))
        for server in self.servers:
            self.assertEqual(self.invoke(server, sibling), 200)
        again, _ = self.admin_ok("revoke-grant", "--tenant", self.tenant["id"], grant_id)
        self.assertTrue(again["alreadyRevoked"])

    def test_revoke_membrane_is_refused_everywhere_when_it_returns(self):
        cap, grant_id, membrane_id, path = self.new_grant()
        sibling, _, _, _ = self.new_grant()
        body = self.assert_refused_at_once(
            cap, path, lambda: self.admin_ok("revoke-membrane", "--tenant", self.tenant["id"], "--membrane", membrane_id))
        self.assertEqual((body["revoked"], body["membrane"], body["cut"]), ("membrane", membrane_id, 1))
        for server in self.servers:
            self.assertEqual(self.invoke(server, sibling), 200)
        listed, _ = self.admin_ok("membranes", "--tenant", self.tenant["id"])
        self.assertNotIn({"id": membrane_id}, listed["membranes"])
        entry, _ = self.admin_ok("grant", "--tenant", self.tenant["id"], grant_id)
        self.assertEqual(entry["grant"]["state"], "cut")
        code, _, _, _ = self.admin("revoke-membrane", "--tenant", self.tenant["id"], "--membrane", membrane_id)
        self.assertEqual(code, NOT_FOUND, "a revoked membrane's id names no live membrane")

    def test_delete_tenant_is_refused_everywhere_when_it_returns(self):
        doomed = self.servers[0].tenant_create()
        cap, _, _, path = self.new_grant(create=token_of(doomed["capabilities"]["create"]))
        mine, _, _, _ = self.new_grant()
        body = self.assert_refused_at_once(cap, path, lambda: self.admin_ok("delete-tenant", "--tenant", doomed["id"]))
        self.assertEqual((body["deleted"], body["tenant"], body["alreadyDeleted"]), ("tenant", doomed["id"], False))
        for server in self.servers:
            for name in ("create", "query", "deleteSelf"):
                status, _, _ = server.call(token_of(doomed["capabilities"][name]), "POST", body={"id": "x"})
                self.assertEqual(status, 401, name)
            self.assertEqual(self.invoke(server, mine), 200)
        listed, _ = self.admin_ok("tenants")
        self.assertIn({"id": doomed["id"], "deleted": True},
                      [{"id": t["id"], "deleted": t["deleted"]} for t in listed["tenants"]])
        again, _ = self.admin_ok("delete-tenant", "--tenant", doomed["id"])
        self.assertTrue(again["alreadyDeleted"])


class OnSqlite(Admin, unittest.TestCase):
    settle_ms = 60

    @classmethod
    def setUpClass(cls):
        cls.upstream = StampingUpstream()
        server = Server()
        cls.audit_log = os.path.join(os.path.dirname(server.data_dir), "audit.log")
        server.args += ["--audit-log", cls.audit_log]
        cls.servers = [server.start()]
        cls.tenant = cls.servers[0].first_tenant()

    @classmethod
    def tearDownClass(cls):
        codes = [s.stop() for s in cls.servers]
        for s in cls.servers:
            s.cleanup()
        cls.upstream.close()
        assert codes == [0], codes

    def audit_records(self, wanted, timeout=10):
        """The audit log's records once `wanted(records)` holds (the service writes in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.audit_log) as f:
                records = [json.loads(line) for line in f]
            if wanted(records) or time.monotonic() > deadline:
                return records

    def test_an_operators_revoke_is_in_the_audit_log_between_the_uses(self):
        # The operator gives serve's --audit-log: the grant's trail reads to its end.
        cap, grant_id, membrane_id, _ = self.new_grant()
        self.assertEqual(self.invoke(self.servers[0], cap), 200)
        self.admin_ok("revoke-grant", "--tenant", self.tenant["id"], grant_id, "--audit-log", self.audit_log)
        self.assertEqual(self.invoke(self.servers[0], cap), 401)
        records = self.audit_records(lambda rs: any(r.get("reason") == "revoked" for r in rs))
        used = [r for r in records if r.get("grant") == grant_id and r["operation"] == "invoke"]
        self.assertEqual(len(used), 1, records)
        # The grant's trail: its records by grant id, and the refused attempt by its token's id.
        mine = [r for r in records if r.get("grant") == grant_id or r.get("token") == used[0]["token"]]
        self.assertEqual([r["operation"] for r in mine], ["invoke", "adminRevokeGrant", "none"], mine)
        revoke = mine[1]
        self.assertEqual({k: revoke[k] for k in ("tenant", "grant", "operator", "status", "cut")},
                         {"tenant": self.tenant["id"], "grant": grant_id, "operator": pwd.getpwuid(os.geteuid()).pw_name,
                          "status": 202, "cut": 1})
        self.assertNotIn("client", revoke)
        self.assertNotIn("token", revoke)
        self.assertEqual(mine[2]["reason"], "revoked")
        # A revoked membrane and a deleted tenant are recorded the same way.
        _, _, other_membrane, _ = self.new_grant()
        self.admin_ok("revoke-membrane", "--tenant", self.tenant["id"], "--membrane", other_membrane,
                      "--audit-log", self.audit_log)
        records = self.audit_records(lambda rs: any(r["operation"] == "adminRevokeMembrane" for r in rs))
        membrane_revoke = [r for r in records if r["operation"] == "adminRevokeMembrane"]
        self.assertEqual([(r["membrane"], r["cut"]) for r in membrane_revoke], [(other_membrane, 1)])

    def test_a_wrong_data_directory_is_an_error_and_nothing_is_made(self):
        with tempfile.TemporaryDirectory(prefix="membraned-admin-") as tmp:
            missing = os.path.join(tmp, "not-there")
            code, out, err, _ = run_admin(self.servers[0], "tenants", data_dir=missing)
            self.assertEqual(code, 1, out)
            self.assertIn("no database", err)
            self.assertFalse(os.path.exists(missing))
            # A database without its key: refused, and no key is made that could never open it.
            copy = os.path.join(tmp, "copy")
            os.makedirs(copy)
            shutil.copy(os.path.join(self.servers[0].data_dir, "membraned.db"), copy)
            env = {k: v for k, v in self.servers[0].env.items() if k != "MEMBRANED_MASTER_KEY"}
            code, out, err, _ = run_admin(self.servers[0], "tenants", data_dir=copy, env=env)
            self.assertEqual(code, 1, out)
            self.assertIn("master.key", err)
            self.assertFalse(os.path.exists(os.path.join(copy, "master.key")))

    def test_text_form_of_a_revoke_says_what_it_did(self):
        _, grant_id, _, _ = self.new_grant()
        code, text, err, _ = self.admin("revoke-grant", "--tenant", self.tenant["id"], grant_id, "--text")
        self.assertEqual(code, 0, err)
        self.assertEqual(text, "revoked grant %s of tenant %s; grants cut: 1; every instance refuses it now "
                               "(waited 60 ms)\n" % (grant_id, self.tenant["id"]))


class OnTwoInstancesOfOnePostgres(Admin, unittest.TestCase):
    settle_ms = 300

    @classmethod
    def setUpClass(cls):
        cls.upstream = StampingUpstream()
        url, key = PgCluster.shared().create_database(), new_master_key()
        cls.servers = []
        for _ in range(2):
            cls.servers.append(Server(store=url, master_key=key).start())
        cls.tenant = [s for s in cls.servers if s.wrote_first_tenant()][0].first_tenant()
        # The operator's host holds the store URL and the key, not an instance's data directory.
        cls.operator_dir = tempfile.TemporaryDirectory(prefix="membraned-admin-")

    @classmethod
    def tearDownClass(cls):
        codes = [s.stop() for s in cls.servers]
        for s in cls.servers:
            s.cleanup()
        cls.upstream.close()
        cls.operator_dir.cleanup()
        assert codes == [0, 0], codes

    def admin(self, *args, **kwargs):
        kwargs.setdefault("data_dir", os.path.join(self.operator_dir.name, "none"))
        return run_admin(self.servers[0], *args, **kwargs)

    def test_the_operator_needs_no_data_directory_and_makes_none(self):
        self.admin_ok("tenants")
        self.assertFalse(os.path.exists(os.path.join(self.operator_dir.name, "none")))


if __name__ == "__main__":
    unittest.main()
