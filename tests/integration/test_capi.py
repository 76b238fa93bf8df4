"""capi, the command-line client, against real membraned processes on loopback: one over HTTPS
with a certificate from a test CA (trusted through --trustedCA-file-path), one over plain HTTP
(--plain-http). capi runs as a subprocess with HOME set to a fresh temporary directory, so
~/.capability/credentials is the test's own.

"Nothing sent" is checked on the server's request log (one line per request, `op=...`) and on
the membranes that exist afterwards.
"""
import json
import os
import re
import stat
import subprocess
import tempfile
import time
import unittest
import uuid

from harness import BINARY, Pki, Server, Upstream, header_values, token_of

CAPI = os.environ.get("CAPI_BINARY", "capi")


def server_args():
    """The tests' upstreams are on loopback, which contract §10 closes unless the operator opens
    it."""
    return ["--allow-upstream", "127.0.0.0/8"]


class Home:
    """A temporary HOME, and capi run in it."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="capi-home-")
        self.path = self.tmp.name

    def capi(self, *args, stdin=None, env=None, timeout=60):
        full_env = {k: v for k, v in os.environ.items() if k != "CAPI_PLAIN_HTTP"}
        full_env["HOME"] = self.path
        full_env.update(env or {})
        return subprocess.run([CAPI] + [str(a) for a in args], input=stdin, capture_output=True,
                              env=full_env, timeout=timeout)

    def file(self, name, content):
        path = os.path.join(self.path, name)
        with open(path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        return path

    @property
    def credentials(self):
        return os.path.join(self.path, ".capability", "credentials")

    def cleanup(self):
        self.tmp.cleanup()


class FakeInventory:
    """A stand-in for the service's inventory (GET /?exportsOf=M&lastId=ID&limit=N, GET /?grant=ID)
    over plain HTTP on loopback: pages of `entries` exactly as the service pages them, every
    request recorded; `fail_after` requests answered, the next ones get `fail_status`."""

    def __init__(self, entries, fail_after=None, fail_status=503):
        import http.server
        import threading
        import urllib.parse

        outer = self
        self.entries = sorted(entries, key=lambda e: e["id"])
        self.requests = []
        self.fail_after = fail_after

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if outer.fail_after is not None and len(outer.requests) > outer.fail_after:
                    status, answer = fail_status, {"error": "Service Unavailable", "message": "try later",
                                                   "statusCode": fail_status}
                elif "grant" in params:
                    status, answer = 200, {"exports": [e for e in outer.entries if e["id"] == params["grant"]],
                                           "completed": True}
                else:
                    after = params.get("lastId", "")
                    limit = min(int(params.get("limit", "1")), 1000)
                    rest = [e for e in outer.entries if e["id"] > after]
                    status, answer = 200, {"exports": rest[:limit], "completed": len(rest) <= limit}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.capability = "cpblty://127.0.0.1:%d/#CPBLTY1-%s" % (self.httpd.server_address[1], "C" * 85 + "Q")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def inventory_entry(grant_id, **fields):
    """An inventory entry as the service gives it: every key, null where nothing applies."""
    entry = {"id": grant_id, "label": None, "membrane": "m", "kind": "uri", "operation": "invoke",
             "target": "https://example.com/fn", "method": "POST", "standsFor": None,
             "createdAt": "2026-11-24T23:42:59Z", "expiresAt": None, "maxUses": None, "uses": 0,
             "lastUsedAt": None, "rateLimit": None, "allowFrom": None, "revoked": False, "revokedAt": None,
             "state": "active"}
    entry.update(fields)
    return entry


class CapiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.TemporaryDirectory(prefix="capi-pki-")
        cls.pki = Pki(os.path.join(cls.pki_dir.name))
        other_dir = os.path.join(cls.pki_dir.name, "other")
        os.makedirs(other_dir)
        cls.other_pki = Pki(other_dir)  # a CA that did not sign the server's certificate
        args = server_args()
        cls.https = Server(tls=cls.pki, args=args).start()
        cls.plain = Server(args=args).start()
        cls.upstream = Upstream()
        with open(cls.pki.ca_cert) as f:
            ca_pem = f.read()
        with open(cls.other_pki.ca_cert) as f:
            other_pem = f.read()
        cls.trusted = os.path.join(cls.pki_dir.name, "trusted.json")
        with open(cls.trusted, "w") as f:
            json.dump({cls.https.authority: ca_pem}, f)
        cls.wrong_trusted = os.path.join(cls.pki_dir.name, "wrong.json")
        with open(cls.wrong_trusted, "w") as f:
            json.dump({cls.https.authority: other_pem}, f)

    @classmethod
    def tearDownClass(cls):
        codes = [cls.https.stop(), cls.plain.stop()]
        cls.https.cleanup()
        cls.plain.cleanup()
        cls.upstream.close()
        cls.pki_dir.cleanup()
        assert codes == [0, 0], codes

    def setUp(self):
        self.home = Home()

    def tearDown(self):
        self.home.cleanup()

    # --- helpers ------------------------------------------------------------------------------
    def new_tenant(self, server):
        """A fresh tenant of `server` (membraned tenant create while it runs), as a JSON file."""
        out = subprocess.run([BINARY, "tenant", "create", "--data-dir", server.data_dir,
                              "--authority", server.authority], capture_output=True, text=True, check=True)
        tenant = json.loads(out.stdout)
        path = self.home.file("tenant-%s.json" % uuid.uuid4().hex[:8], out.stdout)
        return tenant, path

    def tls(self):
        return ["--trustedCA-file-path", self.trusted]

    def ok(self, result, expect_json=True):
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertEqual(result.stderr, b"")
        return json.loads(result.stdout) if expect_json else result.stdout

    def invoke_refused(self, result, status):
        """capi invoke with an error answer: exit 1, the service's JSON body on stdout, the status
        on stderr (never a token)."""
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(json.loads(result.stdout)["statusCode"], status)
        self.assertIn(str(status), result.stderr.decode())
        self.assertNotIn(b"CPBLTY1-", result.stderr)

    def failed(self, result, status=1):
        """An error answer from the service: exit 1, nothing on stdout, and no token anywhere on
        stderr."""
        self.assertEqual(result.returncode, status, result.stderr)
        self.assertEqual(result.stdout, b"")
        err = result.stderr.decode()
        self.assertNotRegex(err, r"CPBLTY1-[A-Za-z0-9_-]{8}")
        return err

    def failed_before_sending(self, result):
        """A flag, file, profile or capability capi cannot use: exit 2, nothing sent."""
        return self.failed(result, status=2)

    def unanswered(self, result):
        """No answer came (refused connection, TLS, timeout): exit 3."""
        return self.failed(result, status=3)

    @staticmethod
    def log_lines(server):
        time.sleep(0.3)  # a request answered just before logs its line right after
        return [l for l in server.stderr().splitlines() if " op=" in l]

    def membrane(self, server, tenant_file, membrane_id, *extra):
        """capi config import of the tenant as profile p-<id>, then capi membrane create."""
        profile = "p-" + uuid.uuid4().hex[:8]
        plain = ["--plain-http"] if not server.tls else []
        self.ok(self.home.capi("config", "import", "--profile", profile, *plain, tenant_file), expect_json=False)
        opts = self.tls() if server.tls else []
        m = self.ok(self.home.capi("membrane", "create", "--profile", profile, "--id", membrane_id, *opts, *extra))
        return profile, m

    def assert_pretty(self, result):
        """The original CLI's output: JSON.stringify(answer, null, 2) and a newline (keys in the
        service's order, which json.loads keeps)."""
        text = result.stdout.decode()
        self.assertEqual(text, json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n")

    # --- every subcommand over HTTPS ----------------------------------------------------------
    def test_https_every_subcommand(self):
        tenant, path = self.new_tenant(self.https)
        imported = self.home.capi("config", "import", path)  # --profile defaults to "default"
        self.assertEqual(imported.returncode, 0, imported.stderr)
        self.assertNotIn(b"CPBLTY1-", imported.stdout)

        created = self.home.capi("membrane", "create", "--id", "owner", *self.tls())
        m = self.ok(created)
        self.assert_pretty(created)
        self.assertEqual(m["id"], "owner")
        self.assertTrue(m["capabilities"]["export"].startswith("cpblty://%s/#CPBLTY1-" % self.https.authority))

        queried = self.home.capi("membrane", "query", "--id", "owner", *self.tls())
        q = self.ok(queried)
        self.assertEqual(q, {"membranes": [m], "completed": True})

        exported = self.home.capi("membrane", "export", "--capability", m["capabilities"]["export"],
                                  "--uri", self.upstream.url("/echo"), "--method", "PUT",
                                  "--header", "X-Configured: yes", *self.tls())
        cap = self.ok(exported)["capability"]
        self.assertTrue(cap.startswith("cpblty://%s/#CPBLTY1-" % self.https.authority))

        answer = self.ok(self.home.capi("invoke", "--capability", cap, "--data", "hello", *self.tls()),
                         expect_json=False)
        echo = json.loads(answer)
        self.assertEqual(echo["method"], "PUT")
        self.assertIn(["X-Configured", "yes"], echo["headers"])
        self.assertEqual(echo["body"], "aGVsbG8=")

        # Re-export through a second membrane, then revoke that one alone.
        partner = self.ok(self.home.capi("membrane", "create", "--id", "partner", *self.tls()))
        re = self.ok(self.home.capi("membrane", "export", "--capability", partner["capabilities"]["export"],
                                    "--capability-to-export", cap, *self.tls()))["capability"]
        self.ok(self.home.capi("invoke", "--capability", re, *self.tls()), expect_json=False)
        revoked = self.home.capi("membrane", "revoke", "--capability", partner["capabilities"]["revoke"], *self.tls())
        self.assertEqual(self.ok(revoked), {"statusCode": 202, "message": "Accepted"})
        self.assert_pretty(revoked)
        self.invoke_refused(self.home.capi("invoke", "--capability", re, *self.tls()), 401)
        self.ok(self.home.capi("invoke", "--capability", cap, *self.tls()), expect_json=False)

        deleted = self.home.capi("membrane", "delete-self", *self.tls())
        self.assertEqual(self.ok(deleted), {"statusCode": 202, "message": "Accepted"})
        err = self.failed(self.home.capi("membrane", "create", "--id", "after", *self.tls()))
        self.assertTrue(err.startswith("FAILED\n"), err)
        self.assertIn('"statusCode": 401', err)
        self.invoke_refused(self.home.capi("invoke", "--capability", cap, *self.tls()), 401)

    def test_https_fails_when_the_ca_is_not_trusted(self):
        tenant, path = self.new_tenant(self.https)
        self.ok(self.home.capi("config", "import", path), expect_json=False)
        before = len(self.log_lines(self.https))
        for extra in ([], ["--trustedCA-file-path", self.wrong_trusted]):
            err = self.unanswered(self.home.capi("membrane", "create", "--id", "untrusted", *extra))
            self.assertTrue(err.startswith("FAILED\n"), err)
            self.assertIn("not trusted", err)
            self.assertIn('"error": "Request failed"', err)
        # A trustedCA file for another authority does not help either.
        other = self.home.file("other.json", json.dumps({"127.0.0.1:1": open(self.pki.ca_cert).read()}))
        self.unanswered(self.home.capi("membrane", "create", "--id", "untrusted", "--trustedCA-file-path", other))
        self.assertEqual(len(self.log_lines(self.https)), before)  # no request reached the service
        q = self.ok(self.home.capi("membrane", "query", "--id", "untrusted", *self.tls()))
        self.assertEqual(q["membranes"], [])

    def test_https_host_name_is_checked(self):
        """A certificate from the trusted CA, but for another name, is refused; the same service by
        a name its certificate holds (localhost) is accepted."""
        tenant, _ = self.new_tenant(self.https)
        token = token_of(tenant["capabilities"]["query"])
        ca_pem = open(self.pki.ca_cert).read()
        by_name = "cpblty://localhost:%d/#%s" % (self.https.port, token)
        trusted = self.home.file("t.json", json.dumps({"localhost:%d" % self.https.port: ca_pem}))
        self.ok(self.home.capi("membrane", "query", "--capability", by_name, "--trustedCA-file-path", trusted))

        # A server whose certificate (signed by the same CA) names elsewhere.example only.
        d = tempfile.mkdtemp(dir=self.pki_dir.name)
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        key, csr, cert, ext = (os.path.join(d, n) for n in ("k.pem", "r.csr", "c.pem", "ext.cnf"))
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=elsewhere.example")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:elsewhere.example\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.pki.ca_cert, "-CAkey", self.pki.ca_key,
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        elsewhere = type("Tls", (), {"server_cert": cert, "server_key": key})()
        server = Server(tls=elsewhere, args=server_args()).start()
        try:
            cap = "cpblty://%s/#%s" % (server.authority, token_of(server.first_tenant()["capabilities"]["query"]))
            trusted = self.home.file("t2.json", json.dumps({server.authority: ca_pem}))
            before = len(self.log_lines(server))
            err = self.unanswered(self.home.capi("membrane", "query", "--capability", cap, "--trustedCA-file-path", trusted))
            self.assertIn("not trusted", err)
            self.assertIn("mismatch", err)
            self.assertEqual(len(self.log_lines(server)), before)
        finally:
            server.stop()
            server.cleanup()

    # --- plain HTTP -----------------------------------------------------------------------------
    def test_plain_http_only_when_asked_and_only_to_loopback(self):
        tenant, path = self.new_tenant(self.plain)
        query = tenant["capabilities"]["query"]
        # HTTPS by default: a plain-HTTP service fails the handshake, with a hint.
        err = self.unanswered(self.home.capi("membrane", "query", "--capability", query, "--timeout", "5"))
        self.assertIn("plain HTTP", err)
        # Asked for: the flag, or the environment variable.
        self.ok(self.home.capi("membrane", "query", "--capability", query, "--plain-http"))
        self.ok(self.home.capi("membrane", "query", "--capability", query, env={"CAPI_PLAIN_HTTP": "1"}))
        self.assertIn("CAPI_PLAIN_HTTP", self.failed_before_sending(
            self.home.capi("membrane", "query", "--capability", query, env={"CAPI_PLAIN_HTTP": "perhaps"})))
        # Never to a non-loopback authority, whatever asks for it.
        remote = "cpblty://membrane.example.com:8080/#" + token_of(query)
        for how in (["--plain-http"], []):
            env = {} if how else {"CAPI_PLAIN_HTTP": "1"}
            err = self.failed_before_sending(self.home.capi("membrane", "query", "--capability", remote, *how, env=env))
            self.assertIn("in clear", err)
        bad_import = self.home.file("remote.json", json.dumps(
            {"id": "x", "capabilities": {k: "cpblty://10.1.2.3:80/#" + token_of(v)
                                         for k, v in tenant["capabilities"].items()}}))
        self.assertIn("in clear", self.failed_before_sending(self.home.capi("config", "import", "--plain-http", bad_import)))
        self.assertFalse(os.path.exists(self.home.credentials))

    def test_config_import_then_create_without_capability(self):
        result = self.home.capi("config", "import", "--plain-http", os.path.join(self.plain.data_dir, "first-tenant.json"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.home.credentials)).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.home.credentials).st_mode), 0o600)
        with open(self.home.credentials) as f:
            text = f.read()
        self.assertIn("profile: default", text)
        self.assertIn("plainHttp: true", text)
        membrane_id = "x-" + uuid.uuid4().hex[:8]
        m = self.ok(self.home.capi("membrane", "create", "--id", membrane_id))  # no --capability, no --plain-http
        self.assertEqual(m["id"], membrane_id)
        # The profile's plainHttp covers its own service only: the HTTPS service is still HTTPS.
        tenant, _ = self.new_tenant(self.https)
        self.ok(self.home.capi("membrane", "query", "--capability", tenant["capabilities"]["query"], *self.tls()))
        # No profile of that name: the original's message, exit 1.
        err = self.failed_before_sending(self.home.capi("membrane", "create", "--id", "y", "--profile", "nobody"))
        self.assertTrue(err.startswith('FAILED\nNo membrane "create" capability found for profile "nobody"'), err)

    def test_two_profiles(self):
        a, a_path = self.new_tenant(self.plain)
        b, b_path = self.new_tenant(self.plain)
        self.ok(self.home.capi("config", "import", "--profile", "alpha", "--plain-http", a_path), expect_json=False)
        self.ok(self.home.capi("config", "import", "--profile", "beta", "--plain-http", b_path), expect_json=False)
        # config list shows what each profile holds, never a token.
        listed = self.home.capi("config", "list")
        self.assertNotIn(b"CPBLTY1-", listed.stdout)
        listed = self.ok(listed)
        self.assertEqual(listed["file"], self.home.credentials)
        self.assertEqual(listed["profiles"], [
            {"profile": name, "tenant": t["id"], "service": self.plain.authority, "plainHttp": True,
             "capabilities": ["create", "query", "deleteSelf"]} for name, t in (("alpha", a), ("beta", b))])
        for profile in ("alpha", "beta"):
            self.ok(self.home.capi("membrane", "create", "--profile", profile, "--id", "shared"))
        self.ok(self.home.capi("membrane", "create", "--profile", "alpha", "--id", "only-alpha"))
        qa = self.ok(self.home.capi("membrane", "query", "--profile", "alpha", "--limit", "10"))
        qb = self.ok(self.home.capi("membrane", "query", "--profile", "beta", "--limit", "10"))
        self.assertEqual([m["id"] for m in qa["membranes"]], ["only-alpha", "shared"])
        self.assertEqual([m["id"] for m in qb["membranes"]], ["shared"])
        # No "default" profile was written.
        self.assertIn("default", self.failed_before_sending(self.home.capi("membrane", "query", "--plain-http")))
        # Re-importing beta with another tenant is refused: beta may hold b's only copy. Nothing
        # is written, and beta still works.
        with open(self.home.credentials, "rb") as f:
            before = f.read()
        err = self.failed_before_sending(self.home.capi("config", "import", "--profile", "beta", "--plain-http", a_path))
        self.assertEqual(err.split("\n")[0], "FAILED")
        self.assertIn('profile "beta" in %s holds the capabilities of tenant %s; nothing was written'
                      % (self.home.credentials, b["id"]), err)
        self.assertIn("--force", err)
        with open(self.home.credentials, "rb") as f:
            self.assertEqual(f.read(), before)
        qb = self.ok(self.home.capi("membrane", "query", "--profile", "beta", "--limit", "10"))
        self.assertEqual([m["id"] for m in qb["membranes"]], ["shared"])
        # The same tenant again is no replacement: written, said so.
        again = self.home.capi("config", "import", "--profile", "beta", "--plain-http", b_path)
        self.assertEqual(again.stdout.decode(), 'capi: profile "beta" written to %s (tenant %s), plain HTTP\n'
                         % (self.home.credentials, b["id"]))
        # --force replaces beta, says whose capabilities it replaced, and leaves alpha.
        forced = self.home.capi("config", "import", "--profile", "beta", "--plain-http", "--force", a_path)
        self.assertEqual(forced.returncode, 0, forced.stderr)
        self.assertEqual(forced.stdout.decode(),
                         'capi: profile "beta" written to %s (tenant %s), plain HTTP; it replaced the capabilities '
                         'of tenant %s\n' % (self.home.credentials, a["id"], b["id"]))
        qb = self.ok(self.home.capi("membrane", "query", "--profile", "beta", "--limit", "10"))
        self.assertEqual([m["id"] for m in qb["membranes"]], ["only-alpha", "shared"])
        with open(self.home.credentials) as f:
            self.assertEqual(f.read().count("profile:"), 2)

    def test_query_paging(self):
        tenant, path = self.new_tenant(self.plain)
        self.ok(self.home.capi("config", "import", "--plain-http", path), expect_json=False)
        for i in range(1, 6):
            self.ok(self.home.capi("membrane", "create", "--id", "m%d" % i))
        page = self.ok(self.home.capi("membrane", "query"))  # the service's default limit: 1
        self.assertEqual(([m["id"] for m in page["membranes"]], page["completed"]), (["m1"], False))
        page = self.ok(self.home.capi("membrane", "query", "--limit", "2"))
        self.assertEqual(([m["id"] for m in page["membranes"]], page["completed"]), (["m1", "m2"], False))
        page = self.ok(self.home.capi("membrane", "query", "--limit", "2", "--last-id", "m2"))
        self.assertEqual(([m["id"] for m in page["membranes"]], page["completed"]), (["m3", "m4"], False))
        page = self.ok(self.home.capi("membrane", "query", "--limit", "2", "--last-id", "m4"))
        self.assertEqual(([m["id"] for m in page["membranes"]], page["completed"]), (["m5"], True))
        page = self.ok(self.home.capi("membrane", "query", "--id", "m3"))
        self.assertEqual([m["id"] for m in page["membranes"]], ["m3"])
        before = len(self.log_lines(self.plain))
        for bad in ("0", "-3", "ten"):
            self.assertIn("--limit", self.failed_before_sending(self.home.capi("membrane", "query", "--limit", bad)))
        self.assertEqual(len(self.log_lines(self.plain)), before)

    def test_query_all_pages_through_every_membrane(self):
        # More membranes than one page holds (1000): --all asks for the second page itself.
        tenant, path = self.new_tenant(self.plain)
        self.ok(self.home.capi("config", "import", "--plain-http", path), expect_json=False)
        create = token_of(tenant["capabilities"]["create"])
        conn = self.plain.connection()
        ids = ["m%04d" % i for i in range(1003)]
        for membrane_id in ids:
            status, answer, _ = self.plain.call(create, body={"id": membrane_id}, conn=conn)
            self.assertEqual(status, 201, answer)
        conn.close()
        before = len(self.log_lines(self.plain))
        listed = self.ok(self.home.capi("membrane", "query", "--all"))
        self.assertEqual(list(listed), ["membranes", "completed"])
        self.assertEqual([m["id"] for m in listed["membranes"]], ids)
        self.assertTrue(listed["completed"])
        self.assertEqual(len(self.log_lines(self.plain)) - before, 2)  # two pages of up to 1000
        after = self.ok(self.home.capi("membrane", "query", "--all", "--last-id", "m0999"))
        self.assertEqual([m["id"] for m in after["membranes"]], ["m1000", "m1001", "m1002"])
        for clash in (["--limit", "5"], ["--id", "m0001"]):
            self.assertIn("excludes", self.failed_before_sending(self.home.capi("membrane", "query", "--all", *clash)))

    def test_ids_with_spaces_and_slashes_round_trip(self):
        tenant, path = self.new_tenant(self.plain)
        self.ok(self.home.capi("config", "import", "--plain-http", path), expect_json=False)
        odd = "a b/c&d=e+f?"
        self.assertEqual(self.ok(self.home.capi("membrane", "create", "--id", odd))["id"], odd)
        page = self.ok(self.home.capi("membrane", "query", "--id", odd))
        self.assertEqual([m["id"] for m in page["membranes"]], [odd])

    # --- export and invoke ----------------------------------------------------------------------
    def test_export_options_reach_the_upstream(self):
        tenant, path = self.new_tenant(self.plain)
        _, m = self.membrane(self.plain, path, "exports")
        export = m["capabilities"]["export"]
        cap = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", export,
                                     "--uri", self.upstream.url("/echo?fixed=1"), "--allow-query",
                                     "--method", "patch", "--header", "X-One: 1", "--header", "X-Url: http://a:1/",
                                     "--timeout-ms", "5000", "--tls-reject-unauthorized", "false"))["capability"]
        echo = json.loads(self.ok(self.home.capi("invoke", "--plain-http", "--capability", cap,
                                                 "--path", "/ignored?asked=2"), expect_json=False))
        self.assertEqual(echo["method"], "PATCH")
        self.assertEqual(echo["path"], "/echo?fixed=1&asked=2")
        self.assertIn(["X-One", "1"], echo["headers"])
        self.assertIn(["X-Url", "http://a:1/"], echo["headers"])
        # Re-export through another membrane; the re-export works the same way.
        _, m2 = self.membrane(self.plain, path, "exports-2")
        re = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", m2["capabilities"]["export"],
                                    "--capability-to-export", cap))["capability"]
        echo = json.loads(self.ok(self.home.capi("invoke", "--plain-http", "--capability", re, "--path", "/?x=y"),
                                  expect_json=False))
        self.assertEqual((echo["method"], echo["path"]), ("PATCH", "/echo?fixed=1&x=y"))
        # SigV4 and CAP1 flag sets are accepted by the service.
        for signing in (["--aws4-hmac-sha256-aws-access-key-id", "AKID", "--aws4-hmac-sha256-secret-access-key", "s3cr3t",
                         "--aws4-hmac-sha256-region", "us-east-1", "--aws4-hmac-sha256-service", "lambda"],
                        ["--cap1-hmac-sha512-key", "c2VjcmV0LWtleQ", "--cap1-hmac-sha512-key-id", "key-1"]):
            signed = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", export,
                                            "--uri", self.upstream.url("/echo"), *signing))["capability"]
            echo = json.loads(self.ok(self.home.capi("invoke", "--plain-http", "--capability", signed),
                                      expect_json=False))
            names = [k.lower() for k, _ in echo["headers"]]
            self.assertIn("authorization", names)
            self.assertIn("x-amz-date" if "lambda" in signing else "x-cap-date", names)

    def test_invoke_sends_and_receives_byte_exact(self):
        tenant, path = self.new_tenant(self.plain)
        _, m = self.membrane(self.plain, path, "bytes")
        export = m["capabilities"]["export"]

        def cap_for(p):
            return self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", export,
                                          "--uri", self.upstream.url(p)))["capability"]

        echo_cap = cap_for("/echo")
        blob = bytes(range(256)) * 40 + b"\r\n\x00end"
        data_file = self.home.file("body.bin", blob)
        cases = [
            (["--data", "@" + data_file], None, blob, "POST"),
            (["--data", "-"], blob, blob, "POST"),
            (["--data", "plain text\n"], None, b"plain text\n", "POST"),
            (["--data", "@" + data_file, "--method", "PUT"], None, blob, "PUT"),
            ([], None, b"", "GET"),
            (["-X", "DELETE"], None, b"", "DELETE"),
        ]
        import base64
        for args, stdin, body, method in cases:
            with self.subTest(args=args[:2]):
                out = self.ok(self.home.capi("invoke", "--plain-http", "--capability", echo_cap,
                                             "--header", "X-Test: 1", "-H", "Content-Type: application/x-thing",
                                             *args, stdin=stdin), expect_json=False)
                echo = json.loads(out)
                self.assertEqual(echo["method"], method)
                self.assertEqual(base64.b64decode(echo["body"]), body)
                self.assertIn(["X-Test", "1"], echo["headers"])
                self.assertIn(["Content-Type", "application/x-thing"], echo["headers"])
                record = self.upstream.requests[-1]
                self.assertEqual(record["body"], body)
                self.assertNotIn("authorization", [k.lower() for k, _ in record["headers"]])
                self.assertNotIn("x-capability-operation", [k.lower() for k, _ in record["headers"]])

        # The answer's body on stdout exactly, with a length or chunked.
        for p, expected in (("/sized/100000", b"y" * 100000), ("/big/300000", b"x" * 300000)):
            out = self.ok(self.home.capi("invoke", "--plain-http", "--capability", cap_for(p)), expect_json=False)
            self.assertEqual(out, expected)

        # -i: the status line and headers first, then the body.
        out = self.ok(self.home.capi("invoke", "--plain-http", "--capability", echo_cap, "-i"), expect_json=False)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nX-Upstream: yes", head)
        self.assertEqual(json.loads(body)["method"], "GET")

        # An error status: the body still on stdout, the status on stderr, exit 1.
        result = self.home.capi("invoke", "--plain-http", "--capability", cap_for("/status/404"))
        self.assertEqual(result.returncode, 1)
        self.assertEqual(json.loads(result.stdout), {"status": 404})
        self.assertIn("404", result.stderr.decode())

    def test_invoke_ends_its_line_on_a_terminal_only(self):
        """N-26: an answer without a final newline gets one on a terminal, so that capi's stderr
        line and the prompt start on lines of their own; a pipe still gets the bytes exactly."""
        import pty
        tenant, path = self.new_tenant(self.plain)
        _, m = self.membrane(self.plain, path, "terminal")
        cap = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", m["capabilities"]["export"],
                                     "--uri", self.upstream.url("/status/404")))["capability"]
        piped = self.home.capi("invoke", "--plain-http", "--capability", cap)
        self.assertEqual(piped.stdout, b'{"status": 404}')
        master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "CAPI_PLAIN_HTTP"}
        env["HOME"] = self.home.path
        proc = subprocess.Popen([CAPI, "invoke", "--plain-http", "--capability", cap], stdout=slave,
                                stderr=subprocess.PIPE, env=env)
        os.close(slave)
        out = b""
        while True:
            try:
                piece = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not piece:
                break
            out += piece
        os.close(master)
        err = proc.stderr.read()
        proc.stderr.close()
        self.assertEqual(proc.wait(), 1)
        self.assertEqual(out, b'{"status": 404}\r\n')  # the terminal writes LF as CR LF
        # The upstream's own answer, relayed: capi says whose it is.
        self.assertEqual(err, b"capi: the upstream answered 404 Not Found (relayed by membraned)\n")

    def test_revoke_then_invoke_fails(self):
        tenant, path = self.new_tenant(self.plain)
        _, m = self.membrane(self.plain, path, "revocable")
        cap = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", m["capabilities"]["export"],
                                     "--uri", self.upstream.url("/echo")))["capability"]
        self.ok(self.home.capi("invoke", "--plain-http", "--capability", cap), expect_json=False)
        for _ in range(2):  # a repeated revoke answers 202 again
            revoked = self.ok(self.home.capi("membrane", "revoke", "--plain-http", "--capability", m["capabilities"]["revoke"]))
            self.assertEqual(revoked, {"statusCode": 202, "message": "Accepted"})
        refused = self.home.capi("invoke", "--plain-http", "--capability", cap)
        self.invoke_refused(refused, 401)
        # membraned's own refusal, not the upstream's.
        self.assertEqual(refused.stderr, b"capi: membraned answered 401 Unauthorized\n")

    def test_delete_self(self):
        tenant, path = self.new_tenant(self.plain)
        profile, m = self.membrane(self.plain, path, "doomed")
        cap = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", m["capabilities"]["export"],
                                     "--uri", self.upstream.url("/echo")))["capability"]
        deleted = self.home.capi("membrane", "delete-self", "--profile", profile)
        self.assertEqual(self.ok(deleted), {"statusCode": 202, "message": "Accepted"})
        self.assertIn('"statusCode": 401', self.failed(self.home.capi("membrane", "query", "--profile", profile)))
        self.invoke_refused(self.home.capi("invoke", "--plain-http", "--capability", cap), 401)

    # --- grant flags: the exact request capi sends ---------------------------------------------
    def fake_service_capability(self):
        """A capability whose authority is the test's Upstream, which records every request it gets
        and answers it with 200 and a JSON echo: capi's requests, seen exactly."""
        return "cpblty://127.0.0.1:%d/#CPBLTY1-%s" % (self.upstream.port, "A" * 85 + "Q")

    def sent_to_fake_service(self, *args):
        """Runs capi against the fake service; the one request it sent."""
        before = len(self.upstream.requests)
        self.ok(self.home.capi(*args, "--plain-http", "--capability", self.fake_service_capability()))
        self.assertEqual(len(self.upstream.requests), before + 1)
        return self.upstream.requests[-1]

    def test_grant_flags_become_the_export_body(self):
        uri = self.upstream.url("/echo")
        sent = self.sent_to_fake_service(
            "membrane", "export", "--uri", uri, "--method", "POST", "--label", "partner feed",
            "--expires-at", "2099-12-31T23:59:59+02:00", "--max-uses", "100", "--rate-limit", "10/60",
            "--allow-from", "10.0.0.0/8", "--allow-from", "2001:db8::/32")
        self.assertEqual((sent["method"], sent["path"]), ("POST", "/"))
        headers = {k.lower(): v for k, v in sent["headers"]}
        self.assertEqual(headers["authorization"], "Bearer CPBLTY1-" + "A" * 85 + "Q")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(sent["body"].decode(), json.dumps(
            {"uri": uri, "method": "POST", "label": "partner feed", "expiresAt": "2099-12-31T23:59:59+02:00",
             "maxUses": 100, "rateLimit": {"requests": 10, "perSeconds": 60},
             "allowFrom": ["10.0.0.0/8", "2001:db8::/32"]}, separators=(",", ":")))

    def test_grant_flags_on_a_re_export_and_expires_in(self):
        import datetime
        partner = "cpblty://127.0.0.1:1/#CPBLTY1-" + "B" * 85 + "Q"
        start = datetime.datetime.now(datetime.timezone.utc)
        sent = self.sent_to_fake_service("membrane", "export", "--capability-to-export", partner,
                                         "--label", "for B", "--expires-in", "1h30m", "--max-uses", "5")
        end = datetime.datetime.now(datetime.timezone.utc)
        body = json.loads(sent["body"])
        self.assertEqual(list(body), ["capability", "label", "expiresAt", "maxUses"])
        self.assertEqual((body["capability"], body["label"], body["maxUses"]), (partner, "for B", 5))
        expires = datetime.datetime.strptime(body["expiresAt"].replace("Z", "+0000"),
                                             "%Y-%m-%dT%H:%M:%S.%f%z" if "." in body["expiresAt"]
                                             else "%Y-%m-%dT%H:%M:%S%z")
        span = datetime.timedelta(hours=1, minutes=30)
        self.assertLessEqual(start + span - datetime.timedelta(seconds=1), expires)
        self.assertLessEqual(expires, end + span)

    def test_grant_revoke_sends_what_membrane_revoke_sends(self):
        grant = self.sent_to_fake_service("grant", "revoke")
        membrane = self.sent_to_fake_service("membrane", "revoke")
        self.assertEqual((grant["method"], grant["path"], grant["body"]), ("GET", "/", b""))
        # The same request, but for the operation each means (contract §2).
        self.assertIn(("X-Capability-Operation", "revokeGrant"), grant["headers"])
        self.assertIn(("X-Capability-Operation", "revoke"), membrane["headers"])
        self.assertEqual([h for h in grant["headers"] if h[0] != "X-Capability-Operation"],
                         [h for h in membrane["headers"] if h[0] != "X-Capability-Operation"])
        self.assertIn(("Authorization", "Bearer CPBLTY1-" + "A" * 85 + "Q"), grant["headers"])
        # The revoke capability is required: no profile stands in for it.
        self.assertIn("--capability", self.failed_before_sending(self.home.capi("grant", "revoke", "--plain-http")))

    def test_every_subcommand_states_its_operation(self):
        """X-Capability-Operation on every request capi sends, naming what the subcommand means."""
        cap = self.fake_service_capability()
        for args, operation in ((["membrane", "create", "--id", "m"], "create"),
                                (["membrane", "query"], "query"),
                                (["membrane", "exports", "--id", "m"], "query"),
                                (["membrane", "exports", "--id", "m", "--all"], "query"),
                                (["grant", "show", "g_1"], "query"),
                                (["membrane", "export", "--uri", "https://example.com/"], "export"),
                                (["membrane", "revoke"], "revoke"),
                                (["membrane", "delete-self"], "deleteSelf"),
                                (["grant", "revoke"], "revokeGrant"),
                                (["invoke", "--data", "x"], "invoke")):
            with self.subTest(args=args):
                before = len(self.upstream.requests)
                self.home.capi(*args, "--plain-http", "--capability", cap)  # the fake's answers may not please it
                self.assertEqual(len(self.upstream.requests), before + 1)
                sent = self.upstream.requests[-1]["headers"]
                self.assertEqual(header_values(sent, "x-capability-operation"), [operation])
        # invoke's --header cannot state another one.
        self.assertIn("capi sets this header itself", self.failed_before_sending(self.home.capi(
            "invoke", "--plain-http", "--capability", cap, "--header", "X-Capability-Operation: revoke")))

    def test_a_capability_of_another_kind_changes_nothing(self):
        """N-2: export given a revoke capability, create given deleteSelf, and the other mix-ups:
        refused by the service before anything is done, and capi says so plainly (exit 1)."""
        tenant, path = self.new_tenant(self.plain)
        profile, m = self.membrane(self.plain, path, "precious")
        export, revoke = m["capabilities"]["export"], m["capabilities"]["revoke"]
        upstream_before = len(self.upstream.requests)

        err = self.failed(self.home.capi("membrane", "export", "--plain-http", "--capability", revoke,
                                         "--uri", self.upstream.url("/echo")))
        lines = err.split("\n", 2)
        self.assertEqual(lines[0], "FAILED")
        self.assertEqual(lines[1], "The capability given is a membrane's revoke capability (it revokes the membrane), "
                                   "not a membrane's export capability (it exports capabilities through the "
                                   "membrane). Nothing was done. (Use it with: capi membrane revoke)")
        self.assertEqual(json.loads(lines[2]), {"error": "Conflict", "statusCode": 409,
                                                "message": "this capability performs revoke, not export; nothing was done"})

        err = self.failed(self.home.capi("membrane", "create", "--plain-http", "--capability",
                                         tenant["capabilities"]["deleteSelf"], "--id", "b2"))
        self.assertIn("The capability given is a tenant's deleteSelf capability (it deletes the tenant and all its "
                      "membranes), not a tenant's create capability", err)
        self.assertIn("Nothing was done.", err)

        for args, given in ((["invoke", "--capability", revoke, "--data", "{}"], "a membrane's revoke capability"),
                            (["grant", "revoke", "--capability", revoke], "a membrane's revoke capability"),
                            (["membrane", "revoke", "--capability", export], "a membrane's export capability"),
                            (["membrane", "query", "--capability", tenant["capabilities"]["create"]],
                             "a tenant's create capability"),
                            (["membrane", "delete-self", "--capability", tenant["capabilities"]["query"]],
                             "a tenant's query capability")):
            with self.subTest(args=args[:2]):
                err = self.failed(self.home.capi(*args, "--plain-http"))
                self.assertTrue(err.startswith("FAILED\nThe capability given is " + given), err)
                self.assertIn("Nothing was done.", err)

        # Nothing changed: the membrane is listed and exports, what it exports invokes, the
        # tenant creates; the only request upstream is that last invocation.
        listed = self.ok(self.home.capi("membrane", "query", "--profile", profile, "--id", "precious"))
        self.assertEqual(listed["membranes"], [m])
        cap = self.ok(self.home.capi("membrane", "export", "--plain-http", "--capability", export,
                                     "--uri", self.upstream.url("/echo")))["capability"]
        self.ok(self.home.capi("invoke", "--plain-http", "--capability", cap), expect_json=False)
        self.assertEqual(len(self.upstream.requests), upstream_before + 1)
        self.ok(self.home.capi("membrane", "create", "--profile", profile, "--id", "b3"))
        refused = [l for l in self.log_lines(self.plain) if " 409 " in l]
        self.assertTrue(any("op=revoke" in l for l in refused), refused)
        self.assertTrue(any("op=deleteSelf" in l for l in refused), refused)

    def test_an_empty_capability_says_it_is_empty(self):
        err = self.failed_before_sending(self.home.capi("membrane", "export", "--plain-http", "--capability", "",
                                         "--uri", self.upstream.url("/echo")))
        self.assertTrue(err.startswith("capi: --capability is empty"), err)

    def test_bad_grant_flags_send_nothing(self):
        uri = self.upstream.url("/echo")
        cases = [
            (["--label", "two\nlines"], "--label: label must not contain control characters"),
            (["--expires-at", "2001-01-01T00:00:00Z"], "--expires-at: expiresAt must be in the future"),
            (["--expires-at", "soon"], "--expires-at: expiresAt is not an ISO 8601 date-time"),
            (["--expires-in", "90"], "--expires-in must be a duration such as 90s"),
            (["--expires-in", "0s"], "--expires-in must be longer than 0 seconds"),
            (["--expires-in", "1h", "--expires-at", "2099-01-01T00:00:00Z"], "--expires-"),
            (["--max-uses", "0"], "--max-uses must be a positive whole number"),
            (["--max-uses", "3.5"], "--max-uses must be a positive whole number"),
            (["--rate-limit", "100"], "--rate-limit must be REQUESTS/SECONDS"),
            (["--rate-limit", "10/86401"], "--rate-limit: SECONDS must be from 1 to 86400"),
            (["--allow-from", "10.0.0.0/8", "--allow-from", "not-a-range"],
             "--allow-from: allowFrom[1] is not a CIDR: not-a-range"),
        ]
        before = len(self.upstream.requests)
        for args, expected in cases:
            with self.subTest(args=args):
                err = self.failed_before_sending(self.home.capi("membrane", "export", "--plain-http", "--capability",
                                                 self.fake_service_capability(), "--uri", uri, *args))
                self.assertIn(expected, err)
        self.assertEqual(len(self.upstream.requests), before)

    # --- the inventory: membrane exports and grant show ------------------------------------------
    def grants_for_inventory(self, count=5):
        """A fresh tenant as the default profile, a membrane "inv" and `count` grants exported
        through it with capi (labels "grant 0".., maxUses 10.. on the first two): the grants' 201
        answers."""
        tenant, path = self.new_tenant(self.plain)
        self.ok(self.home.capi("config", "import", "--plain-http", path), expect_json=False)
        m = self.ok(self.home.capi("membrane", "create", "--id", "inv"))
        made = []
        for i in range(count):
            limits = ["--max-uses", str(10 + i)] if i < 2 else []
            made.append(self.ok(self.home.capi("membrane", "export", "--capability", m["capabilities"]["export"],
                                               "--uri", self.upstream.url("/echo/%d" % i), "--method", "POST",
                                               "--label", "grant %d" % i, *limits)))
        return made

    def test_exports_one_page_a_limit_and_all(self):
        made = self.grants_for_inventory()
        ids = sorted(g["id"] for g in made)
        one = self.home.capi("membrane", "exports", "--id", "inv")  # the service's default limit: 1
        page = self.ok(one)
        self.assert_pretty(one)
        self.assertEqual(set(page), {"exports", "completed"})
        self.assertEqual(([e["id"] for e in page["exports"]], page["completed"]), (ids[:1], False))
        page = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--limit", "2"))
        self.assertEqual(([e["id"] for e in page["exports"]], page["completed"]), (ids[:2], False))
        page = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--limit", "2", "--last-id", ids[1]))
        self.assertEqual(([e["id"] for e in page["exports"]], page["completed"]), (ids[2:4], False))
        page = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--limit", "2", "--last-id", ids[3]))
        self.assertEqual(([e["id"] for e in page["exports"]], page["completed"]), (ids[4:], True))

        everything = self.home.capi("membrane", "exports", "--id", "inv", "--all")
        listed = self.ok(everything)
        self.assert_pretty(everything)
        self.assertEqual(list(listed), list(page))  # the keys of a page, in the same order
        self.assertEqual(([e["id"] for e in listed["exports"]], listed["completed"]), (ids, True))
        by_id = {e["id"]: e for e in listed["exports"]}
        first = by_id[made[0]["id"]]
        self.assertEqual((first["label"], first["maxUses"], first["uses"], first["kind"], first["target"],
                          first["method"], first["revoked"]),
                         ("grant 0", 10, 0, "uri", self.upstream.url("/echo/0"), "POST", False))
        self.assertIsNone(by_id[made[4]["id"]]["maxUses"])
        # --all from a --last-id on: the rest.
        rest = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--all", "--last-id", ids[2]))
        self.assertEqual(([e["id"] for e in rest["exports"]], rest["completed"]), (ids[3:], True))
        # A membrane with no grants, or none of this id: an empty list.
        self.assertEqual(self.ok(self.home.capi("membrane", "exports", "--id", "nothing", "--all")),
                         {"exports": [], "completed": True})

    def test_exports_all_follows_the_last_id_over_many_pages(self):
        entries = [inventory_entry("g_%04d" % i, label="grant %d" % i) for i in range(2345)]
        fake = FakeInventory(entries)
        try:
            listed = self.ok(self.home.capi("membrane", "exports", "--id", "a b", "--all", "--plain-http",
                                            "--capability", fake.capability))
            self.assertEqual(listed, {"exports": entries, "completed": True})
            self.assertEqual([p for p, _ in fake.requests],
                             ["/?exportsOf=a%20b&limit=1000", "/?exportsOf=a%20b&lastId=g_0999&limit=1000",
                              "/?exportsOf=a%20b&lastId=g_1999&limit=1000"])
            self.assertEqual({a for _, a in fake.requests}, {"Bearer CPBLTY1-" + "C" * 85 + "Q"})
            table = self.ok(self.home.capi("membrane", "exports", "--id", "a b", "--all", "--table", "--plain-http",
                                           "--capability", fake.capability), expect_json=False).decode()
            lines = table.splitlines()
            self.assertEqual(len(lines), 1 + len(entries))
            self.assertTrue(lines[-1].startswith("g_2344  grant 2344  uri"), lines[-1])
        finally:
            fake.close()

    def test_exports_all_stops_at_a_page_that_fails(self):
        entries = [inventory_entry("g_%04d" % i) for i in range(2500)]
        fake = FakeInventory(entries, fail_after=2)
        try:
            err = self.failed(self.home.capi("membrane", "exports", "--id", "m", "--all", "--plain-http",
                                             "--capability", fake.capability))
            lines = err.split("\n", 2)
            self.assertEqual(lines[0], "FAILED")
            self.assertEqual(lines[1], "listing stopped at page 3 (after g_1999): try later")
            self.assertEqual(json.loads(lines[2])["statusCode"], 503)
            self.assertEqual(len(fake.requests), 3)  # nothing after the failed page
        finally:
            fake.close()

    def test_exports_table(self):
        made = self.grants_for_inventory(3)
        ids = sorted(g["id"] for g in made)
        self.assertEqual(self.ok(self.home.capi("grant", "revoke", "--plain-http", "--capability",
                                                made[1]["revoke"]))["statusCode"], 202)
        table = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--all", "--table"),
                        expect_json=False).decode()
        lines = table.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "LABEL", "KIND", "TARGET", "USES", "EXPIRES", "STATE"])
        self.assertEqual([l.split()[0] for l in lines[1:]], ids)
        rows = {l.split()[0]: l for l in lines[1:]}
        self.assertEqual(rows[made[0]["id"]].split(),
                         [made[0]["id"], "grant", "0", "uri", self.upstream.url("/echo/0"), "0/10", "-", "active"])
        self.assertEqual(rows[made[1]["id"]].split()[-1], "revoked")
        self.assertEqual(rows[made[2]["id"]].split()[-3:], ["0", "-", "active"])  # no maxUses: the uses alone
        # Aligned: every column starts where its header does.
        for name in ("LABEL", "KIND", "TARGET", "USES", "EXPIRES", "STATE"):
            at = lines[0].index(name)
            for line in lines[1:]:
                self.assertNotEqual(line[at], " ", (name, line))
                self.assertEqual(line[at - 2:at], "  ", (name, line))
        # One page of a longer listing says how to go on.
        page = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--limit", "2", "--table"),
                       expect_json=False).decode()
        self.assertEqual(page.splitlines()[1:], [lines[1], lines[2], "(more after %s: --last-id %s, or --all)" %
                                                 (ids[1], ids[1])])

    def test_grant_show(self):
        made = self.grants_for_inventory(2)
        listed = self.ok(self.home.capi("membrane", "exports", "--id", "inv", "--all"))["exports"]
        entry = next(e for e in listed if e["id"] == made[0]["id"])
        shown = self.home.capi("grant", "show", made[0]["id"])
        self.assertEqual(self.ok(shown), entry)
        self.assert_pretty(shown)
        self.assertEqual(list(self.ok(shown)), list(entry))  # the service's key order
        table = self.ok(self.home.capi("grant", "show", made[0]["id"], "--table"), expect_json=False).decode()
        lines = table.splitlines()
        self.assertEqual([l.split()[0] for l in lines],
                         ["id", "label", "membrane", "kind", "operation", "target", "method", "standsFor", "createdAt",
                          "expiresAt", "maxUses", "uses", "lastUsedAt", "rateLimit", "allowFrom", "state",
                          "revoked", "revokedAt"])
        fields = {l.split(None, 1)[0]: l.split(None, 1)[1] for l in lines}
        self.assertEqual((fields["id"], fields["label"], fields["maxUses"], fields["revoked"], fields["standsFor"]),
                         (made[0]["id"], "grant 0", "10", "no", "-"))
        self.assertEqual(len({len(l) - len(l.split(None, 1)[1]) for l in lines}), 1)  # values aligned
        # A re-export shows what it stands for; a revoked grant says so.
        partner = self.ok(self.home.capi("membrane", "create", "--id", "inv-partner"))
        re = self.ok(self.home.capi("membrane", "export", "--capability", partner["capabilities"]["export"],
                                    "--capability-to-export", made[0]["capability"]))
        self.ok(self.home.capi("grant", "revoke", "--plain-http", "--capability", re["revoke"]))
        child = self.ok(self.home.capi("grant", "show", re["id"]))
        self.assertEqual((child["kind"], child["standsFor"], child["membrane"], child["revoked"]),
                         ("reexport", made[0]["id"], "inv-partner", True))
        # No grant of that id for this tenant: exit 1, a message on stderr, nothing on stdout.
        for missing in ("g_000000000000000000000000", "not a grant"):
            err = self.failed(self.home.capi("grant", "show", missing))
            self.assertEqual(err, 'FAILED\nNo grant with id "%s" for this tenant\n' % missing)
        # Another tenant does not see it.
        other, other_path = self.new_tenant(self.plain)
        self.ok(self.home.capi("config", "import", "--profile", "other", "--plain-http", other_path),
                expect_json=False)
        self.assertIn("No grant with id", self.failed(self.home.capi("grant", "show", made[0]["id"],
                                                                     "--profile", "other")))

    def test_inventory_requests_and_refusals(self):
        fake = FakeInventory([inventory_entry("g_1", label="one")])
        try:
            shown = self.ok(self.home.capi("grant", "show", "g_1", "--plain-http", "--capability", fake.capability))
            self.assertEqual(shown, inventory_entry("g_1", label="one"))
            self.ok(self.home.capi("membrane", "exports", "--id", "m/1", "--last-id", "g_0", "--limit", "5",
                                   "--plain-http", "--capability", fake.capability))
            self.assertEqual(fake.requests, [("/?grant=g_1", "Bearer CPBLTY1-" + "C" * 85 + "Q"),
                                             ("/?exportsOf=m%2F1&lastId=g_0&limit=5",
                                              "Bearer CPBLTY1-" + "C" * 85 + "Q")])
            # Refused before anything is sent.
            for args, expected in ((["membrane", "exports", "--id", "m", "--all", "--limit", "5"], "--limit"),
                                   (["membrane", "exports", "--id", "m", "--limit", "0"], "--limit"),
                                   (["membrane", "exports"], "--id"),
                                   (["grant", "show"], "id")):
                with self.subTest(args=args):
                    self.assertIn(expected, self.failed_before_sending(self.home.capi(*args, "--plain-http", "--capability",
                                                                       fake.capability)))
            self.assertEqual(len(fake.requests), 2)
        finally:
            fake.close()
        # A service without the inventory answers something else to these parameters.
        for args in (["grant", "show", "g_1"], ["membrane", "exports", "--id", "m"],
                     ["membrane", "exports", "--id", "m", "--all"]):
            with self.subTest(args=args):
                err = self.failed(self.home.capi(*args, "--plain-http", "--capability",
                                                 self.fake_service_capability()))
                self.assertIn('has no "exports" list', err)

    # --- refusals ---------------------------------------------------------------------------------
    def test_wrong_flag_combinations_send_nothing(self):
        tenant, path = self.new_tenant(self.plain)
        profile, m = self.membrane(self.plain, path, "flags")
        export = m["capabilities"]["export"]
        other = tenant["capabilities"]["query"]
        uri = self.upstream.url("/echo")
        aws4 = ["--aws4-hmac-sha256-aws-access-key-id", "AKID", "--aws4-hmac-sha256-secret-access-key", "TOPSECRET",
                "--aws4-hmac-sha256-region", "us-east-1", "--aws4-hmac-sha256-service", "lambda"]
        cap1 = ["--cap1-hmac-sha512-key", "c2VjcmV0", "--cap1-hmac-sha512-key-id", "kid"]
        cases = [
            (["--capability-to-export", other, "--uri", uri], "--capability-to-export"),
            (["--capability-to-export", other, "--header", "X-A: b"], "--header"),
            (["--capability-to-export", other, "--method", "GET"], "--method"),
            (["--capability-to-export", other, "--allow-query"], "--allow-query"),
            (["--capability-to-export", other, "--timeout-ms", "10"], "--timeout-ms"),
            (["--capability-to-export", other, "--tls-reject-unauthorized", "false"], "--tls-reject-unauthorized"),
            (["--capability-to-export", other] + aws4, "--aws4-hmac-sha256"),
            (["--uri", uri] + aws4 + cap1, "cannot be combined"),
            (["--uri", uri] + aws4[:4], "--aws4-hmac-sha256-region"),
            (["--uri", uri] + aws4[2:], "--aws4-hmac-sha256-aws-access-key-id"),
            (["--uri", uri] + cap1[:2], "--cap1-hmac-sha512-key-id"),
            (["--uri", uri] + cap1[2:], "--cap1-hmac-sha512-key"),
            (["--header", "X-A: b"], "--uri"),
            ([], "--uri"),
            (["--uri", uri, "--header", "no colon here"], "Name: value"),
            (["--uri", "ftp://example.com/"], "--uri"),
            (["--uri", uri, "--timeout-ms", "soon"], "--timeout-ms"),
            (["--capability-to-export", "cpblty://x/#CPBLTY1-short"], "--capability-to-export"),
        ]
        before = len(self.log_lines(self.plain))
        for args, expected in cases:
            with self.subTest(args=[a for a in args if not a.startswith("cpblty")]):
                err = self.failed_before_sending(self.home.capi("membrane", "export", "--plain-http", "--capability", export, *args))
                self.assertIn(expected, err)
                self.assertNotIn("TOPSECRET", err)
                self.assertFalse(err.startswith("Traceback"))
        for args, expected in ((["membrane", "create"], "--id"),
                               (["membrane", "create", "--id", "z", "--no-such-flag"], "no-such-flag"),
                               (["membrane", "create", "--id", "z", "--capability", "not-a-capability"], "capability"),
                               (["membrane"], "needs a command: create, query"),
                               (["invoke", "--plain-http"], "--capability"),
                               (["invoke", "--plain-http", "--capability", export, "-H", "Authorization: x"],
                                "Authorization")):
            with self.subTest(args=args):
                self.assertIn(expected, self.failed_before_sending(self.home.capi(*args, "--profile", profile)))
        self.assertEqual(len(self.log_lines(self.plain)), before)  # not one request reached the service
        page = self.ok(self.home.capi("membrane", "query", "--profile", profile, "--limit", "10"))
        self.assertEqual([x["id"] for x in page["membranes"]], ["flags"])

    def test_service_errors_print_failed_and_the_error_json(self):
        tenant, path = self.new_tenant(self.plain)
        profile, m = self.membrane(self.plain, path, "dup")
        # 409: a duplicate id.
        err = self.failed(self.home.capi("membrane", "create", "--profile", profile, "--id", "dup"))
        lines = err.split("\n", 2)
        self.assertEqual(lines[0], "FAILED")
        error = json.loads(lines[2])
        self.assertEqual(error["statusCode"], 409)
        self.assertEqual(error["error"], "Conflict")
        self.assertEqual(lines[1], error["message"])
        self.assertEqual(list(error), ["error", "statusCode", "message"])  # the SDK's order
        # 401: a well-formed token the service does not know.
        bogus = "cpblty://%s/#CPBLTY1-%s" % (self.plain.authority, "A" * 85 + "Q")
        for args in (["membrane", "create", "--id", "x"], ["membrane", "query"], ["membrane", "revoke"],
                     ["membrane", "delete-self"], ["membrane", "export", "--uri", self.upstream.url("/echo")],
                     ["membrane", "exports", "--id", "dup"], ["membrane", "exports", "--id", "dup", "--all"],
                     ["grant", "show", "g_1"]):
            with self.subTest(args=args):
                err = self.failed(self.home.capi(*args, "--plain-http", "--capability", bogus))
                lines = err.split("\n", 2)
                self.assertEqual(lines[0], "FAILED")
                self.assertEqual(json.loads(lines[2])["statusCode"], 401)
        # 400 from the service (an id over 512 characters), the same format.
        err = self.failed(self.home.capi("membrane", "create", "--profile", profile, "--id", "i" * 600))
        self.assertEqual(json.loads(err.split("\n", 2)[2])["statusCode"], 400)
        # Nobody listening: a request failure, in the SDK's shape.
        dead = "cpblty://127.0.0.1:1/#" + token_of(m["capabilities"]["export"])
        err = self.unanswered(self.home.capi("membrane", "revoke", "--plain-http", "--capability", dead))
        self.assertEqual(json.loads(err.split("\n", 2)[2])["error"], "Request failed")
        self.assertIn("Connection refused (is membraned running there?)", err)

    def test_secrets_from_a_file_stdin_or_the_environment_never_reach_the_command_line(self):
        """N-13: capi is made to wait on a listener that reads its request and never answers; while
        it waits, its /proc/PID/cmdline (what ps shows) holds no secret, and the request it sent
        holds them all, so they were read."""
        import socket
        import threading
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        received = []

        def read_requests():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                data = b""
                conn.settimeout(20)
                try:
                    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                            re.search(rb"(?i)content-length: *([0-9]+)", data).group(1)):
                        piece = conn.recv(65536)
                        if not piece:
                            break
                        data += piece
                except (OSError, AttributeError):
                    pass
                received.append((conn, data))  # kept open, never answered

        threading.Thread(target=read_requests, daemon=True).start()
        token = "CPBLTY1-" + "S" * 85 + "Q"
        capability = "cpblty://127.0.0.1:%d/#%s" % (listener.getsockname()[1], token)
        secret, session, cap1 = "wJalrXUtnFEMI-secret-" + uuid.uuid4().hex, "FwoGZXIv" + uuid.uuid4().hex, \
            "c2VjcmV0" + uuid.uuid4().hex
        with open(self.pki.server_key) as f:
            key_pem = f.read()
        key_body = key_pem.strip().splitlines()[1]
        secret_file = self.home.file("aws-secret", secret + "\n")
        capability_file = self.home.file("capability", capability + "\n")
        cases = [
            ("file", ["--capability", "@" + capability_file, "--uri", "https://127.0.0.1:9/x",
                      "--aws4-hmac-sha256-aws-access-key-id", "ASIAEXAMPLE",
                      "--aws4-hmac-sha256-secret-access-key", "@" + secret_file,
                      "--aws4-hmac-sha256-session-token", "env:CAPI_TEST_SESSION",
                      "--aws4-hmac-sha256-region", "us-east-1", "--aws4-hmac-sha256-service", "lambda"],
             None, [secret, session, token]),
            ("stdin", ["--capability", "env:CAPI_TEST_CAPABILITY", "--uri", "https://127.0.0.1:9/x",
                       "--cap1-hmac-sha512-key", "-", "--cap1-hmac-sha512-key-id", "k1"],
             cap1 + "\n", [cap1, token]),
            ("tls key", ["--capability", "@" + capability_file, "--uri", "https://127.0.0.1:9/x",
                         "--tls-cert", "@" + self.pki.server_cert, "--tls-key", "@" + self.pki.server_key],
             None, [key_body, token]),
        ]
        try:
            for name, args, stdin, secrets in cases:
                with self.subTest(source=name):
                    before = len(received)
                    env = {k: v for k, v in os.environ.items() if k != "CAPI_PLAIN_HTTP"}
                    env.update(HOME=self.home.path, CAPI_TEST_SESSION=session, CAPI_TEST_CAPABILITY=capability)
                    proc = subprocess.Popen([CAPI, "membrane", "export", "--plain-http", "--timeout", "60", *args],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            env=env)
                    try:
                        if stdin:
                            proc.stdin.write(stdin.encode())
                        proc.stdin.close()
                        deadline = time.monotonic() + 30
                        while len(received) == before and time.monotonic() < deadline and proc.poll() is None:
                            time.sleep(0.05)
                        self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
                        self.assertEqual(len(received), before + 1)
                        with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                            cmdline = f.read().decode()
                        sent = received[-1][1].decode()
                        for value in secrets:
                            self.assertNotIn(value, cmdline)
                            self.assertIn(value.replace("\n", "\\n"), sent)  # read, and sent as given
                        self.assertIn("Authorization: Bearer " + token, sent)
                    finally:
                        proc.kill()
                        proc.wait()
                        proc.stdout.close()
                        proc.stderr.close()
        finally:
            listener.close()
            for conn, _ in received:
                conn.close()

    def test_secret_sources_errors(self):
        cap = self.fake_service_capability()
        base = ["membrane", "export", "--plain-http", "--capability", cap, "--uri", "https://example.com/",
                "--cap1-hmac-sha512-key-id", "k1"]
        missing = os.path.join(self.home.path, "absent")
        for args, expected in (
                (["--cap1-hmac-sha512-key", "@" + missing], "capi: --cap1-hmac-sha512-key: cannot read " + missing),
                (["--cap1-hmac-sha512-key", "env:CAPI_NOT_SET_ANYWHERE"],
                 "capi: --cap1-hmac-sha512-key: the environment variable CAPI_NOT_SET_ANYWHERE is not set"),
                (["--cap1-hmac-sha512-key", "@" + self.home.file("empty", "")],
                 "capi: --cap1-hmac-sha512-key: @%s is empty" % os.path.join(self.home.path, "empty"))):
            with self.subTest(args=args):
                before = len(self.upstream.requests)
                err = self.failed_before_sending(self.home.capi(*base, *args))
                self.assertTrue(err.startswith(expected), err)
                self.assertEqual(len(self.upstream.requests), before)
        # One flag at most reads standard input.
        err = self.failed_before_sending(self.home.capi("invoke", "--plain-http", "--capability", "-", "--data", "-",
                                         stdin=cap.encode()))
        self.assertTrue(err.startswith("capi: --capability: standard input is already read by --data"), err)

    def test_every_wait_has_a_timeout(self):
        import socket
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (the kernel does) and never answers
        try:
            port = silent.getsockname()[1]
            token = "CPBLTY1-" + "A" * 85 + "Q"
            for extra, env in (([], {}), (["--plain-http"], {})):
                # A hang would end in the subprocess timeout (an error); the message shows the
                # client's own 1 s limit fired.
                err = self.unanswered(self.home.capi("membrane", "query", "--capability",
                                                 "cpblty://127.0.0.1:%d/#%s" % (port, token), "--timeout", "1",
                                                 *extra, env=env, timeout=20))
                self.assertIn("timed out after 1 s", err)
        finally:
            silent.close()


if __name__ == "__main__":
    unittest.main()
