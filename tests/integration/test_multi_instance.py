"""Several membraned processes on one PostgreSQL database (issue 9): real processes, real sockets,
a real PostgreSQL (tests/support/pg_cluster.sh), a real balancer (Debian's HAProxy running
deploy/haproxy/haproxy.cfg). Nothing is mocked.

- CrossInstanceTest: create on A, export on B, invoke on C (a SigV4 export verified by botocore);
  re-export chains across instances and revocation seen by all three; tenants and deleteSelf;
  instances with another or no master key are refused.
- RevocationRaceTest: client threads hammer capabilities through A, B and C on keep-alive
  connections while their root membrane is revoked through one of them; every request that
  started after the 202 was received must be 401, on every instance.
- PostgresOutageTest: PostgreSQL (a cluster of the test's own) stopped mid-load: 503 with the
  contract §3 body, no crash, recovery by itself, nothing acknowledged lost.
- KilledInstanceTest: kill -9 of one instance under load; the others keep serving.
- MigrationRaceTest: instances starting at the same moment on an empty database.
- BalancerTest: deploy/compose-ha.yml's topology: three instances behind HAProxy checking /healthz,
  and grants' allowFrom judging the client's address, which crosses HAProxy in X-Forwarded-For.

The shared cluster comes from MEMBRANED_TEST_PG_DIR (the ctest fixture pg_cluster); each class uses
a fresh database on it. Time is measured with time.monotonic() in this one process, whose threads
are all the clients, so the order of events across instances is the order seen here.
"""
import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from harness import PgCluster, Server, Upstream, new_master_key, token_of
from test_tutorial import ACCESS_KEY, SECRET, start_fake_aws, stop_fake_aws

