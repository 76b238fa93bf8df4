"""contract §2-4 against a real membraned over plain HTTP on loopback: every operation,
every error row that the management API can produce, and bad input of every kind."""
import json
import os
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

from harness import BINARY, Server, Upstream, token_of

# A local stand-in answers invocations (the real Lambda is never reachable from here).
UPSTREAM = Upstream()
LAMBDA_EXPORT = {
    "uri": UPSTREAM.url("/2015-03-31/functions/my-function/invocations"),
    "method": "POST",
    "allowQuery": False,
    "headers": {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "None"},
    "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": "AKIDEXAMPLE", "region": "us-east-1",
                                  "service": "lambda", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}},
}


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(args=["--max-invoke-body", "1000"]).start()
        cls.tenant = cls.server.first_tenant()
        cls.create = token_of(cls.tenant["capabilities"]["create"])
        cls.query = token_of(cls.tenant["capabilities"]["query"])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        assert code == 0, code

    def new_tenant(self):
        out = subprocess.run([BINARY, "tenant", "create", "--data-dir", self.server.data_dir,
                              "--authority", self.server.authority], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    def membrane(self, prefix="m"):
        status, body, _ = self.server.call(self.create, body={"id": "%s-%s" % (prefix, uuid.uuid4())})
        self.assertEqual(status, 201, body)
        return body

    def assert_error(self, status, body, expected_status, mentions=None):
        self.assertEqual(status, expected_status, body)
        self.assertEqual(body["statusCode"], expected_status)
        self.assertIsInstance(body["error"], str)
        self.assertIsInstance(body["message"], str)
        if mentions:
            self.assertIn(mentions, body["message"])

    # --- create --------------------------------------------------------------------------------
    def test_create_answers_201_with_both_capabilities_under_the_authority(self):
        status, body, headers = self.server.call(self.create, body={"id": "tutorial-membrane"})
        self.assertEqual(status, 201)
        self.assertEqual(body["id"], "tutorial-membrane")
        for name in ("export", "revoke"):
            self.assertRegex(body["capabilities"][name],
                             r"^cpblty://%s/#CPBLTY1-[-_A-Za-z0-9]{86}$" % self.server.authority.replace(".", r"\."))
        self.assertNotIn("error", body)
        self.assertIn(("Content-Type", "application/json"), headers)

    def test_create_with_an_existing_id_is_409_and_a_revoked_id_can_be_reused(self):
        m = self.membrane()
        status, body, _ = self.server.call(self.create, body={"id": m["id"]})
        self.assert_error(status, body, 409)
        self.assertEqual(self.server.call(token_of(m["capabilities"]["revoke"]), "GET")[0], 202)
        status, body, _ = self.server.call(self.create, body={"id": m["id"]})
        self.assertEqual(status, 201, body)
        self.assertNotEqual(body["capabilities"]["export"], m["capabilities"]["export"])

    def test_create_accepts_spaces_slashes_and_non_ascii_ids_up_to_512_characters(self):
        for mid in ["with space", "a/b/c", "caf\u00e9 \u2615", "x" * 512, "\u00e9" * 512]:
            status, body, _ = self.server.call(self.create, body={"id": mid + ("" if len(mid) >= 512 else str(uuid.uuid4()))})
            self.assertEqual(status, 201, (mid[:20], body))

    def test_create_rejects_bad_bodies_with_400_naming_the_field(self):
        cases = [
            ("{}", "id"),
            ('{"id": ""}', "id"),
            ('{"id": 7}', "id"),
            ('{"id": null}', "id"),
            ('{"id": "' + "x" * 513 + '"}', "id"),
            ('{"id": "ok", "extra": 1}', "extra"),
            ('{"id": "a\\u0000b"}', "id"),
            ('{"id": "tru', "JSON"),
            ("not json", "JSON"),
            ("[1,2]", "object"),
            ("", "JSON"),
        ]
        for raw, mention in cases:
            with self.subTest(raw=raw[:30]):
                status, body, _ = self.server.call(self.create, body=raw)
                self.assert_error(status, body, 400, mention)

    def test_body_is_json_whatever_the_content_type_says(self):
        for ctype in ("application/x-www-form-urlencoded", "text/plain", None):
            headers = {"Content-Type": ctype} if ctype else {}
            status, body, _ = self.server.call(self.create, body=json.dumps({"id": "ct-%s" % uuid.uuid4()}), headers=headers)
            self.assertEqual(status, 201, body)

    def test_the_method_does_not_matter_for_built_in_capabilities(self):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            status, body, _ = self.server.call(self.create, method, body={"id": "method-%s" % uuid.uuid4()})
            self.assertEqual(status, 201, (method, body))
        status, body, _ = self.server.call(self.query, "POST")
        self.assertEqual(status, 200, body)

    # --- query ---------------------------------------------------------------------------------
    def test_query_pages_in_byte_order_and_tells_whether_more_exist(self):
        tenant = self.new_tenant()
        create, query = (token_of(tenant["capabilities"][k]) for k in ("create", "query"))
        status, body, _ = self.server.call(query, "GET")
        self.assertEqual((status, body), (200, {"membranes": [], "completed": True}))
        ids = ["b", "a", "a b", "a/b", "Z", "\u00e9", "c"]
        created = {}
        for mid in ids:
            status, body, _ = self.server.call(create, body={"id": mid})
            self.assertEqual(status, 201)
            created[mid] = body
        ordered = sorted(ids, key=lambda s: s.encode("utf-8"))
        # Default limit is 1.
        status, body, _ = self.server.call(query, "GET")
        self.assertEqual([m["id"] for m in body["membranes"]], ordered[:1])
        self.assertFalse(body["completed"])
        # Walk with lastId.
        seen, last = [], None
        while True:
            path = "/?limit=2" + ("&lastId=" + urlquote(last) if last is not None else "")
            status, body, _ = self.server.call(query, "GET", path)
            self.assertEqual(status, 200, body)
            seen += [m["id"] for m in body["membranes"]]
            for m in body["membranes"]:
                self.assertEqual(m, created[m["id"]])  # the same URIs create returned
            if body["completed"]:
                break
            last = body["membranes"][-1]["id"]
        self.assertEqual(seen, ordered)
        # An exact page is completed.
        status, body, _ = self.server.call(query, "GET", "/?limit=%d" % len(ids))
        self.assertTrue(body["completed"])
        self.assertEqual(len(body["membranes"]), len(ids))
        # lastId past the end.
        status, body, _ = self.server.call(query, "GET", "/?lastId=%F0%9F%98%80")
        self.assertEqual(body, {"membranes": [], "completed": True})
        # '+' is a space; by id.
        status, body, _ = self.server.call(query, "GET", "/?id=a+b")
        self.assertEqual([m["id"] for m in body["membranes"]], ["a b"])
        self.assertTrue(body["completed"])
        status, body, _ = self.server.call(query, "GET", "/?id=a%2Fb")
        self.assertEqual([m["id"] for m in body["membranes"]], ["a/b"])
        status, body, _ = self.server.call(query, "GET", "/?id=nope")
        self.assertEqual(body, {"membranes": [], "completed": True})
        # Above 1000 is lowered to 1000.
        status, body, _ = self.server.call(query, "GET", "/?limit=5000")
        self.assertEqual(status, 200)
        self.assertEqual(len(body["membranes"]), len(ids))

    def test_query_rejects_bad_limits_and_repeated_parameters(self):
        for path in ("/?limit=0", "/?limit=-1", "/?limit=abc", "/?limit=1.5", "/?limit=", "/?limit=1&limit=2",
                     "/?id=a&id=b", "/?lastId=a&lastId=b", "/?id=%zz"):
            with self.subTest(path=path):
                status, body, _ = self.server.call(self.query, "GET", path)
                self.assert_error(status, body, 400)

    # --- export --------------------------------------------------------------------------------
    def test_export_by_uri_and_by_capability(self):
        m = self.membrane()
        export = token_of(m["capabilities"]["export"])
        status, body, _ = self.server.call(export, body=LAMBDA_EXPORT)
        self.assertEqual(status, 201, body)
        # The grant's handle and its own revoke capability come beside it (contract §12).
        self.assertEqual(sorted(body), ["capability", "id", "revoke"])
        self.assertRegex(body["id"], r"^g_[0-9a-f]{24}$")
        self.assertNotEqual(body["revoke"], body["capability"])
        lambda_cap = body["capability"]
        m2 = self.membrane()
        status, body, _ = self.server.call(token_of(m2["capabilities"]["export"]), body={"capability": lambda_cap})
        self.assertEqual(status, 201, body)
        # Re-export of built-in capabilities too (the tenant's query capability here).
        status, body, _ = self.server.call(token_of(m2["capabilities"]["export"]),
                                           body={"capability": self.tenant["capabilities"]["query"]})
        self.assertEqual(status, 201, body)
        status, listing, _ = self.server.call(token_of(body["capability"]), "GET")
        self.assertEqual(status, 200, listing)
        self.assertIn("membranes", listing)

    def test_export_rejects_bad_bodies_with_400_naming_the_field(self):
        export = token_of(self.membrane()["capabilities"]["export"])
        cases = [
            ({}, "uri"),
            ({"uri": "ftp://x.example/"}, "uri"),
            ({"uri": "https://user:pw@x.example/"}, "uri"),
            ({"uri": "https://x.example/", "capability": "cpblty://x/#CPBLTY1-abc"}, "capability"),
            ({"capability": "cpblty://x.example/#CPBLTY1-short"}, "capability"),
            ({"uri": "https://x.example/", "method": "FETCH"}, "method"),
            ({"uri": "https://x.example/", "allowQuery": "yes"}, "allowQuery"),
            ({"uri": "https://x.example/", "headers": {"Bad Name": "v"}}, "headers"),
            ({"uri": "https://x.example/", "headers": {"X": "a\r\nb"}}, "headers.X"),
            ({"uri": "https://x.example/", "hmac": {}}, "hmac"),
            ({"uri": "https://x.example/", "hmac": {"aws4-hmac-sha256": {"region": "r", "service": "s"}}}, "awsAccessKeyId"),
            ({"uri": "https://x.example/", "hmac": {"cap1-hmac-sha512": {"key": "!!", "keyId": "k"}}}, "key"),
            ({"uri": "https://x.example/", "timeoutMs": 0}, "timeoutMs"),
            ({"uri": "https://x.example/", "tls": {"ca": "not pem"}}, "tls.ca"),
            ({"uri": "https://x.example/", "surprise": True}, "surprise"),
            ({"uri": ""}, "uri"),
            # contract §9: a profile needs --aws-config and a grant (none here); not with stored
            # keys.
            ({"uri": "https://x.example/", "hmac": {"aws4-hmac-sha256": {
                "credentials": "lambda-invoker", "region": "us-east-1", "service": "lambda"}}}, "credentials"),
            ({"uri": "https://x.example/", "hmac": {"aws4-hmac-sha256": {
                "credentials": "p", "awsAccessKeyId": "AKID", "secretAccessKey": "s",
                "region": "us-east-1", "service": "lambda"}}}, "credentials"),
            ({"uri": "https://x.example/", "hmac": {"aws4-hmac-sha256": {
                "credentials": "bad name!", "region": "us-east-1", "service": "lambda"}}}, "credentials"),
        ]
        for doc, mention in cases:
            with self.subTest(doc=doc):
                status, body, _ = self.server.call(export, body=doc)
                self.assert_error(status, body, 400, mention)

    def test_reexport_of_an_unknown_or_revoked_capability_is_404(self):
        export = token_of(self.membrane()["capabilities"]["export"])
        unknown = "cpblty://x.example/#CPBLTY1-" + "A" * 86
        status, body, _ = self.server.call(export, body={"capability": unknown})
        self.assert_error(status, body, 404)
        dead = self.membrane()
        self.server.call(token_of(dead["capabilities"]["revoke"]), "DELETE")
        status, body, _ = self.server.call(export, body={"capability": dead["capabilities"]["export"]})
        self.assert_error(status, body, 404)

    # --- revoke and deleteSelf -----------------------------------------------------------------
    def test_revoke_cuts_everything_below_at_once_and_may_be_repeated(self):
        root, middle, leaf = self.membrane("root"), self.membrane("middle"), self.membrane("leaf")
        status, body, _ = self.server.call(token_of(root["capabilities"]["export"]), body=LAMBDA_EXPORT)
        lambda_cap = body["capability"]
        status, body, _ = self.server.call(token_of(middle["capabilities"]["export"]), body={"capability": lambda_cap})
        via_middle = body["capability"]
        status, body, _ = self.server.call(token_of(leaf["capabilities"]["export"]), body={"capability": via_middle})
        via_leaf = body["capability"]
        invoke = lambda cap: self.server.call(token_of(cap), "POST", body="{}")[0]
        # A live exported capability reaches the upstream (200); a dead one answers 401.
        self.assertEqual([invoke(c) for c in (lambda_cap, via_middle, via_leaf)], [200, 200, 200])
        status, body, _ = self.server.call(token_of(middle["capabilities"]["revoke"]), "GET")
        self.assertEqual((status, body), (202, {"statusCode": 202, "message": "Accepted"}))
        self.assertEqual([invoke(c) for c in (lambda_cap, via_middle, via_leaf)], [200, 401, 401])
        self.assertEqual(self.server.call(token_of(middle["capabilities"]["export"]), body=LAMBDA_EXPORT)[0], 401)
        self.assertEqual(self.server.call(token_of(middle["capabilities"]["revoke"]), "GET")[0], 202)
        self.assertEqual(self.server.call(token_of(root["capabilities"]["revoke"]), "DELETE")[0], 202)
        self.assertEqual([invoke(c) for c in (lambda_cap, via_middle, via_leaf)], [401, 401, 401])
        # The leaf membrane itself is untouched.
        self.assertEqual(self.server.call(token_of(leaf["capabilities"]["export"]), body=LAMBDA_EXPORT)[0], 201)

    def test_what_a_delegate_made_through_a_membrane_dies_with_it(self):
        """Alice hands Bob her create capability and a membrane's export capability through M2;
        whatever Bob makes with them is cut when Alice revokes M2, and nothing of Alice's own."""
        m1, m2 = self.membrane("m1"), self.membrane("m2")
        m2_export = token_of(m2["capabilities"]["export"])
        status, body, _ = self.server.call(m2_export, body={"capability": self.tenant["capabilities"]["create"]})
        bob_create = token_of(body["capability"])
        status, body, _ = self.server.call(m2_export, body={"capability": m1["capabilities"]["export"]})
        bob_export = token_of(body["capability"])
        status, bobs_membrane, _ = self.server.call(bob_create, body={"id": "bob-%s" % uuid.uuid4()})
        self.assertEqual(status, 201, bobs_membrane)
        status, body, _ = self.server.call(bob_export, body=LAMBDA_EXPORT)
        self.assertEqual(status, 201, body)
        bobs_lambda = token_of(body["capability"])
        status, body, _ = self.server.call(token_of(m1["capabilities"]["export"]), body=LAMBDA_EXPORT)
        alices_lambda = token_of(body["capability"])
        self.assertEqual(self.server.call(bobs_lambda, body="{}")[0], 200)

        self.assertEqual(self.server.call(token_of(m2["capabilities"]["revoke"]), "GET")[0], 202)
        for cut in (bob_create, bob_export, bobs_lambda, token_of(bobs_membrane["capabilities"]["export"])):
            self.assertEqual(self.server.call(cut, "POST", body=LAMBDA_EXPORT)[0], 401)
        self.assertEqual(self.server.call(alices_lambda, body="{}")[0], 200)
        self.assertEqual(self.server.call(token_of(m1["capabilities"]["export"]), body=LAMBDA_EXPORT)[0], 201)

    def test_delete_self_revokes_the_tenant_and_all_it_exported(self):
        tenant = self.new_tenant()
        create, query, delete = (token_of(tenant["capabilities"][k]) for k in ("create", "query", "deleteSelf"))
        status, m, _ = self.server.call(create, body={"id": "doomed"})
        status, body, _ = self.server.call(token_of(m["capabilities"]["export"]), body=LAMBDA_EXPORT)
        cap = body["capability"]
        # Another tenant re-exports the doomed tenant's capability: it dies too.
        other = self.membrane("other")
        status, body, _ = self.server.call(token_of(other["capabilities"]["export"]), body={"capability": cap})
        borrowed = body["capability"]
        status, body, _ = self.server.call(delete, "DELETE")
        self.assertEqual((status, body), (202, {"statusCode": 202, "message": "Accepted"}))
        for t in (create, query, delete, token_of(m["capabilities"]["export"]), token_of(cap), token_of(borrowed)):
            self.assertEqual(self.server.call(t, "GET")[0], 401)
        self.assertEqual(self.server.call(self.create, body={"id": "alive-%s" % uuid.uuid4()})[0], 201)

    # --- 401 -----------------------------------------------------------------------------------
    def test_every_kind_of_unauthorised_request_gets_the_same_401(self):
        answers = []
        for auth in (None, "Basic dXNlcjpwdw==", "Bearer", "Bearer nope", "Bearer CPBLTY2-" + "A" * 86,
                     "Bearer CPBLTY1-" + "A" * 86, "Bearer " + self.create + "x"):
            headers = {"Authorization": auth} if auth else {}
            status, body, _ = self.server.call(None, "POST", body='{"id":"x"}', headers=headers)
            answers.append((status, json.dumps(body, sort_keys=True)))
        self.assertEqual(len(set(answers)), 1, answers)
        self.assertEqual(answers[0][0], 401)
        self.assertEqual(self.server.call(self.create, headers={}, body={"id": "scheme-%s" % uuid.uuid4()},
                                          method="POST")[0], 201)
        status, _, _ = self.server.call(None, "POST", body=json.dumps({"id": "lower-%s" % uuid.uuid4()}),
                                        headers={"Authorization": "bearer " + self.create})
        self.assertEqual(status, 201)

    # --- limits and transport ------------------------------------------------------------------
    def test_management_body_over_64_KiB_is_413(self):
        big = json.dumps({"id": "x" * (64 * 1024)})
        status, body, _ = self.server.call(self.create, body=big)
        self.assert_error(status, body, 413)
        self.assertEqual(self.server.call(self.create, body={"id": "after-413-%s" % uuid.uuid4()})[0], 201)

    def test_invocation_body_over_the_configured_limit_is_413(self):
        m = self.membrane()
        status, body, _ = self.server.call(token_of(m["capabilities"]["export"]), body=LAMBDA_EXPORT)
        cap = token_of(body["capability"])
        self.assertEqual(self.server.call(cap, body="x" * 1000)[0], 200)
        status, body, _ = self.server.call(cap, body="x" * 1001)
        self.assert_error(status, body, 413)

    def test_oversized_headers_get_431(self):
        status, body, _ = self.server.call(self.query, "GET", headers={"X-Big": "y" * 20000})
        self.assert_error(status, body, 431)

    def test_keep_alive_and_pipelining(self):
        conn = self.server.connection()
        for _ in range(5):
            status, _, _ = self.server.call(self.query, "GET", conn=conn)
            self.assertEqual(status, 200)
        conn.close()
        s = self.server.raw_socket()
        req = ("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % self.query).encode()
        s.sendall(req * 3)
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, data[:300])

    def test_malformed_http_gets_400_and_the_server_keeps_serving(self):
        s = self.server.raw_socket()
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = s.recv(4096)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data)
        self.assertEqual(self.server.call(self.query, "GET")[0], 200)

    def test_dropped_connections_mid_request_do_not_hurt(self):
        for partial in (b"POST / HTTP/1.1\r\nHost: x\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\""):
            s = self.server.raw_socket()
            s.sendall(partial)
            s.close()
        self.assertEqual(self.server.call(self.query, "GET")[0], 200)

    def test_no_token_reaches_the_log(self):
        m = self.membrane()
        self.server.call(token_of(m["capabilities"]["export"]), body=LAMBDA_EXPORT)
        log = self.server.stderr()
        self.assertRegex(log, r"POST 201 [0-9.]+ms op=create cap=[0-9a-f]{12}")
        for secret in (self.create, self.query, token_of(m["capabilities"]["export"]),
                       token_of(m["capabilities"]["revoke"]), "wJalrXUtnFEMI"):
            self.assertNotIn(secret, log)


