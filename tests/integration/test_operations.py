"""What operators see: GET /healthz, and the Prometheus metrics on the service's listener
(--metrics) or on a listener of their own (--metrics-listen), counting what really happened."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BINARY, Pki, Server, Upstream, http_get, token_of

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$')


def parse_metrics(text):
    """{(name, frozenset of (label, value))): value} from the text exposition format."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types


class HealthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server().start()
        cls.tenant = cls.server.first_tenant()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        assert code == 0, code

    def test_healthz_answers_without_a_capability(self):
        status, ctype, body = http_get(self.server.port, "/healthz")
        self.assertEqual((status, ctype, body), (200, "application/json", '{"status":"ok","store":"sqlite"}'))
        self.assertEqual(http_get(self.server.port, "/healthz?verbose=1")[0], 200)

    def test_a_capability_is_dispatched_by_its_token_whatever_the_path(self):
        query = token_of(self.tenant["capabilities"]["query"])
        status, body, _ = self.server.call(query, "GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertIn("membranes", body)
        # A bad token on /healthz is a 401 like anywhere else, never a health answer.
        self.assertEqual(self.server.call("CPBLTY1-nope", "GET", "/healthz")[0], 401)

    def test_metrics_are_off_unless_asked_for(self):
        status, _, body = http_get(self.server.port, "/metrics")
        self.assertEqual(status, 401)
        self.assertNotIn("membraned_", body)


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream()
        cls.server = Server(args=["--metrics", "--metrics-listen", "127.0.0.1:0",
                                  "--upstream-timeout-ms", "1000"]).start()
        line = cls.server.proc.stdout.readline()
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, line
        cls.metrics_port = int(m.group(1))
        cls.tenant = cls.server.first_tenant()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        assert code == 0, code

    def scrape(self, port=None):
        status, ctype, body = http_get(port or self.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        return parse_metrics(body)

    @staticmethod
    def value(samples, name, **labels):
        return samples.get((name, frozenset(labels.items())), 0.0)

    def test_counters_follow_what_the_service_did(self):
        before, _ = self.scrape()
        create = token_of(self.tenant["capabilities"]["create"])
        status, m, _ = self.server.call(create, body={"id": "metered"})
        self.assertEqual(status, 201)
        self.assertEqual(self.server.call(create, body={"id": "metered"})[0], 409)
        export = token_of(m["capabilities"]["export"])
        ok = token_of(self.server.call(export, body={"uri": self.upstream.url("/echo")})[1]["capability"])
        refused = token_of(self.server.call(export, body={"uri": "http://127.0.0.1:1/"})[1]["capability"])
        slow = token_of(self.server.call(export, body={"uri": self.upstream.url("/slow/3000"),
                                                       "timeoutMs": 200})[1]["capability"])
        for _ in range(3):
            self.assertEqual(self.server.call(ok, "POST", body="x")[0], 200)
        self.assertEqual(self.server.call(refused, "GET")[0], 502)
        self.assertEqual(self.server.call(slow, "GET")[0], 504)
        self.assertEqual(self.server.call("CPBLTY1-bogus", "GET")[0], 401)
        self.assertEqual(self.server.call(token_of(m["capabilities"]["revoke"]), "GET")[0], 202)
        self.assertEqual(self.server.call(ok, "POST", body="x")[0], 401)

        after, types = self.scrape()
        for name, kind in [("membraned_requests_total", "counter"),
                           ("membraned_invocation_duration_seconds", "histogram"),
                           ("membraned_upstream_duration_seconds", "histogram"),
                           ("membraned_upstream_errors_total", "counter"),
                           ("membraned_revocations_total", "counter"),
                           ("membraned_open_connections", "gauge")]:
            self.assertEqual(types.get(name), kind, name)

        def delta(name, **labels):
            return self.value(after, name, **labels) - self.value(before, name, **labels)

        self.assertEqual(delta("membraned_requests_total", operation="create", code="201"), 1)
        self.assertEqual(delta("membraned_requests_total", operation="create", code="409"), 1)
        self.assertEqual(delta("membraned_requests_total", operation="export", code="201"), 3)
        self.assertEqual(delta("membraned_requests_total", operation="invoke", code="200"), 3)
        self.assertEqual(delta("membraned_requests_total", operation="invoke", code="502"), 1)
        self.assertEqual(delta("membraned_requests_total", operation="invoke", code="504"), 1)
        self.assertEqual(delta("membraned_requests_total", operation="none", code="401"), 2)
        self.assertEqual(delta("membraned_requests_total", operation="revoke", code="202"), 1)
        self.assertEqual(delta("membraned_revocations_total", kind="membrane"), 1)
        self.assertEqual(delta("membraned_revocations_total", kind="tenant"), 0)
        self.assertEqual(delta("membraned_upstream_errors_total", kind="connect"), 1)
        self.assertEqual(delta("membraned_upstream_errors_total", kind="timeout"), 1)
        # Every invocation that got as far as the upstream is timed, failed ones included; the
        # upstream's time is counted for the answers that came.
        self.assertEqual(delta("membraned_invocation_duration_seconds_count"), 5)
        self.assertEqual(delta("membraned_upstream_duration_seconds_count"), 3)
        self.assertGreaterEqual(delta("membraned_invocation_duration_seconds_sum"), 0.2)  # the 504 waited 200 ms
        self.assertEqual(delta("membraned_invocation_duration_seconds_bucket", le="+Inf"), 5)
        self.assertGreaterEqual(self.value(after, "membraned_open_connections"), 1)

    def test_delete_self_counts_as_a_tenant_revocation(self):
        before, _ = self.scrape()
        out = subprocess.run([BINARY, "tenant", "create", "--data-dir", self.server.data_dir,
                              "--authority", self.server.authority], check=True, capture_output=True, text=True)
        caps = json.loads(out.stdout)["capabilities"]
        self.assertEqual(self.server.call(token_of(caps["deleteSelf"]), "GET")[0], 202)
        after, _ = self.scrape()
        self.assertEqual(self.value(after, "membraned_revocations_total", kind="tenant") -
                         self.value(before, "membraned_revocations_total", kind="tenant"), 1)

    def test_the_process_and_the_build_are_described(self):
        # What Prometheus users expect of any exporter: the process's own figures, and the build.
        samples, types = self.scrape()
        version = subprocess.run([BINARY, "--version"], capture_output=True, text=True, check=True).stdout
        m = re.fullmatch(r"membraned (\S+) \(commit (\S+)\)\n", version)
        self.assertIsNotNone(m, version)
        self.assertEqual(self.value(samples, "membraned_build_info", version=m.group(1), commit=m.group(2)), 1)
        with open("/proc/%d/status" % self.server.proc.pid) as f:
            rss_kb = int(re.search(r"\nVmRSS:\s+(\d+) kB", f.read()).group(1))
        rss = self.value(samples, "process_resident_memory_bytes")
        self.assertGreater(rss, rss_kb * 1024 / 2)  # the same process's figure, read a moment apart
        self.assertLess(rss, rss_kb * 1024 * 2)
        self.assertGreater(self.value(samples, "process_virtual_memory_bytes"), rss)
        fds = len(os.listdir("/proc/%d/fd" % self.server.proc.pid))
        self.assertTrue(abs(self.value(samples, "process_open_fds") - fds) <= 4, (fds, samples))
        self.assertGreater(self.value(samples, "process_max_fds"), 0)
        started = self.value(samples, "process_start_time_seconds")
        self.assertTrue(time.time() - 600 < started <= time.time() + 1, started)
        self.assertEqual(types["process_cpu_seconds_total"], "counter")
        self.assertGreater(self.value(samples, "process_cpu_seconds_total"), 0)

    def test_the_resolution_cache_says_how_it_serves(self):
        create = token_of(self.tenant["capabilities"]["create"])
        status, m, _ = self.server.call(create, body={"id": "cached"})
        self.assertEqual(status, 201)
        export = token_of(m["capabilities"]["export"])
        ok = token_of(self.server.call(export, body={"uri": self.upstream.url("/echo")})[1]["capability"])
        before, types = self.scrape()
        for _ in range(3):
            self.assertEqual(self.server.call(ok, "POST", body="x")[0], 200)
        after, _ = self.scrape()

        def delta(name, **labels):
            return self.value(after, name, **labels) - self.value(before, name, **labels)

        self.assertEqual(types.get("membraned_resolution_cache_lookups_total"), "counter")
        self.assertGreaterEqual(delta("membraned_resolution_cache_lookups_total", result="miss"), 1)
        self.assertGreaterEqual(delta("membraned_resolution_cache_lookups_total", result="hit"), 2)
        self.assertGreaterEqual(self.value(after, "membraned_resolution_cache_entries"), 1)
        self.assertGreater(self.value(after, "membraned_resolution_cache_bytes"), 0)
        self.assertEqual(self.value(after, "membraned_resolution_cache_max_bytes"), 64 * 1024 * 1024)

    def test_without_a_resolution_cache_every_lookup_misses(self):
        server = Server(args=["--metrics", "--resolution-cache-mb", "0"]).start()
        try:
            caps = server.first_tenant()["capabilities"]
            create = token_of(caps["create"])
            m = server.call(create, body={"id": "uncached"})[1]
            export = token_of(m["capabilities"]["export"])
            ok = token_of(server.call(export, body={"uri": self.upstream.url("/echo")})[1]["capability"])
            for _ in range(3):
                self.assertEqual(server.call(ok, "POST", body="x")[0], 200)
            samples, _ = self.scrape(server.port)
            self.assertEqual(self.value(samples, "membraned_resolution_cache_lookups_total", result="hit"), 0)
            self.assertGreaterEqual(self.value(samples, "membraned_resolution_cache_lookups_total", result="miss"), 5)
            self.assertEqual(self.value(samples, "membraned_resolution_cache_entries"), 0)
            self.assertEqual(self.value(samples, "membraned_resolution_cache_max_bytes"), 0)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()

    def test_the_main_listener_serves_metrics_with_the_flag(self):
        samples, _ = self.scrape(self.server.port)
        self.assertIn(("membraned_open_connections", frozenset()), samples)

    def test_the_metrics_listener_serves_nothing_else(self):
        status, _, body = http_get(self.metrics_port, "/")
        self.assertEqual(status, 404)
        self.assertEqual(http_get(self.metrics_port, "/healthz")[:2], (200, "application/json"))
        # A capability sent to the metrics listener is not dispatched: no membrane appears.
        create = token_of(self.tenant["capabilities"]["create"])
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        conn.request("POST", "/", body='{"id":"via-metrics-port"}', headers={"Authorization": "Bearer " + create})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        self.assertEqual(resp.status, 404)
        query = token_of(self.tenant["capabilities"]["query"])
        status, body, _ = self.server.call(query, "GET", "/?id=via-metrics-port")
        self.assertEqual((status, body["membranes"]), (200, []))


class DeployExamplesTest(unittest.TestCase):
    def test_the_example_config_file_is_what_serve_reads(self):
        # deploy/membraned.toml as shipped, with only its files and ports pointed at this test.
        with tempfile.TemporaryDirectory(prefix="membraned-deploy-") as tmp:
            pki = Pki(tmp)
            with open(os.path.join(ROOT, "deploy", "membraned.toml")) as f:
                text = f.read()
            for key, value in [("tls-cert", pki.server_cert), ("tls-key", pki.server_key),
                               ("metrics-listen", "127.0.0.1:0"), ("audit-log", os.path.join(tmp, "audit.log"))]:
                text, n = re.subn(r'(?m)^%s = ".*"$' % key, '%s = "%s"' % (key, value), text)
                self.assertEqual(n, 1, key)
            config = os.path.join(tmp, "membraned.toml")
            with open(config, "w") as f:
                f.write(text)
            # The harness adds --listen 127.0.0.1:0 and --data-dir; flags win over the file.
            server = Server(args=["--config", config]).start()
            try:
                self.assertIn("listening on https://", "".join(server.stdout_lines))
                self.assertEqual(server.authority, "membrane.example.com")
                uri = server.first_tenant()["capabilities"]["create"]
                self.assertTrue(uri.startswith("cpblty://membrane.example.com/#CPBLTY1-"), uri)
                self.assertIn("metrics on http://127.0.0.1:", server.proc.stdout.readline())
            finally:
                self.assertEqual(server.stop(), 0)
                server.cleanup()


class StartupChecksTest(unittest.TestCase):
    """Mistakes in the operator's settings stop the start with a clear message."""

    def serve(self, args, env=None):
        with tempfile.TemporaryDirectory(prefix="membraned-start-") as tmp:
            return self.serve_in(tmp, args, env)

    def serve_in(self, tmp, args, env=None):
        proc = subprocess.run([BINARY, "serve", "--data-dir", os.path.join(tmp, "var"), "--listen", "127.0.0.1:0"] + args,
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, **(env or {})))
        return proc.returncode, proc.stderr

    def test_an_unknown_config_key_is_an_error_not_a_silent_default(self):
        with tempfile.TemporaryDirectory(prefix="membraned-start-") as tmp:
            config = os.path.join(tmp, "c.toml")
            with open(config, "w") as f:
                f.write('data_dir = "/somewhere"\n')  # a typo of data-dir
            code, err = self.serve_in(tmp, ["--config", config])
            self.assertNotEqual(code, 0)
            self.assertIn("data_dir", err)

    def test_an_authority_that_makes_unparsable_uris_is_refused(self):
        for bad in ("bad host/x", "a", "x#y"):
            code, err = self.serve(["--authority", bad])
            self.assertEqual(code, 1, bad)
            self.assertIn("--authority", err)
        with tempfile.TemporaryDirectory(prefix="membraned-start-") as tmp:
            proc = subprocess.run([BINARY, "tenant", "create", "--data-dir", os.path.join(tmp, "var"),
                                   "--authority", "bad host/x"], capture_output=True, text=True, timeout=30)
            self.assertEqual(proc.returncode, 1)
            self.assertFalse(os.path.exists(os.path.join(tmp, "var")), "nothing is created for a refused start")

    def test_an_existing_database_without_its_key_is_refused_and_no_stray_key_is_made(self):
        key = "A" * 43 + "="
        with tempfile.TemporaryDirectory(prefix="membraned-start-") as tmp:
            server = Server(data_dir=os.path.join(tmp, "var"), env={"MEMBRANED_MASTER_KEY": key}).start()
            self.assertEqual(server.stop(), 0)
            server.cleanup()
            env = {k: v for k, v in os.environ.items() if k != "MEMBRANED_MASTER_KEY"}
            proc = subprocess.run([BINARY, "serve", "--data-dir", os.path.join(tmp, "var"), "--listen", "127.0.0.1:0"],
                                  capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("MEMBRANED_MASTER_KEY", proc.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "var", "master.key")))
            # With the key again, everything is there.
            again = Server(data_dir=os.path.join(tmp, "var"), env={"MEMBRANED_MASTER_KEY": key}).start()
            self.assertEqual(again.stop(), 0)
            again.cleanup()

    def test_an_authority_no_client_can_reach_is_warned_about(self):
        # Listening on every interface without --authority (the container's set-up) writes the
        # unspecified address into every capability URI.
        warning = "WARNING: capability URIs will name %s, which no client can connect to"
        server = Server(args=["--listen", "0.0.0.0:0", "--allow-plain-http"]).start()
        try:
            authority = "0.0.0.0:%d" % server.port
            self.assertEqual(server.authority, authority)
            self.assertTrue(server.first_tenant()["capabilities"]["create"].startswith("cpblty://%s/#" % authority))
            self.assertIn(warning % authority, server.stderr())
            self.assertIn("--authority (MEMBRANED_AUTHORITY)", server.stderr())
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()
        # Given the address clients use, nothing to warn about; the same for loopback.
        for args in (["--listen", "0.0.0.0:0", "--allow-plain-http", "--authority", "membrane.example.com:8080"], []):
            server = Server(args=args).start()
            try:
                self.assertNotIn("WARNING", server.stderr(), args)
            finally:
                self.assertEqual(server.stop(), 0)
                server.cleanup()
        # An explicit unspecified authority, and `tenant create` with the container's environment.
        with tempfile.TemporaryDirectory(prefix="membraned-start-") as tmp:
            server = Server(data_dir=os.path.join(tmp, "var"), args=["--authority", "[::]:8443"]).start()
            try:
                self.assertIn(warning % "[::]:8443", server.stderr())
            finally:
                self.assertEqual(server.stop(), 0)
                server.cleanup()
            proc = subprocess.run([BINARY, "tenant", "create", "--data-dir", os.path.join(tmp, "var")],
                                  capture_output=True, text=True, timeout=30,
                                  env=dict(os.environ, MEMBRANED_LISTEN="0.0.0.0:8080"))
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn(warning % "0.0.0.0:8080", proc.stderr)
            self.assertTrue(json.loads(proc.stdout)["capabilities"]["create"].startswith("cpblty://0.0.0.0:8080/#"))

    def test_a_host_name_to_listen_on_is_resolved_and_names_the_authority(self):
        # As nginx and HAProxy accept `listen localhost:8080`.
        server = Server(args=["--listen", "localhost:0"]).start()
        try:
            self.assertEqual(server.authority, "localhost:%d" % server.port)
            self.assertTrue(server.first_tenant()["capabilities"]["create"].startswith("cpblty://localhost:%d/#"
                                                                                        % server.port))
            self.assertRegex("".join(server.stdout_lines), r"listening on http://(127\.0\.0\.1|\[::1\]):%d "
                             % server.port)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()

    def test_an_interrupt_drains_and_exits_0(self):
        # SIGHUP reloads instead (test_operability).
        server = Server().start()
        try:
            self.assertEqual(server.stop(sig=signal.SIGINT), 0)
        finally:
            server.cleanup()

    def test_an_ipv6_listen_address_is_printed_in_brackets(self):
        try:
            socket.create_server(("::1", 0), family=socket.AF_INET6).close()
        except OSError:
            self.skipTest("no IPv6 loopback on this machine")
        server = Server(args=["--listen", "[::1]:0"]).start()
        try:
            line = "".join(server.stdout_lines)
            self.assertRegex(line, r"listening on http://\[::1\]:\d+ \(authority \[::1\]:\d+\)")
            self.assertEqual(server.authority, "[::1]:%d" % server.port)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