HERE = os.path.dirname(os.path.abspath(__file__))
BALANCER_CONFIG = os.path.join(HERE, "..", "..", "deploy", "haproxy", "haproxy.cfg")
# Debian's haproxy (scripts/setup.sh installs it) lives in /usr/sbin, which a user's PATH may lack.
HAPROXY = os.environ.get("HAPROXY_BINARY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
UNAVAILABLE = {"statusCode": 503, "error": "Service Unavailable", "message": "Please try again soon"}
NAMES = "ABC"


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def wait_for(predicate, what, timeout=60, interval=0.1):
    """Polls predicate until it returns something true; fails after a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_instances(url, key, count=3, args=()):
    """count instances on one database, started one after the other (the first makes the first
    tenant); each has its own data directory and the same master key."""
    servers = []
    try:
        for _ in range(count):
            servers.append(Server(store=url, master_key=key, args=args).start())
    except Exception:
        for s in servers:
            s.cleanup()
        raise
    return servers


def stop_instances(servers):
    """SIGTERM each one still running; the exit codes of those (a clean stop is 0)."""
    codes = []
    for s in servers:
        was_running = s.alive()
        code = s.stop()
        if was_running:
            codes.append(code)
        s.cleanup()
    return codes


def first_tenant_of(servers):
    made = [s for s in servers if s.wrote_first_tenant()]
    assert len(made) == 1, "instances that wrote first-tenant.json: %d" % len(made)
    return made[0].first_tenant()


class Instances(unittest.TestCase):
    """Helpers over membraned's API, each asserting the success status of contract §4."""

    maxDiff = None

    def create_membrane(self, server, create, membrane_id=None):
        membrane_id = membrane_id or "m-" + uuid.uuid4().hex
        status, body, _ = server.call(create, "POST", body={"id": membrane_id})
        self.assertEqual(status, 201, body)
        return token_of(body["capabilities"]["export"]), token_of(body["capabilities"]["revoke"])

    def export(self, server, export, doc):
        status, body, _ = server.call(export, "POST", body=doc)
        self.assertEqual(status, 201, body)
        return body["capability"]

    def revoke(self, server, revoke):
        status, body, _ = server.call(revoke, "GET")
        self.assertEqual((status, body), (202, {"statusCode": 202, "message": "Accepted"}))

    @staticmethod
    def invoke(server, cap, body=b'{"n":1}'):
        return server.call(cap, "POST", body=body)[0]


class CrossInstanceTest(Instances):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster.shared()
        cls.url = cls.pg.create_database()
        cls.key = new_master_key()
        cls.upstream = Upstream()
        cls.fake, cls.fake_url = start_fake_aws("--access-key", ACCESS_KEY, "--secret", SECRET)
        try:
            # One public authority for all, as behind a balancer: URIs are the same from any instance.
            cls.servers = start_instances(cls.url, cls.key, args=["--authority", "membraned.example"])
        except Exception:
            stop_fake_aws(cls.fake)
            cls.upstream.close()
            raise
        cls.a, cls.b, cls.c = cls.servers
        cls.tenant = first_tenant_of(cls.servers)
        cls.tenants_at_start = cls.pg.psql(cls.url, "SELECT count(*) FROM tenants")
        cls.create = token_of(cls.tenant["capabilities"]["create"])
        cls.query = token_of(cls.tenant["capabilities"]["query"])

    @classmethod
    def tearDownClass(cls):
        codes = stop_instances(cls.servers)
        stop_fake_aws(cls.fake)
        cls.upstream.close()
        assert codes == [0, 0, 0], codes

    def test_only_the_first_instance_made_the_first_tenant(self):
        self.assertEqual([s.wrote_first_tenant() for s in self.servers], [True, False, False])
        self.assertEqual(self.tenants_at_start, "1")

    def test_create_on_a_export_on_b_invoke_on_c(self):
        membrane_id = "my-aws-lambda-membrane " + uuid.uuid4().hex
        status, created, _ = self.a.call(self.create, "POST", body={"id": membrane_id})
        self.assertEqual(status, 201, created)
        export, revoke = (token_of(created["capabilities"][k]) for k in ("export", "revoke"))
        # The secret key is sealed by B; C (and A) open it with the shared master key and sign:
        # the fake Lambda checks every signature with botocore.
        lambda_cap = self.export(self.b, export, {
            "uri": self.fake_url + "/2015-03-31/functions/my-function/invocations", "method": "POST",
            "headers": {"X-Amz-Invocation-Type": "RequestResponse"},
            "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": ACCESS_KEY, "secretAccessKey": SECRET,
                                          "region": "us-east-1", "service": "lambda"}}})
        for server, n in ((self.c, 1), (self.a, 2), (self.b, 3)):
            status, body, _ = server.call(token_of(lambda_cap), "POST", body={"hello": n})
            self.assertEqual((status, body), (200, {"function": "my-function", "event": {"hello": n}}))
        # C's query returns the URIs A's create returned (the tokens are sealed in the database).
        for server in self.servers:
            status, body, _ = server.call(self.query, "GET", "/?id=" + membrane_id.replace(" ", "+"))
            self.assertEqual((status, body), (200, {"membranes": [{"id": membrane_id, "capabilities":
                                                                   created["capabilities"]}], "completed": True}))
        # Revoked through C: refused by all three; the membrane's export capability too.
        self.revoke(self.c, revoke)
        for server in self.servers:
            self.assertEqual(self.invoke(server, token_of(lambda_cap)), 401)
            self.assertEqual(server.call(export, "POST", body={"uri": self.upstream.url()})[0], 401)
        # A second revoke, on another instance, is 202 again.
        self.revoke(self.a, revoke)

    def test_reexport_chain_across_instances(self):
        # X exported on A through M1; X' re-exported on B through M2; X'' on C through M3.
        m1_export, m1_revoke = self.create_membrane(self.a, self.create)
        m2_export, m2_revoke = self.create_membrane(self.b, self.create)
        m3_export, m3_revoke = self.create_membrane(self.c, self.create)
        x = self.export(self.a, m1_export, {"uri": self.upstream.url("/echo/x")})
        x1 = self.export(self.b, m2_export, {"capability": x})
        x2 = self.export(self.c, m3_export, {"capability": x1})
        chain = [token_of(x), token_of(x1), token_of(x2)]
        for server in self.servers:
            self.assertEqual([self.invoke(server, cap) for cap in chain], [200, 200, 200])
        # Revoking the middle membrane (M2) on A kills X' and X'' everywhere, and leaves X alone
        # (contract §7).
        self.revoke(self.a, m2_revoke)
        for server in self.servers:
            self.assertEqual([self.invoke(server, cap) for cap in chain], [200, 401, 401], server.port)
        # Revoking the root (M1) on C kills X too.
        self.revoke(self.c, m1_revoke)
        for server in self.servers:
            self.assertEqual([self.invoke(server, cap) for cap in chain], [401, 401, 401], server.port)

    def test_a_tenant_made_by_tenant_create_and_its_delete_self(self):
        tenant = self.a.tenant_create()
        create, delete_self = (token_of(tenant["capabilities"][k]) for k in ("create", "deleteSelf"))
        export, _ = self.create_membrane(self.b, create)
        cap = self.export(self.c, export, {"uri": self.upstream.url("/echo/tenant")})
        self.assertEqual([self.invoke(s, token_of(cap)) for s in self.servers], [200, 200, 200])
        status, body, _ = self.c.call(delete_self, "DELETE")
        self.assertEqual((status, body), (202, {"statusCode": 202, "message": "Accepted"}))
        for server in self.servers:
            self.assertEqual(self.invoke(server, token_of(cap)), 401)
            self.assertEqual(server.call(create, "POST", body={"id": "after"})[0], 401)
        # The first tenant is another one: untouched.
        self.create_membrane(self.a, self.create)

    def test_an_instance_with_another_or_no_master_key_is_refused(self):
        other = Server(store=self.url, master_key=new_master_key())
        try:
            with self.assertRaises(RuntimeError) as refused:
                other.start()
            self.assertIn("the master key does not open this database's secrets", str(refused.exception))
        finally:
            other.cleanup()
        keyless = Server(store=self.url)
        keyless.env.pop("MEMBRANED_MASTER_KEY", None)
        try:
            with self.assertRaises(RuntimeError) as refused:
                keyless.start()
            self.assertIn("the PostgreSQL store already holds data but neither MEMBRANED_MASTER_KEY nor",
                          str(refused.exception))
            self.assertFalse(os.path.exists(os.path.join(keyless.data_dir, "master.key")))
        finally:
            keyless.cleanup()
        # The running instances did not notice.
        self.create_membrane(self.b, self.create)


