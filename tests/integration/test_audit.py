"""The audit log (contract §12) against the real binary: one record per request, refused ones
included, carrying the id its answer's X-Request-Id gave; no token, secret, body, query string or
header value in it, in the service's log or in its metrics; a rename and SIGUSR1 lose no record;
`--audit-log -` writes to standard output."""
import http.client
import datetime
import hashlib
import json
import os
import re
import signal
import threading
import time
import unittest
import uuid

from harness import Server, Upstream, header_values, metric_value, token_of

REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")


def header(headers, name):
    values = header_values(headers, name)
    assert len(values) == 1, (name, headers)
    return values[0]


def records_in(*paths):
    found = []
    for path in paths:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                found += [json.loads(line) for line in f if line.strip()]
    return found


def wait_for_records(count, *paths, timeout=15):
    """The records of `paths` once there are `count` of them (the writer is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        found = records_in(*paths)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def audited_server(args=()):
    """A started server writing its audit log to a file beside its data directory, and that path."""
    server = Server(args=list(args))
    audit = os.path.join(os.path.dirname(server.data_dir), "audit.log")
    server.args += ["--audit-log", audit]
    return server.start(), audit


def log_id(token):
    """What the audit log and the access log show of a token: 12 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class AuditScriptTest(unittest.TestCase):
    """Every kind of request once, as a holder, a partner and a stranger would send them."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream()
        cls.server, cls.audit = audited_server(["--metrics", "--trusted-proxies", "127.0.0.1/32"])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        assert code == 0, code

    def setUp(self):
        self.sent = []  # (what the record must say, the answer's headers)

    def call(self, expect_status, expected, token, method="POST", path="/", body=None, headers=None):
        status, answer, answer_headers = self.server.call(token, method, path, body, headers)
        self.assertEqual(status, expect_status, answer)
        self.sent.append((dict(expected, status=status), answer_headers))
        return answer

    def oversized_header(self):
        conn = self.server.connection()
        conn.request("GET", "/", headers={"X-Filler": "f" * 20000})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        self.assertEqual(resp.status, 431)
        self.sent.append(({"status": 431, "operation": "none", "method": None}, resp.getheaders()))

    def test_a_scripted_run_has_one_record_per_request_and_nothing_secret(self):
        tenant = self.server.first_tenant()
        tenant_id = tenant["id"]
        create = token_of(tenant["capabilities"]["create"])
        query = token_of(tenant["capabilities"]["query"])
        secret_key = "audit-secret-" + uuid.uuid4().hex
        membrane_id = "m-" + uuid.uuid4().hex
        body_marker = "body-marker-" + uuid.uuid4().hex
        header_marker = "header-marker-" + uuid.uuid4().hex
        query_marker = "qs-marker-" + uuid.uuid4().hex
        unknown = "CPBLTY1-" + "A" * 85 + "w"
        local = "127.0.0.1"
        own = {"tenant": tenant_id, "client": local, "method": "POST"}
        # A well-formed token that names nothing.
        # A well-formed token that names nothing: its log id is recorded, never the token.
        self.call(401, {"operation": "none", "reason": "unknown", "tenant": None, "token": log_id(unknown),
                        "client": local}, unknown)

        m = self.call(201, dict(own, operation="create", membrane=None), create, body={"id": membrane_id})
        through_m = dict(own, membrane=membrane_id)
        export, revoke = token_of(m["capabilities"]["export"]), token_of(m["capabilities"]["revoke"])
        self.call(200, dict(own, operation="query", method="GET", membrane=None), query, "GET", "/?id=" + membrane_id)
        aws4 = {"aws4-hmac-sha256": {"awsAccessKeyId": "AKIDAUDIT", "secretAccessKey": secret_key,
                                     "region": "us-east-1", "service": "lambda"}}
        a = self.call(201, dict(through_m, operation="export"), export,
                      body={"uri": self.upstream.url("/echo/a"), "maxUses": 1, "hmac": aws4,
                            "rateLimit": {"requests": 2, "perSeconds": 60}})
        invoke = dict(through_m, operation="invoke", grant=a["id"], chain=[a["id"]])
        payload = json.dumps({"x": body_marker})
        answer = self.call(200, dict(invoke, upstreamStatus=200, upstreamHost="127.0.0.1", bytesIn=len(payload),
                                     clientRequestId="client-trace-1"),
                           token_of(a["capability"]), path="/ignored?q=" + query_marker, body=payload,
                           headers={"X-Custom": header_marker, "X-Request-Id": "client-trace-1"})
        self.assertEqual(answer["method"], "POST")
        self.sent[-1][0]["bytesOut"] = int(header(self.sent[-1][1], "Content-Length"))
        self.call(401, dict(invoke, reason="used-up"), token_of(a["capability"]), body=payload)
        self.call(429, dict(invoke, reason="rate"), token_of(a["capability"]), body=payload)
        self.call(401, {"operation": "none", "reason": "unknown", "client": local, "bytesIn": 0}, None)

        b = self.call(201, dict(through_m, operation="export"), export,
                      body={"uri": self.upstream.url("/echo/b"), "allowFrom": ["10.0.0.0/8"], "allowQuery": True})
        invoke_b = dict(through_m, operation="invoke", grant=b["id"], chain=[b["id"]])
        self.call(403, dict(invoke_b, reason="address"), token_of(b["capability"]), body=payload)
        self.call(200, dict(invoke_b, client="10.1.2.3", upstreamStatus=200), token_of(b["capability"]),
                  path="/?token=" + query_marker, headers={"X-Forwarded-For": "10.1.2.3"})
        c = self.call(201, dict(through_m, operation="export"), export,
                      body={"capability": b["capability"], "label": "c"})
        self.call(200, dict(through_m, operation="invoke", grant=c["id"], chain=[b["id"], c["id"]], client="10.9.9.9",
                            upstreamStatus=200),
                  token_of(c["capability"]), headers={"X-Forwarded-For": "10.9.9.9"})
        # A revoke records how many grants it cut: c has nothing below it.
        # Its record names the grant it revoked.
        self.call(202, dict(own, operation="revokeGrant", method="DELETE", membrane=None, cut=1, grant=c["id"]),
                  token_of(c["revoke"]), "DELETE")
        # The store tells why a token no longer resolves: revoked, or expired.
        # Attempts after the revoke carry the same token log id as the grant's earlier records.
        self.call(401, {"operation": "none", "reason": "revoked", "client": local,
                        "token": log_id(token_of(c["capability"]))}, token_of(c["capability"]))
        soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        d = self.call(201, dict(through_m, operation="export"), export, body={"uri": self.upstream.url("/echo/d"),
                                                                         "expiresAt": soon})
        time.sleep(1.5)
        self.call(401, {"operation": "none", "reason": "expired", "client": local}, token_of(d["capability"]))
        self.oversized_header()
        for path in ("/healthz", "/metrics"):
            status, _, headers = self.server.call(None, "GET", path)
            self.assertEqual(status, 200)
            self.assertRegex(header(headers, "X-Request-Id"), REQUEST_ID, "every answer has an id, " + path)
        # a, b and d (expired, not revoked); c was revoked on its own before.
        self.call(202, dict(through_m, operation="revoke", cut=3), revoke)

        records = wait_for_records(len(self.sent), self.audit)
        self.assertEqual(len(records), len(self.sent), "exactly one record per request, none for /healthz or /metrics")
        by_id = {r["requestId"]: r for r in records}
        self.assertEqual(len(by_id), len(records), "request ids are unique")
        for expected, headers in self.sent:
            request_id = header(headers, "X-Request-Id")
            self.assertRegex(request_id, REQUEST_ID)
            record = by_id[request_id]
            with self.subTest(expected=expected, record=record):
                self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
                self.assertIsInstance(record["durationMs"], (int, float))
                for field, value in expected.items():
                    if value is None:
                        self.assertNotIn(field, record)
                    else:
                        self.assertEqual(record.get(field), value, field)
                if "reason" not in expected:
                    self.assertNotIn("reason", record)
                if "grant" not in expected:
                    self.assertNotIn("grant", record)
                    self.assertNotIn("chain", record)
                if "upstreamStatus" not in expected:
                    self.assertNotIn("upstreamStatus", record)
                for optional in ("membrane", "cut"):
                    if optional not in expected:
                        self.assertNotIn(optional, record)
                self.assertEqual(set(record) - {"time", "requestId", "clientRequestId", "operation", "tenant",
                                                "membrane", "grant", "chain", "token", "client", "method", "status",
                                                "reason", "upstreamStatus", "upstreamHost", "durationMs", "bytesIn",
                                                "bytesOut", "cut"},
                                 set())
        traced = [headers for expected, headers in self.sent if expected.get("clientRequestId")]
        self.assertNotEqual(header(traced[0], "X-Request-Id"), "client-trace-1", "the requester's id is not ours")

        _, metrics_text, _ = self.server.call(None, "GET", "/metrics")
        for reason, count in (("unknown", 2), ("used-up", 1), ("rate", 1), ("address", 1), ("revoked", 1),
                              ("expired", 1)):
            self.assertEqual(metric_value(metrics_text, "membraned_refusals_total", 'reason="%s"' % reason), count, reason)
        self.assertEqual(metric_value(metrics_text, "membraned_audit_records_total", 'result="written"'), len(records))
        self.assertEqual(metric_value(metrics_text, "membraned_audit_records_total", 'result="dropped"'), 0)

        secrets = [secret_key, body_marker, header_marker, query_marker, unknown, create, query,
                   token_of(tenant["capabilities"]["deleteSelf"]), export, revoke]
        for grant in (a, b, c):
            secrets += [token_of(grant["capability"]), token_of(grant["revoke"])]
        secrets += [s.split("-", 1)[1] for s in list(secrets) if s.startswith("CPBLTY1-")]
        with open(self.audit, encoding="utf-8") as f:
            audit_text = f.read()
        for name, text in (("audit log", audit_text), ("service log", self.server.stderr()), ("metrics", metrics_text)):
            for secret in secrets:
                self.assertNotIn(secret, text, "%s holds %s..." % (name, secret[:12]))


class RevokeCountTest(unittest.TestCase):
    def test_a_revoke_record_counts_what_it_cut_even_when_the_service_stops_right_after_the_202(self):
        """The count of a revoke's record is made after its 202 (the revoke never waits for it);
        a stop right after the 202 still writes that record, count included."""
        server, audit = audited_server()
        try:
            create = token_of(server.first_tenant()["capabilities"]["create"])
            status, made, _ = server.call(create, body={"id": "counted"})
            self.assertEqual(status, 201, made)
            export = token_of(made["capabilities"]["export"])
            grants = []
            for i in range(20):
                status, grant, _ = server.call(export, body={"uri": "http://127.0.0.1:9/f%d" % i})
                self.assertEqual(status, 201, grant)
                grants.append(grant)
            status, again, _ = server.call(export, body={"capability": grants[0]["capability"]})  # a re-export
            self.assertEqual(status, 201, again)
            status, _, headers = server.call(token_of(made["capabilities"]["revoke"]))
            self.assertEqual(status, 202)
            revoke_id = header(headers, "X-Request-Id")
            self.assertEqual(server.stop(), 0)
            revoke = [r for r in records_in(audit) if r["requestId"] == revoke_id]
            self.assertEqual(len(revoke), 1, "the revoke's record was written before the service stopped")
            self.assertEqual(revoke[0]["operation"], "revoke")
            self.assertEqual(revoke[0]["cut"], 21)
        finally:
            server.cleanup()


class AuditRotationTest(unittest.TestCase):
    def test_a_rename_and_sigusr1_move_the_log_to_a_new_file_losing_nothing(self):
        server, audit = audited_server()
        try:
            query = token_of(server.first_tenant()["capabilities"]["query"])
            answered, stop = [], threading.Event()

            def keep_asking():
                conn = server.connection()
                while not stop.is_set():
                    status, _, headers = server.call(query, "GET", conn=conn)
                    answered.append(header(headers, "X-Request-Id"))

            asking = [threading.Thread(target=keep_asking) for _ in range(2)]
            for t in asking:
                t.start()
            time.sleep(0.3)
            os.rename(audit, audit + ".1")
            time.sleep(0.2)
            server.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not os.path.exists(audit) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(os.path.exists(audit), "SIGUSR1 opened a new file at the original path")
            time.sleep(0.3)
            stop.set()
            for t in asking:
                t.join()
            after = [header(server.call(query, "GET")[2], "X-Request-Id") for _ in range(5)]

            records = wait_for_records(len(answered) + 5, audit + ".1", audit)
            self.assertEqual(sorted(r["requestId"] for r in records), sorted(answered + after), "none lost, none twice")
            self.assertGreater(len(records_in(audit + ".1")), 0)
            in_new_file = {r["requestId"] for r in records_in(audit)}
            self.assertTrue(set(after) <= in_new_file, "requests after the reopen are recorded in the new file")
            self.assertTrue(server.alive())
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()

    def test_sigusr1_without_an_audit_log_changes_nothing(self):
        server = Server().start()
        try:
            server.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
            self.assertTrue(server.alive())
            self.assertEqual(server.call(None, "GET", "/healthz")[0], 200)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()


class AuditToStandardOutputTest(unittest.TestCase):
    def test_dash_writes_the_records_to_standard_output(self):
        server = Server(args=["--audit-log", "-"]).start()
        try:
            create = token_of(server.first_tenant()["capabilities"]["create"])
            server.proc.send_signal(signal.SIGUSR1)  # nothing to reopen: no effect
            ids = [header(server.call(create, body={"id": "m"})[2], "X-Request-Id"),
                   header(server.call(None)[2], "X-Request-Id")]
            self.assertEqual(server.call(None, "GET", "/healthz")[0], 200)
            server.proc.send_signal(signal.SIGTERM)
            rest = server.proc.stdout.read().splitlines()
            self.assertEqual(server.proc.wait(timeout=30), 0)
        finally:
            server.stop()
            server.cleanup()
        self.assertEqual(rest[-1], "membraned: stopped", "every record is out before the process says it stopped")
        records = [json.loads(line) for line in rest if line.startswith("{")]
        self.assertEqual([r["requestId"] for r in records], ids)
        self.assertEqual([(r["operation"], r["status"]) for r in records], [("create", 201), ("none", 401)])


if __name__ == "__main__":
    unittest.main()
