"""contract §5 against a real membraned and real local upstreams (plain and TLS with a
client-certificate check): the upstream request, byte-exact bodies, streamed answers, 413,
502 and 504, and a requester connection that stays usable after failures."""
import base64
import hashlib
import http.client
import json
import os
import tempfile
import time
import unittest
import uuid

from harness import Pki, Server, Upstream, header_values, rss_kib, token_of


class InvocationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.TemporaryDirectory(prefix="membraned-pki-")
        cls.pki = Pki(cls.pki_dir.name)
        cls.client_pki = Pki(tempfile.mkdtemp(dir=cls.pki_dir.name))
        cls.upstream = Upstream()
        cls.tls_upstream = Upstream(tls=cls.pki, require_client_cert=True)
        cls.server = Server(args=["--max-invoke-body", str(6 * 1024 * 1024), "--upstream-timeout-ms", "2000"]).start()
        tenant = cls.server.first_tenant()
        status, m, _ = cls.server.call(token_of(tenant["capabilities"]["create"]), body={"id": "invoke"})
        cls.export = token_of(m["capabilities"]["export"])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        cls.tls_upstream.close()
        cls.pki_dir.cleanup()
        assert code == 0, code

    def capability(self, **export):
        status, body, _ = self.server.call(self.export, body=export)
        self.assertEqual(status, 201, body)
        return token_of(body["capability"])

    def invoke(self, cap, method="POST", path="/", body=None, headers=None, conn=None):
        return self.server.call(cap, method, path, body=body, headers=headers, conn=conn)

    def last_request(self, upstream=None):
        return (upstream or self.upstream).requests[-1]

    @staticmethod
    def header(record, name):
        values = header_values(record["headers"], name)
        return values[0] if len(values) == 1 else (values or None)

    # --- target, method, query -----------------------------------------------------------------
    def test_method_is_the_requesters_unless_the_export_fixes_it(self):
        free = self.capability(uri=self.upstream.url("/echo"))
        fixed = self.capability(uri=self.upstream.url("/echo"), method="put")
        for method in ("GET", "POST", "DELETE", "PATCH", "OPTIONS"):
            self.assertEqual(self.invoke(free, method)[0], 200)
            self.assertEqual(self.last_request()["method"], method)
            self.assertEqual(self.invoke(fixed, method)[0], 200)
            self.assertEqual(self.last_request()["method"], "PUT")

    def test_the_requesters_path_is_ignored_and_its_query_appended_only_when_allowed(self):
        cases = [
            ({"uri": self.upstream.url("/echo")}, "/any/path?x=1", "/echo"),
            ({"uri": self.upstream.url("/echo?a=1")}, "/p?x=1", "/echo?a=1"),
            ({"uri": self.upstream.url("/echo"), "allowQuery": True}, "/p?x=1&y=%20z", "/echo?x=1&y=%20z"),
            ({"uri": self.upstream.url("/echo?a=1"), "allowQuery": True}, "/p?x=1", "/echo?a=1&x=1"),
            ({"uri": self.upstream.url("/echo?a=1"), "allowQuery": True}, "/p", "/echo?a=1"),
            ({"uri": self.upstream.url("/echo#frag"), "allowQuery": True}, "/?q", "/echo?q"),
        ]
        for export, requested, expected in cases:
            with self.subTest(export=export, requested=requested):
                cap = self.capability(**export)
                self.assertEqual(self.invoke(cap, "GET", requested)[0], 200)
                self.assertEqual(self.last_request()["path"], expected)

    # --- headers -------------------------------------------------------------------------------
    def test_headers_are_merged_hop_by_hop_ones_dropped_and_the_token_never_forwarded(self):
        cap = self.capability(uri=self.upstream.url("/echo"), headers={"X-Configured": "from-export", "X-Both": "export"})
        status, body, headers = self.invoke(cap, "POST", body=b"{}", headers={
            "X-Requester": "kept", "x-both": "requester", "Connection": "keep-alive, X-Listed",
            "X-Listed": "dropped", "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c",
            "Proxy-Authorization": "Basic eA==", "Content-Type": "application/json"})
        self.assertEqual(status, 200, body)
        got = self.last_request()
        names = [k.lower() for k, _ in got["headers"]]
        self.assertEqual(self.header(got, "X-Requester"), "kept")
        self.assertEqual(self.header(got, "X-Configured"), "from-export")
        self.assertEqual(self.header(got, "X-Both"), "export")
        self.assertEqual(names.count("x-both"), 1)
        for gone in ("x-listed", "keep-alive", "te", "upgrade", "proxy-authorization", "authorization"):
            self.assertNotIn(gone, names)
        self.assertEqual(self.header(got, "Host"), "127.0.0.1:%d" % self.upstream.port)
        self.assertEqual(self.header(got, "Content-Type"), "application/json")
        raw = json.dumps(got["headers"]) + got["path"]
        self.assertNotIn(cap, raw)
        self.assertNotIn(cap[8:40], raw)
        # The upstream's own hop-by-hop headers (and those its Connection names) stay behind.
        names_back = [k.lower() for k, _ in headers]
        self.assertIn("x-upstream", names_back)
        self.assertNotIn("x-hop", names_back)

    def test_a_requesters_authorization_never_reaches_an_unsigned_upstream_either(self):
        cap = self.capability(uri=self.upstream.url("/echo"))
        self.invoke(cap, "GET")
        self.assertIsNone(self.header(self.last_request(), "Authorization"))

    # --- bodies --------------------------------------------------------------------------------
    def test_bodies_are_forwarded_byte_for_byte_whatever_the_method(self):
        cap = self.capability(uri=self.upstream.url("/echo"))
        binary = bytes(range(256)) * 4
        big = os.urandom(5 * 1024 * 1024)
        for method, body in (("POST", binary), ("POST", b""), ("GET", b"body on a GET"), ("PUT", big)):
            with self.subTest(method=method, size=len(body)):
                status, answer, _ = self.invoke(cap, method, body=body)
                self.assertEqual(status, 200)
                got = self.last_request()
                self.assertEqual(hashlib.sha256(got["body"]).hexdigest(), hashlib.sha256(body).hexdigest())
                if body:
                    self.assertEqual(self.header(got, "Content-Length"), str(len(body)))

    def test_aws4_signature_covers_the_body_actually_sent(self):
        cap = self.capability(uri=self.upstream.url("/echo"), hmac={"aws4-hmac-sha256": {
            "awsAccessKeyId": "AKIDEXAMPLE", "secretAccessKey": "s3cr3t-" + uuid.uuid4().hex,
            "region": "us-east-1", "service": "lambda", "sessionToken": "session-" + uuid.uuid4().hex}})
        body = os.urandom(3000)
        self.assertEqual(self.invoke(cap, "POST", body=body, headers={"X-Amz-Date": "19700101T000000Z"})[0], 200)
        got = self.last_request()
        self.assertEqual(self.header(got, "X-Amz-Content-Sha256"), hashlib.sha256(body).hexdigest())
        self.assertNotEqual(self.header(got, "X-Amz-Date"), "19700101T000000Z")
        self.assertTrue(self.header(got, "X-Amz-Security-Token").startswith("session-"))
        self.assertTrue(self.header(got, "Authorization").startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"))

    def test_invocation_body_over_the_limit_is_413_and_the_connection_recovers(self):
        small = Server(args=["--max-invoke-body", "1024"]).start()
        try:
            tenant = small.first_tenant()
            status, m, _ = small.call(token_of(tenant["capabilities"]["create"]), body={"id": "x"})
            status, body, _ = small.call(token_of(m["capabilities"]["export"]), body={"uri": self.upstream.url("/echo")})
            cap = token_of(body["capability"])
            self.assertEqual(small.call(cap, body=b"a" * 1024)[0], 200)
            status, body, _ = small.call(cap, body=b"a" * 1025)
            self.assertEqual(status, 413)
            self.assertEqual(body["statusCode"], 413)
            self.assertEqual(small.call(cap, body=b"ok")[0], 200)
        finally:
            small.cleanup()

    # --- answers -------------------------------------------------------------------------------
    def test_upstream_statuses_are_relayed_not_wrapped(self):
        for code in (201, 204, 301, 400, 403, 404, 500, 503):
            with self.subTest(code=code):
                cap = self.capability(uri=self.upstream.url("/status/%d" % code))
                status, body, headers = self.invoke(cap, "GET")
                self.assertEqual(status, code)
                if code not in (204, 304):
                    self.assertEqual(body, {"status": code})
                if code == 301:
                    self.assertEqual(len(self.upstream.requests[-1:]), 1)  # not followed

    def test_a_100_MiB_answer_streams_through_with_flat_memory(self):
        # Its own server: under AddressSanitizer freed memory sits in a quarantine (256 MiB by
        # default) and would show as growth; a small quarantine keeps the measure about us.
        asan = os.environ.get("ASAN_OPTIONS", "")
        server = Server(env={"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=16"}).start()
        try:
            tenant = server.first_tenant()
            status, m, _ = server.call(token_of(tenant["capabilities"]["create"]), body={"id": "big"})
            status, body, _ = server.call(token_of(m["capabilities"]["export"]),
                                          body={"uri": self.upstream.url("/big/%d" % (100 * 1024 * 1024))})
            cap = token_of(body["capability"])
            conn = server.connection(timeout=120)
            conn.request("GET", "/", headers={"Authorization": "Bearer " + cap})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            before = rss_kib(server.proc.pid)
            total, peak = 0, before
            digest = hashlib.sha256()
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                digest.update(chunk)
                peak = max(peak, rss_kib(server.proc.pid))
            conn.close()
            self.assertEqual(total, 100 * 1024 * 1024)
            self.assertEqual(digest.hexdigest(), hashlib.sha256(b"x" * (100 * 1024 * 1024)).hexdigest())
            # The answer is never held whole: the service's memory grows by far less than 100 MiB.
            self.assertLess(peak - before, 32 * 1024, (before, peak))
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()

    def test_sized_answers_keep_their_length(self):
        cap = self.capability(uri=self.upstream.url("/sized/123456"))
        status, body, headers = self.invoke(cap, "GET")
        self.assertEqual(status, 200)
        self.assertIn(("Content-Length", "123456"), headers)
        status, body, headers = self.invoke(cap, "HEAD")
        self.assertEqual(status, 200)

    def test_upstream_connections_are_reused(self):
        cap = self.capability(uri=self.upstream.url("/echo"))
        start = len(self.upstream.requests)
        for _ in range(10):
            self.assertEqual(self.invoke(cap, "POST", body=b"{}")[0], 200)
        peers = {r["peer"] for r in self.upstream.requests[start:]}
        self.assertEqual(len(self.upstream.requests) - start, 10)
        self.assertLessEqual(len(peers), 2, peers)  # one keep-alive connection, maybe a second

    # --- failures ------------------------------------------------------------------------------
    def test_upstream_failures_are_502_or_504_and_the_connection_stays_usable(self):
        echo = self.capability(uri=self.upstream.url("/echo"))
        cases = [
            (self.capability(uri="http://127.0.0.1:1/"), 502),                      # connect refused
            (self.capability(uri="http://no-such-host.invalid/"), 502),             # DNS
            (self.capability(uri=self.upstream.url("/drop")), 502),                 # reset
            (self.capability(uri=self.upstream.url("/garbage")), 502),              # malformed answer
            (self.capability(uri=self.upstream.url("/slow/5000"), timeoutMs=200), 504),
            (self.capability(uri=self.upstream.url("/slow/5000")), 504),            # the service maximum (2 s here)
            (self.capability(uri=self.upstream.url("/stallbody/3000"), timeoutMs=200), 504),  # header, then nothing
            (self.capability(uri=self.tls_upstream.url("/echo")), 502),             # untrusted certificate
        ]
        conn = self.server.connection(timeout=30)
        for cap, expected in cases:
            with self.subTest(expected=expected):
                status, body, _ = self.invoke(cap, "GET", conn=conn)
                self.assertEqual(status, expected, body)
                self.assertEqual(body["statusCode"], expected)
                self.assertNotIn("error", {k for k in body if k not in ("error", "message", "statusCode")})
                # Same connection, next request: fine.
                self.assertEqual(self.invoke(echo, "GET", conn=conn)[0], 200)
        conn.close()

    def test_an_answer_is_relayed_as_it_arrives_not_when_complete(self):
        cap = self.capability(uri=self.upstream.url("/gated"))
        self.upstream.gate.clear()
        conn = self.server.connection(timeout=30)
        conn.request("GET", "/", headers={"Authorization": "Bearer " + cap})
        resp = conn.getresponse()
        self.assertEqual(resp.read(4), b"0123")  # while the upstream still holds the rest
        self.upstream.gate.set()
        self.assertEqual(resp.read(), b"456789")
        self.assertTrue(self.upstream.gate_opened, "the first bytes came only after the upstream's wait ended")
        conn.close()

    def test_an_answer_cut_after_its_first_bytes_reaches_the_requester_truncated(self):
        # Once part of the body has gone out, a status can no longer change: the requester sees
        # the announced length, the bytes that came, and the connection closing.
        cap = self.capability(uri=self.upstream.url("/midstall/3000"), timeoutMs=300)
        conn = self.server.connection(timeout=30)
        conn.request("GET", "/", headers={"Authorization": "Bearer " + cap})
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.getheader("Content-Length")), (200, "10"))
        with self.assertRaises(http.client.IncompleteRead) as cut:
            resp.read()
        self.assertEqual(cut.exception.partial, b"0123")
        conn.close()
        self.assertEqual(self.invoke(self.capability(uri=self.upstream.url("/echo")), "GET")[0], 200)

    # --- TLS upstreams -------------------------------------------------------------------------
    def test_tls_upstream_with_its_ca_and_a_client_certificate(self):
        with open(self.pki.ca_cert) as f:
            ca = f.read()
        with open(self.client_pki.server_cert) as f:
            client_cert = f.read()
        with open(self.client_pki.server_key) as f:
            client_key = f.read()
        # Without a client certificate the upstream refuses the handshake: 502.
        no_client = self.capability(uri=self.tls_upstream.url("/echo"), tls={"ca": ca})
        self.assertEqual(self.invoke(no_client, "GET")[0], 502)
        # The upstream trusts only its own CA; the client certificate comes from another one.
        self.tls_upstream.httpd.socket.context.load_verify_locations(self.client_pki.ca_cert)
        good = self.capability(uri=self.tls_upstream.url("/echo"), tls={"ca": ca, "cert": client_cert, "key": client_key})
        status, body, _ = self.invoke(good, "POST", body=b"over tls")
        self.assertEqual(status, 200, body)
        self.assertEqual(base64.b64decode(body["body"]), b"over tls")
        # A CA that did not sign the upstream's certificate: 502, unless verification is off.
        with open(self.client_pki.ca_cert) as f:
            wrong_ca = f.read()
        wrong = self.capability(uri=self.tls_upstream.url("/echo"), tls={"ca": wrong_ca, "cert": client_cert, "key": client_key})
        self.assertEqual(self.invoke(wrong, "GET")[0], 502)
        unchecked = self.capability(uri=self.tls_upstream.url("/echo"),
                                    tls={"cert": client_cert, "key": client_key, "rejectUnauthorized": False})
        self.assertEqual(self.invoke(unchecked, "GET")[0], 200)

    def test_tls_upstream_host_name_is_verified(self):
        with open(self.pki.ca_cert) as f:
            ca = f.read()
        self.tls_upstream.httpd.socket.context.verify_mode = __import__("ssl").CERT_NONE
        try:
            # The certificate names 127.0.0.1 and localhost; 127.0.0.2 reaches the same server.
            cap = self.capability(uri="https://127.0.0.2:%d/echo" % self.tls_upstream.port, tls={"ca": ca})
            self.assertEqual(self.invoke(cap, "GET")[0], 502)
            cap = self.capability(uri="https://localhost:%d/echo" % self.tls_upstream.port, tls={"ca": ca})
            self.assertEqual(self.invoke(cap, "GET")[0], 200)
        finally:
            self.tls_upstream.httpd.socket.context.verify_mode = __import__("ssl").CERT_REQUIRED


if __name__ == "__main__":
    unittest.main(verbosity=2)