class Hammer(threading.Thread):
    """Invokes capabilities in turn on one instance over one keep-alive connection, as fast as it
    can, recording (start, end, status, capability index) for every request; status None for a
    connection that failed."""

    def __init__(self, server, name, caps, stop, pause_on=(), pause=0.0):
        super().__init__(daemon=True)
        self.server, self.name, self.caps, self.stop = server, name, caps, stop
        self.pause_on, self.pause = pause_on, pause
        self.records = []
        self.errors = []

    def run(self):
        conn = None
        i = 0
        while not self.stop.is_set():
            index = i % len(self.caps)
            i += 1
            if conn is None:
                conn = self.server.connection(timeout=60)
            start = time.monotonic()
            try:
                status = self.server.call(self.caps[index], "POST", body=b'{"hammer":1}', conn=conn)[0]
            except (OSError, http.client.HTTPException) as e:
                status = None
                self.errors.append(repr(e))
                conn.close()
                conn = None
            self.records.append((start, time.monotonic(), status, index))
            if status in self.pause_on:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def started_after(self, moment):
        return [r for r in list(self.records) if r[0] > moment]


class RevocationRaceTest(Instances):
    """contract §4: revoke takes effect before its 202, on every instance."""

    THREADS_PER_INSTANCE = 2

    @classmethod
    def setUpClass(cls):
        cls.url = PgCluster.shared().create_database()
        cls.upstream = Upstream()
        try:
            cls.servers = start_instances(cls.url, new_master_key())
        except Exception:
            cls.upstream.close()
            raise
        cls.create = token_of(first_tenant_of(cls.servers)["capabilities"]["create"])

    @classmethod
    def tearDownClass(cls):
        codes = stop_instances(cls.servers)
        cls.upstream.close()
        assert codes == [0, 0, 0], codes

    def race(self, revoker):
        a, b, c = self.servers
        # The root membrane R (made on A) and X exported through it on B; X' re-exports X through
        # another membrane on C. Revoking R must kill both, wherever they are presented.
        root_export, root_revoke = self.create_membrane(a, self.create)
        x = self.export(b, root_export, {"uri": self.upstream.url("/echo/race")})
        other_export, _ = self.create_membrane(c, self.create)
        x1 = self.export(a, other_export, {"capability": x})
        caps = [token_of(x), token_of(x1)]

        stop = threading.Event()
        hammers = [Hammer(s, NAMES[i], caps, stop) for i, s in enumerate(self.servers)
                   for _ in range(self.THREADS_PER_INSTANCE)]
        for h in hammers:
            h.start()
        try:
            wait_for(lambda: all(len(h.records) >= 50 for h in hammers), "requests before the revoke")
            conn = self.servers[revoker].connection()
            sent = time.monotonic()
            status, body, _ = self.servers[revoker].call(root_revoke, "GET", conn=conn)
            acknowledged = time.monotonic()  # the 202 has been read whole
            conn.close()
            self.assertEqual((status, body), (202, {"statusCode": 202, "message": "Accepted"}))
            wait_for(lambda: all(len(h.started_after(acknowledged)) >= 100 for h in hammers),
                     "requests after the revoke")
        finally:
            stop.set()
            for h in hammers:
                h.join(60)

        records = [(h.name,) + r for h in hammers for r in h.records]
        before = [r for r in records if r[2] < sent]                    # ended before the revoke was sent
        during = [r for r in records if r[2] >= sent and r[1] <= acknowledged]
        after = [r for r in records if r[1] > acknowledged]             # started after the 202 was read
        succeeded_after = [r for r in after if r[3] is not None and 200 <= r[3] < 300]
        not_401_after = [r for r in after if r[3] != 401]
        per_instance = collections.Counter(r[0] for r in after)
        log("race, revoke through %s: %d requests ended before the revoke was sent (%s), %d overlapped it (%s), "
            "%d started after its 202 (A %d, B %d, C %d): %d succeeded, %d answered 401, %d other"
            % (NAMES[revoker], len(before), dict(collections.Counter(r[3] for r in before)), len(during),
               dict(collections.Counter(r[3] for r in during)), len(after), per_instance["A"], per_instance["B"],
               per_instance["C"], len(succeeded_after), len(after) - len(not_401_after),
               len(not_401_after) - len(succeeded_after)))
        self.assertEqual([h.errors for h in hammers], [[]] * len(hammers))
        # The hammering did reach the capability before the revoke, on every instance.
        self.assertEqual({r[3] for r in before}, {200})
        self.assertEqual({r[0] for r in before}, set(NAMES))
        # After the 202: no success, and 401 only, on every instance.
        self.assertEqual(len(succeeded_after), 0)
        self.assertEqual(not_401_after, [])
        self.assertEqual(set(per_instance), set(NAMES))
        # The requests that overlapped the revoke answered one or the other.
        self.assertLessEqual({r[3] for r in during}, {200, 401})

    def test_revoke_through_a(self):
        self.race(0)

    def test_revoke_through_b(self):
        self.race(1)

    def test_revoke_through_c(self):
        self.race(2)


