"""X-Capability-Operation (contract §2) against the real binary: a request that states an
operation its capability does not perform is refused with 409 naming both, and nothing at all is
done (no revoke, no deletion, no export, no use counted, nothing sent upstream); an unknown or
repeated name is 400; the header never reaches the upstream, and an upstream cannot fake the
service's refusal with it. The audit log records such a request with reason `operation`, and
membraned_refusals_total counts it. Every error answer of the service's own carries
X-Membraned-Error, which an upstream's relayed answer never does, and a 401 names the Bearer
scheme (WWW-Authenticate)."""
import http.client
import http.server
import json
import os
import threading
import time
import unittest

from harness import Server, Upstream, header_values as header, metric_value, token_of

OPERATION = "X-Capability-Operation"
OWN_ERROR = "X-Membraned-Error"


class StatedOperationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream()
        cls.server = Server(args=["--metrics"])
        cls.audit = os.path.join(os.path.dirname(cls.server.data_dir), "audit.log")
        cls.server.args += ["--audit-log", cls.audit]
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        assert code == 0, code

    def call(self, token, operation=None, method="POST", body=None, conn=None, path="/"):
        return self.server.call(token, method, path, body, {OPERATION: operation} if operation else None, conn=conn)

    def tenant(self):
        caps = self.server.tenant_create()["capabilities"]
        return {name: token_of(uri) for name, uri in caps.items()}

    def membrane(self, tenant, membrane_id):
        status, answer, _ = self.call(tenant["create"], "create", body={"id": membrane_id})
        self.assertEqual(status, 201, answer)
        return {name: token_of(uri) for name, uri in answer["capabilities"].items()}

    def assert_refused(self, token, stated, performs, body=None, method="POST"):
        status, answer, headers = self.call(token, stated, method=method, body=body)
        self.assertEqual(status, 409, answer)
        self.assertEqual(answer, {"statusCode": 409, "error": "Conflict",
                                  "message": "this capability performs %s, not %s; nothing was done" % (performs, stated)})
        self.assertEqual(header(headers, OPERATION), [performs])

    def test_a_stated_operation_the_capability_does_not_perform_does_nothing(self):
        tenant = self.tenant()
        m = self.membrane(tenant, "kept")
        status, grant, _ = self.call(m["export"], "export", body={"uri": self.upstream.url("/echo"), "maxUses": 1})
        self.assertEqual(status, 201, grant)
        invoke, grant_revoke = token_of(grant["capability"]), token_of(grant["revoke"])
        upstream_before = len(self.upstream.requests)

        export_body = {"uri": self.upstream.url("/echo")}
        self.assert_refused(m["revoke"], "export", "revoke", body=export_body)           # would revoke
        self.assert_refused(tenant["deleteSelf"], "create", "deleteSelf", body={"id": "b2"})  # would delete
        self.assert_refused(m["export"], "create", "export", body={"id": "b3"})
        self.assert_refused(m["export"], "revoke", "export", method="GET")
        self.assert_refused(tenant["create"], "query", "create", method="GET")
        self.assert_refused(tenant["query"], "deleteSelf", "query", method="GET")
        self.assert_refused(invoke, "revoke", "invoke", body="{}")                          # would be a use
        self.assert_refused(grant_revoke, "revoke", "revokeGrant", method="GET")           # would revoke the grant
        self.assert_refused(m["revoke"], "invoke", "revoke", body="{}")

        # Nothing was done: nothing went upstream, the tenant, the membrane and the grant all live,
        # the grant's one use is still there, and no membrane was made.
        self.assertEqual(len(self.upstream.requests), upstream_before)
        status, listed, _ = self.call(tenant["query"], "query", method="GET", path="/?limit=10")
        self.assertEqual(status, 200, listed)
        self.assertEqual([x["id"] for x in listed["membranes"]], ["kept"])
        status, answer, _ = self.call(m["export"], "export", body=export_body)
        self.assertEqual(status, 201, answer)
        status, echo, _ = self.call(invoke, "invoke", body="{}")
        self.assertEqual(status, 200, echo)
        self.assertEqual(header(self.upstream.requests[-1]["headers"], OPERATION), [])  # never forwarded
        status, _, _ = self.call(invoke, "invoke", body="{}")
        self.assertEqual(status, 401)  # maxUses 1: the use above was the first and only one

        # The stated operation matching: done, as without the header.
        self.assertEqual(self.call(m["revoke"], "revoke", method="GET")[0], 202)
        self.assertEqual(self.call(tenant["deleteSelf"], "deleteSelf", method="GET")[0], 202)
        self.assertEqual(self.call(tenant["create"], "create", body={"id": "late"})[0], 401)

    def test_without_the_header_the_token_alone_decides(self):
        tenant = self.tenant()
        m = self.membrane(tenant, "old-way")
        status, answer, headers = self.server.call(m["revoke"], "POST", "/", json.dumps({"uri": "http://x"}))
        self.assertEqual((status, answer), (202, {"statusCode": 202, "message": "Accepted"}))
        self.assertEqual(header(headers, OPERATION), [])

    def test_an_unknown_or_repeated_operation_is_400_and_does_nothing(self):
        tenant = self.tenant()
        m = self.membrane(tenant, "named")
        for stated in ("Revoke", "reexport", "delete", "revoke, export", " "):
            with self.subTest(stated=stated):
                status, answer, _ = self.call(m["revoke"], stated, method="GET")
                self.assertEqual(status, 400, answer)
                self.assertEqual(answer["error"], "Bad Request")
                self.assertIn(OPERATION + " must be one of create, query, export, revoke, deleteSelf, invoke, "
                              "revokeGrant", answer["message"])
        conn = self.server.connection()
        conn.putrequest("GET", "/")
        conn.putheader("Authorization", "Bearer " + m["revoke"])
        conn.putheader(OPERATION, "revoke")
        conn.putheader(OPERATION, "revoke")
        conn.endheaders()
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        self.assertEqual((resp.status, answer["message"]), (400, OPERATION + " is given more than once"))
        status, listed, _ = self.call(tenant["query"], "query", method="GET", path="/?id=named")
        self.assertEqual(len(listed["membranes"]), 1)  # not revoked

    def test_the_connection_stays_usable_after_a_refusal(self):
        tenant = self.tenant()
        m = self.membrane(tenant, "keepalive")
        conn = self.server.connection()
        big = {"uri": self.upstream.url("/echo"), "headers": {"X-Pad": "p" * 8000}}
        for _ in range(3):
            status, answer, _ = self.call(m["revoke"], "export", body=big, conn=conn)
            self.assertEqual(status, 409, answer)
        status, answer, _ = self.call(m["export"], "export", body=big, conn=conn)
        self.assertEqual(status, 201, answer)
        conn.close()

    def test_an_upstream_cannot_fake_the_refusal(self):
        class Faker(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = b'{"upstream": "conflict"}'
                self.send_response(409)
                self.send_header(OPERATION, "revoke")
                self.send_header(OWN_ERROR, "true")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        faker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Faker)
        threading.Thread(target=faker.serve_forever, daemon=True).start()
        try:
            tenant = self.tenant()
            m = self.membrane(tenant, "faked")
            status, grant, _ = self.call(m["export"], "export",
                                         body={"uri": "http://127.0.0.1:%d/x" % faker.server_address[1]})
            self.assertEqual(status, 201, grant)
            status, answer, headers = self.call(token_of(grant["capability"]), "invoke", body="{}")
            self.assertEqual((status, answer), (409, {"upstream": "conflict"}))
            self.assertEqual(header(headers, OPERATION), [])
            self.assertEqual(header(headers, OWN_ERROR), [])  # the upstream's answer, not the service's
        finally:
            faker.shutdown()
            faker.server_close()

    def test_the_services_own_errors_are_marked_and_a_401_names_bearer(self):
        tenant = self.tenant()
        m = self.membrane(tenant, "marked")
        status, answer, headers = self.call(m["revoke"], "export", body={"uri": self.upstream.url("/echo")})
        self.assertEqual(status, 409, answer)
        self.assertEqual(header(headers, OWN_ERROR), ["true"])
        self.assertEqual(header(headers, "WWW-Authenticate"), [])
        for token in ("CPBLTY1-" + "A" * 85 + "Q", None):  # an unknown token, and none at all
            with self.subTest(token=bool(token)):
                status, answer, headers = self.server.call(token, "POST", "/", {})
                self.assertEqual(status, 401, answer)
                self.assertEqual(header(headers, OWN_ERROR), ["true"])
                self.assertEqual(header(headers, "WWW-Authenticate"), ['Bearer realm="membraned"'])
        # A success carries neither, nor does an upstream's error relayed (test above).
        status, answer, headers = self.call(tenant["query"], "query")
        self.assertEqual(status, 200, answer)
        self.assertEqual(header(headers, OWN_ERROR), [])

    def test_audit_record_and_metric(self):
        tenant = self.tenant()
        m = self.membrane(tenant, "audited")
        status, _, headers = self.call(m["revoke"], "export", body={"uri": self.upstream.url("/echo")})
        self.assertEqual(status, 409)
        request_id = header(headers, "X-Request-Id")[0]
        deadline = time.monotonic() + 15
        record = None
        while record is None and time.monotonic() < deadline:
            with open(self.audit, encoding="utf-8") as f:
                record = next((json.loads(l) for l in f if request_id in l), None)
            time.sleep(0.05)
        self.assertIsNotNone(record)
        self.assertEqual((record["operation"], record["status"], record["reason"], record["membrane"]),
                         ("revoke", 409, "operation", "audited"))
        status, text, _ = self.server.call(None, "GET", "/metrics")
        count = metric_value(text, "membraned_refusals_total", 'reason="operation"')
        self.assertIsNotNone(count, text)
        self.assertGreaterEqual(count, 1)


if __name__ == "__main__":
    unittest.main()