def urlquote(s):
    from urllib.parse import quote
    return quote(s, safe="")


class SlowClientTest(unittest.TestCase):
    def test_idle_and_slow_clients_are_disconnected(self):
        server = Server(args=["--idle-timeout-ms", "300", "--read-timeout-ms", "300"]).start()
        try:
            query = token_of(server.first_tenant()["capabilities"]["query"])
            idle = server.raw_socket()
            slow = server.raw_socket()
            slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
            for s in (idle, slow):
                s.settimeout(20)
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                s.close()
                self.assertNotIn(b"HTTP/1.1 2", data)
            self.assertEqual(server.call(query, "GET")[0], 200)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()


class LifecycleTest(unittest.TestCase):
    def test_plain_http_off_loopback_needs_the_operator_to_say_so(self):
        with self.subTest("refused"):
            server = Server()
            server.args = ["--listen", "0.0.0.0:0"]
            with self.assertRaises(RuntimeError) as ctx:
                server.start()
            self.assertIn("plain HTTP", str(ctx.exception))
            server.cleanup()

    def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(self):
        server = Server().start()
        try:
            create = token_of(server.first_tenant()["capabilities"]["create"])
            body = json.dumps({"id": "in-flight"}).encode()
            s = server.raw_socket()
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + create.encode() +
                      b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5])
            time.sleep(0.3)
            server.proc.send_signal(15)
            time.sleep(0.3)
            s.sendall(body[5:])
            data = s.recv(65536)
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 201"), data)
            self.assertIn(b"Connection: close", data)
            self.assertEqual(server.proc.wait(timeout=30), 0)
            # New connections are refused once it stopped.
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2)
        finally:
            server.cleanup()

    def test_flags_come_from_the_environment_and_a_config_file_and_flags_win(self):
        def invoke_limit(server):
            create = token_of(server.first_tenant()["capabilities"]["create"])
            status, m, _ = server.call(create, body={"id": "cfg-%s" % uuid.uuid4()})
            status, body, _ = server.call(token_of(m["capabilities"]["export"]), body={"uri": UPSTREAM.url()})
            cap = token_of(body["capability"])
            return [server.call(cap, body="x" * n)[0] for n in (100, 101, 200, 201)]

        with tempfile.TemporaryDirectory() as d:
            config = os.path.join(d, "membraned.toml")
            with open(config, "w") as f:
                f.write('max-invoke-body = 100\nauthority = "membrane.example.com"\n')
            server = Server(args=["--config", config]).start()
            try:
                self.assertEqual(invoke_limit(server), [200, 413, 413, 413])
                self.assertTrue(server.first_tenant()["capabilities"]["create"].startswith("cpblty://membrane.example.com/#"))
            finally:
                server.cleanup()
            server = Server(env={"MEMBRANED_MAX_INVOKE_BODY": "200"}).start()
            try:
                self.assertEqual(invoke_limit(server), [200, 200, 200, 413])
            finally:
                server.cleanup()
            server = Server(args=["--config", config, "--max-invoke-body", "200"]).start()
            try:
                self.assertEqual(invoke_limit(server), [200, 200, 200, 413])
            finally:
                server.cleanup()

    def test_restart_keeps_everything_and_the_first_tenant_is_made_once(self):
        server = Server().start()
        try:
            tenant = server.first_tenant()
            create = token_of(tenant["capabilities"]["create"])
            status, m, _ = server.call(create, body={"id": "persisted"})
            self.assertEqual(status, 201)
            self.assertEqual(server.stop(), 0)
            self.assertEqual(oct(os.stat(os.path.join(server.data_dir, "first-tenant.json")).st_mode & 0o777), "0o600")
            self.assertEqual(oct(os.stat(os.path.join(server.data_dir, "master.key")).st_mode & 0o777), "0o600")
            again = Server(data_dir=server.data_dir).start()
            try:
                self.assertEqual(again.first_tenant(), tenant)
                status, body, _ = again.call(token_of(tenant["capabilities"]["query"]), "GET", "/?id=persisted")
                self.assertEqual(body["membranes"][0]["capabilities"]["export"].split("#")[1],
                                 m["capabilities"]["export"].split("#")[1])
            finally:
                again.stop()
                again.cleanup()
            # A different master key cannot open the stored secrets: a clear start-up error.
            wrong = Server(data_dir=server.data_dir, env={"MEMBRANED_MASTER_KEY": "A" * 43 + "="})
            with self.assertRaises(RuntimeError) as ctx:
                wrong.start()
            self.assertIn("master key", str(ctx.exception))
            wrong.cleanup()
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