class Writer(threading.Thread):
    """Creates membranes, exports through them and revokes every other one, in a loop, and keeps
    what was acknowledged: exports answered 201, revokes answered 202."""

    def __init__(self, server, label, create, target, stop):
        super().__init__(daemon=True)
        self.server, self.label, self.create, self.target, self.stop = server, label, create, target, stop
        self.exported = []        # (membrane id, capability token, membrane export token), 201
        self.revoked = set()      # membrane ids whose revoke answered 202
        self.revoke_unknown = set()  # membrane ids whose revoke got no 202: either way may hold
        self.statuses = collections.Counter()
        self.errors = []

    def call(self, conn, token, method, body=None):
        try:
            status, answer, _ = self.server.call(token, method, body=body, conn=conn)
        except (OSError, http.client.HTTPException) as e:
            self.errors.append(repr(e))
            conn.close()
            return None, None
        self.statuses[status] += 1
        if status == 503:
            if answer != UNAVAILABLE:
                self.errors.append("503 body %r" % (answer,))
            time.sleep(0.05)
        return status, answer

    def run(self):
        conn = self.server.connection(timeout=60)
        i = 0
        while not self.stop.is_set():
            i += 1
            membrane_id = "%s-%d" % (self.label, i)
            status, body = self.call(conn, self.create, "POST", {"id": membrane_id})
            if status != 201:
                continue
            export, revoke = (token_of(body["capabilities"][k]) for k in ("export", "revoke"))
            status, body = self.call(conn, export, "POST", {"uri": self.target})
            if status == 201:
                self.exported.append((membrane_id, token_of(body["capability"]), export))
            if i % 2 == 0:
                status, _ = self.call(conn, revoke, "GET")
                (self.revoked if status == 202 else self.revoke_unknown).add(membrane_id)
        conn.close()


class PostgresOutageTest(Instances):
    """PostgreSQL stopped mid-load, on a cluster of this test's own (halted and resumed)."""

    def setUp(self):
        self.pg = PgCluster.private()
        self.addCleanup(self.pg.stop)  # runs even when the test fails
        self.upstream = Upstream()
        self.addCleanup(self.upstream.close)
        args = ["--db-connect-timeout-ms", "2000", "--db-statement-timeout-ms", "3000"]
        self.servers = start_instances(self.pg.create_database(), new_master_key(), count=2, args=args)
        self.addCleanup(stop_instances, self.servers)

    def test_stopped_postgresql_is_503_then_recovered_with_nothing_acknowledged_lost(self):
        a, b = self.servers
        create = token_of(first_tenant_of(self.servers)["capabilities"]["create"])
        steady = []
        for exporter in (a, b):
            export, _ = self.create_membrane(exporter, create)
            steady.append(token_of(self.export(exporter, export, {"uri": self.upstream.url("/echo/steady")})))
        stop = threading.Event()
        hammers = [Hammer(s, NAMES[i], steady, stop, pause_on=(503,), pause=0.01) for i, s in enumerate(self.servers)]
        writers = [Writer(s, "w%s" % NAMES[i], create, self.upstream.url("/echo/written"), stop)
                   for i, s in enumerate(self.servers)]
        for t in hammers + writers:
            t.start()
        try:
            wait_for(lambda: all(len(w.exported) >= 6 and len(w.revoked) >= 3 for w in writers),
                     "writes before the outage")
            self.pg.halt()  # pg_ctl stop -m fast: returns once the server is down
            down = time.monotonic()
            wait_for(lambda: all(len(h.started_after(down)) >= 10 for h in hammers), "requests during the outage")
            # While it is down: 503 with the body of contract §3 for every operation, /healthz
            # 503, and every instance still running.
            for server in self.servers:
                status, body, _ = server.call(steady[0], "POST", body=b"{}")
                self.assertEqual((status, body), (503, UNAVAILABLE))
                status, body, _ = server.call(create, "POST", body={"id": "during-outage"})
                self.assertEqual((status, body), (503, UNAVAILABLE))
                status, body, _ = server.call(writers[0].exported[0][2], "POST", body={"uri": self.upstream.url()})
                self.assertEqual((status, body), (503, UNAVAILABLE))
                status, _, _ = server.call(None, "GET", "/healthz")
                self.assertEqual(status, 503)
                self.assertTrue(server.alive())
            resuming = time.monotonic()
            self.pg.resume()
            # Recovery by itself: nothing is restarted or told.
            for server in self.servers:
                wait_for(lambda: server.call(None, "GET", "/healthz")[0] == 200, "/healthz after the outage")
            wait_for(lambda: all(any(r[2] == 200 for r in h.started_after(resuming)) for h in hammers),
                     "invocations after the outage")
            recovered = time.monotonic()
            wait_for(lambda: all(len(h.started_after(recovered)) >= 5 for h in hammers), "invocations after recovery")
            written = sum(w.statuses[201] for w in writers)
            wait_for(lambda: sum(w.statuses[201] for w in writers) > written + 4, "writes after recovery")
        finally:
            stop.set()
            for t in hammers + writers:
                t.join(60)

        self.assertEqual([h.errors for h in hammers] + [w.errors for w in writers], [[]] * 4)
        # Live capabilities only ever answered 200 or 503; 503 exactly while the database was down.
        statuses = collections.Counter(r[2] for h in hammers for r in h.records)
        outage = [r for h in hammers for r in h.records if r[0] > down and r[1] < resuming]
        self.assertLessEqual(set(statuses), {200, 503})
        self.assertEqual({r[2] for r in outage}, {503})
        writes = sum((w.statuses for w in writers), collections.Counter())
        self.assertLessEqual(set(writes), {201, 202, 503})
        for server in self.servers:
            self.assertTrue(server.alive())

        # Nothing acknowledged was lost: every export answered 201 still invokes, on both
        # instances, unless its membrane was revoked; every membrane whose revoke answered 202
        # stays revoked (its capabilities and its export capability are 401).
        kept = revoked = 0
        for w in writers:
            for membrane_id, cap, export in w.exported:
                if membrane_id in w.revoke_unknown:
                    continue
                expected = 401 if membrane_id in w.revoked else 200
                for server in self.servers:
                    self.assertEqual(self.invoke(server, cap), expected, membrane_id)
                if expected == 401:
                    revoked += 1
                    self.assertEqual(b.call(export, "POST", body={"uri": self.upstream.url()})[0], 401)
                else:
                    kept += 1
        log("outage: invocations %s (%d during the outage), writes %s; after recovery %d acknowledged exports "
            "still invoke and %d acknowledged revocations hold" % (dict(statuses), len(outage), dict(writes),
                                                                    kept, revoked))
        self.assertGreater(kept, 0)
        self.assertGreater(revoked, 0)
        self.assertEqual(stop_instances(self.servers), [0, 0])


class KilledInstanceTest(Instances):
    def setUp(self):
        self.upstream = Upstream()
        self.addCleanup(self.upstream.close)
        self.url, self.key = PgCluster.shared().create_database(), new_master_key()
        self.servers = start_instances(self.url, self.key)
        self.addCleanup(stop_instances, self.servers)

    def test_kill_9_of_one_instance_leaves_the_others_serving(self):
        a, b, c = self.servers
        create = token_of(first_tenant_of(self.servers)["capabilities"]["create"])
        export, revoke = self.create_membrane(a, create)
        cap = token_of(self.export(b, export, {"uri": self.upstream.url("/echo/kill")}))
        self.assertEqual([self.invoke(s, cap) for s in self.servers], [200, 200, 200])

        stop = threading.Event()
        hammers = [Hammer(s, n, [cap], stop) for s, n in ((a, "A"), (c, "C"))]
        victim = Hammer(b, "B", [cap], stop, pause_on=(None,), pause=0.05)
        for h in hammers + [victim]:
            h.start()
        try:
            wait_for(lambda: all(len(h.records) >= 10 for h in hammers + [victim]), "requests before the kill")
            b.proc.send_signal(signal.SIGKILL)
            self.assertEqual(b.proc.wait(30), -signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: all(len(h.started_after(killed)) >= 20 for h in hammers), "requests after the kill")
        finally:
            stop.set()
            for h in hammers + [victim]:
                h.join(60)
        self.assertEqual([h.errors for h in hammers], [[], []])
        self.assertEqual({r[2] for h in hammers for r in h.records}, {200})
        self.assertTrue(victim.errors)  # B's client saw its connection die

        # A and C go on: create on C, export on A, invoke on C; revoke on C, 401 on A.
        export2, revoke2 = self.create_membrane(c, create)
        cap2 = token_of(self.export(a, export2, {"uri": self.upstream.url("/echo/after-kill")}))
        self.assertEqual([self.invoke(s, cap2) for s in (a, c)], [200, 200])
        self.revoke(c, revoke2)
        self.assertEqual([self.invoke(s, cap2) for s in (a, c)], [401, 401])
        # B started again on the same database knows all of it.
        b2 = Server(store=self.url, master_key=self.key).start()
        self.servers.append(b2)
        self.assertEqual([self.invoke(b2, cap), self.invoke(b2, cap2)], [200, 401])
        self.revoke(b2, revoke)
        self.assertEqual([self.invoke(s, cap) for s in (a, c, b2)], [401, 401, 401])


class MigrationRaceTest(Instances):
    ROUNDS = 3

    def test_instances_starting_at_once_on_an_empty_database_all_serve(self):
        pg = PgCluster.shared()
        for round_ in range(self.ROUNDS):
            url, key = pg.create_database(), new_master_key()
            servers = [Server(store=url, master_key=key) for _ in range(3)]
            try:
                for s in servers:  # all three at once: migrations, key check and first tenant race
                    s.spawn()
                for s in servers:
                    s.wait_started(60)
                self.assertEqual(pg.psql(url, "SELECT version FROM schema_version"), "3")  # migrations this build knows
                self.assertEqual(pg.psql(url, "SELECT count(*) FROM meta WHERE key = 'key_check'"), "1")
                # Exactly one first tenant, written by exactly one instance.
                self.assertEqual(pg.psql(url, "SELECT count(*) FROM tenants"), "1")
                create = token_of(first_tenant_of(servers)["capabilities"]["create"])
                for server in servers:
                    self.assertEqual(server.call(None, "GET", "/healthz")[0], 200)
                    self.create_membrane(server, create)
            finally:
                codes = stop_instances(servers)
            self.assertEqual(codes, [0, 0, 0])


class BalancerTest(Instances):
    """deploy/compose-ha.yml with real processes: three instances on one database behind HAProxy
    running deploy/haproxy/haproxy.cfg unchanged (its addresses come from the environment), with
    health checks on /healthz, and the instances trusting HAProxy's X-Forwarded-For as the compose
    file has them do (MEMBRANED_TRUSTED_PROXIES).

    HAProxy reaches the instances from 127.0.0.1; the test's client connects to it from another
    loopback address, CLIENT_ADDRESS, so that an instance judging the peer instead of the
    forwarded address would be caught. The test methods run in name order and the last one stops
    the instances."""

    CLIENT_ADDRESS = "127.0.0.2"

    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream()
        cls.port = free_port()
        authority = "127.0.0.1:%d" % cls.port  # every instance writes the balancer's address into URIs
        try:
            cls.servers = start_instances(PgCluster.shared().create_database(), new_master_key(),
                                          args=["--authority", authority, "--metrics",
                                                "--trusted-proxies", "127.0.0.1/32"])
        except Exception:
            cls.upstream.close()
            raise
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-haproxy-")
        env = dict(os.environ, MEMBRANED_BALANCER_LISTEN=authority,
                   **{"MEMBRANED_%d" % (i + 1): "127.0.0.1:%d" % s.port for i, s in enumerate(cls.servers)})
        cls.haproxy_log_path = os.path.join(cls.tmp.name, "haproxy.log")
        cls.haproxy_log = open(cls.haproxy_log_path, "wb")
        cls.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", BALANCER_CONFIG], env=env, cwd=cls.tmp.name,
                                       stdout=cls.haproxy_log, stderr=subprocess.STDOUT)

    @classmethod
    def tearDownClass(cls):
        cls.haproxy.terminate()
        cls.haproxy.wait(30)
        cls.haproxy_log.close()
        stop_instances(cls.servers)
        cls.upstream.close()
        cls.tmp.cleanup()

    def balancer_call(self, token, method="POST", path="/", body=None, headers=None):
        """One request through the balancer on a new connection (so each is balanced anew), from
        CLIENT_ADDRESS."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60,
                                          source_address=(self.CLIENT_ADDRESS, 0))
        try:
            hdrs = {"Authorization": "Bearer " + token} if token else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw

    def balancer_up(self):
        try:
            return self.balancer_call(None, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    def haproxy_says(self, text):
        with open(self.haproxy_log_path, "rb") as f:
            return text in f.read().decode("utf-8", "replace")

    @staticmethod
    def counter(server, operation, code):
        """membraned_requests_total{operation, code} of one instance, from its /metrics."""
        status, text, _ = server.call(None, "GET", "/metrics")
        assert status == 200, status
        m = re.search(r'^membraned_requests_total\{(?=[^}]*code="%s")(?=[^}]*operation="%s")[^}]*\} (\S+)$'
                      % (code, operation), text, re.M)
        return float(m.group(1)) if m else 0.0

    def test_allow_from_sees_the_client_address_across_the_balancer(self):
        """contract §11: behind HAProxy, a grant's allowFrom judges the client's address, which
        crosses HAProxy in X-Forwarded-For (option forwardfor), not HAProxy's own."""
        self.assertIsNone(self.haproxy.poll(), "haproxy exited")
        wait_for(self.balancer_up, "the balancer to answer /healthz", timeout=60)
        wait_for(lambda: all(self.counter(s, "healthz", 200) > 0 for s in self.servers), "health checks")
        create = token_of(first_tenant_of(self.servers)["capabilities"]["create"])
        export, _ = self.create_membrane_through_balancer(create)

        def grant(allow_from):
            status, body = self.balancer_call(export, body={"uri": self.upstream.url("/echo/allow-from"),
                                                            "allowFrom": allow_from})
            self.assertEqual(status, 201, body)
            self.assertEqual(body["allowFrom"], allow_from)
            return token_of(body["capability"])

        forbidden = {"statusCode": 403, "error": "Forbidden",
                     "message": "this capability may not be used from this address"}
        # The client's own address: served, by every instance in turn.
        client = grant([self.CLIENT_ADDRESS + "/32"])
        before = [self.counter(s, "invoke", 200) for s in self.servers]
        self.assertEqual([self.balancer_call(client, body=b"{}")[0] for _ in range(6)], [200] * 6)
        after = [self.counter(s, "invoke", 200) for s in self.servers]
        self.assertTrue(all(x > y for x, y in zip(after, before)), (before, after))
        # HAProxy's address, the peer every instance sees: refused, so the peer was not what counted.
        balancer = grant(["127.0.0.1/32"])
        self.assertEqual([self.balancer_call(balancer, body=b"{}") for _ in range(6)], [(403, forbidden)] * 6)
        # Another range: refused, even when the client writes an address of that range into
        # X-Forwarded-For itself (HAProxy appends the real one, the right-most entry, after it).
        other = grant(["10.0.0.0/8", "2001:db8::/32"])
        self.assertEqual(self.balancer_call(other, body=b"{}"), (403, forbidden))
        self.assertEqual(self.balancer_call(other, body=b"{}", headers={"X-Forwarded-For": "10.1.2.3"}),
                         (403, forbidden))
        # And that spoofed entry gives the client's own grant nothing to trip on either.
        self.assertEqual(self.balancer_call(client, body=b"{}", headers={"X-Forwarded-For": "10.1.2.3"})[0], 200)

    def test_create_export_invoke_revoke_through_the_balancer_and_an_instance_killed(self):
        self.assertIsNone(self.haproxy.poll(), "haproxy exited")
        wait_for(self.balancer_up, "the balancer to answer /healthz", timeout=60)
        # HAProxy checks every instance on /healthz.
        wait_for(lambda: all(self.counter(s, "healthz", 200) > 0 for s in self.servers), "health checks")

        tenant = first_tenant_of(self.servers)
        create = token_of(tenant["capabilities"]["create"])
        status, membrane = self.balancer_call(create, body={"id": "behind-the-balancer"})
        self.assertEqual(status, 201, membrane)
        self.assertTrue(membrane["capabilities"]["export"].startswith("cpblty://127.0.0.1:%d/#" % self.port))
        export, revoke = (token_of(membrane["capabilities"][k]) for k in ("export", "revoke"))
        status, exported = self.balancer_call(export, body={"uri": self.upstream.url("/echo/balanced")})
        self.assertEqual(status, 201, exported)
        cap = token_of(exported["capability"])
        before = [self.counter(s, "invoke", 200) for s in self.servers]
        self.assertEqual([self.balancer_call(cap, body=b"{}")[0] for _ in range(9)], [200] * 9)
        # Round robin: every instance served some of them.
        after = [self.counter(s, "invoke", 200) for s in self.servers]
        self.assertTrue(all(x > y for x, y in zip(after, before)), (before, after))
        self.assertEqual(self.balancer_call(revoke, "GET"), (202, {"statusCode": 202, "message": "Accepted"}))
        self.assertEqual([self.balancer_call(cap, body=b"{}")[0] for _ in range(6)], [401] * 6)

        # kill -9 of one instance: every request is still served (a refused connection is retried
        # on another instance at once), and the health check takes it out.
        export2, revoke2 = self.create_membrane_through_balancer(create)
        status, exported = self.balancer_call(export2, body={"uri": self.upstream.url("/echo/after-kill")})
        self.assertEqual(status, 201, exported)
        cap2 = token_of(exported["capability"])
        victim = self.servers[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(30)
        self.assertEqual([self.balancer_call(cap2, body=b"{}")[0] for _ in range(12)], [200] * 12)
        wait_for(lambda: self.haproxy_says("Server membraned/membraned-2 is DOWN"), "the health check to see it")
        self.assertEqual([self.balancer_call(cap2, body=b"{}")[0] for _ in range(6)], [200] * 6)
        self.assertEqual(self.balancer_call(revoke2, "GET")[0], 202)
        self.assertEqual([self.balancer_call(cap2, body=b"{}")[0] for _ in range(6)], [401] * 6)

        # No instance left: the balancer's own 503 keeps the JSON shape of contract §3.
        self.assertEqual(stop_instances([self.servers[0], self.servers[2]]), [0, 0])
        self.assertEqual(self.balancer_call(cap2, body=b"{}"), (503, UNAVAILABLE))
        self.assertIsNone(self.haproxy.poll(), "haproxy exited")

    def create_membrane_through_balancer(self, create):
        status, membrane = self.balancer_call(create, body={"id": "m-" + uuid.uuid4().hex})
        self.assertEqual(status, 201, membrane)
        return token_of(membrane["capabilities"]["export"]), token_of(membrane["capabilities"]["revoke"])


if __name__ == "__main__":
    unittest.main()
