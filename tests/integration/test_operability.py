"""What an operator used to nginx, HAProxy or Vault expects of the process (contract §8): SIGHUP
reloads the TLS certificate and never stops the service; flags win over the environment, which
wins over the --config file; `check-config` finds what `serve` would refuse without creating
anything; the access log names the client, the request id and a 5xx's cause, in text or JSON,
without the health checks; a data directory that does not exist is refused unless --init is
given; --version names the commit. All through the real binaries."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import BINARY, Pki, Server, http_get, token_of

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CAPI = os.environ.get("CAPI_BINARY", "capi")


def without_membraned_env():
    """The environment of the test with no MEMBRANED_* variable: each test sets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MEMBRANED_")}


def run(args, env=None, cwd=None):
    return subprocess.run([BINARY] + args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=dict(without_membraned_env(), **(env or {})), cwd=cwd)


def wait_for(predicate, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def peer_certificate(port, context):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def der_of(pem_file):
    with open(pem_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class ReloadOnHangUpTest(unittest.TestCase):
    """SIGHUP: new handshakes get the certificate now in the files, open connections keep theirs,
    a pair that does not load is logged and the old one kept; the process runs on."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="membraned-hup-")
        for name in ("old", "new"):
            os.mkdir(os.path.join(self.tmp.name, name))
        self.old = Pki(os.path.join(self.tmp.name, "old"))
        self.new = Pki(os.path.join(self.tmp.name, "new"))
        # The files the service reads, renewed in place as certbot or an operator would.
        self.cert = os.path.join(self.tmp.name, "fullchain.pem")
        self.key = os.path.join(self.tmp.name, "privkey.pem")
        shutil.copy(self.old.server_cert, self.cert)
        shutil.copy(self.old.server_key, self.key)
        self.server = Server(args=["--tls-cert", self.cert, "--tls-key", self.key]).start()
        self.both = ssl.create_default_context(cafile=self.old.ca_cert)
        self.both.load_verify_locations(self.new.ca_cert)

    def tearDown(self):
        code = self.server.stop()
        self.server.cleanup()
        self.tmp.cleanup()
        self.assertEqual(code, 0)

    def hang_up_and_wait_for(self, text):
        before = self.server.stderr().count(text)
        self.server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.server.stderr().count(text) > before, repr(text) + " in the log")

    def test_new_connections_get_the_new_certificate_and_an_open_one_keeps_working(self):
        import http.client
        kept = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=10, context=self.both)
        kept.request("GET", "/healthz")
        response = kept.getresponse()
        self.assertEqual(response.status, 200)
        response.read()
        kept_socket = kept.sock
        self.assertEqual(kept_socket.getpeercert(binary_form=True), der_of(self.old.server_cert))

        shutil.copy(self.new.server_cert, self.cert)
        shutil.copy(self.new.server_key, self.key)
        self.hang_up_and_wait_for("TLS certificate reloaded")

        self.assertEqual(peer_certificate(self.server.port, self.both), der_of(self.new.server_cert))
        # A client that trusts only the new CA connects too.
        self.assertEqual(peer_certificate(self.server.port, self.new.client_context()), der_of(self.new.server_cert))
        # The keep-alive connection made before the reload still answers, on the same socket.
        kept.request("GET", "/healthz")
        response = kept.getresponse()
        self.assertEqual(response.status, 200)
        response.read()
        self.assertIs(kept.sock, kept_socket)
        self.assertEqual(kept.sock.getpeercert(binary_form=True), der_of(self.old.server_cert))
        kept.close()
        self.assertTrue(self.server.alive())

    def test_a_broken_new_pair_is_logged_and_the_old_one_still_served(self):
        # The new certificate with the old key: they do not belong together.
        shutil.copy(self.new.server_cert, self.cert)
        self.hang_up_and_wait_for("TLS reload failed")
        self.assertIn("still serving the previous certificate", self.server.stderr())
        self.assertTrue(self.server.alive())
        self.assertEqual(peer_certificate(self.server.port, self.both), der_of(self.old.server_cert))
        # A file that is not PEM at all: the same.
        with open(self.cert, "w") as f:
            f.write("not a certificate\n")
        self.hang_up_and_wait_for("TLS reload failed")
        self.assertEqual(peer_certificate(self.server.port, self.both), der_of(self.old.server_cert))
        # Fixed files are taken by the next SIGHUP.
        shutil.copy(self.new.server_cert, self.cert)
        shutil.copy(self.new.server_key, self.key)
        self.hang_up_and_wait_for("TLS certificate reloaded")
        self.assertEqual(peer_certificate(self.server.port, self.both), der_of(self.new.server_cert))


class HangUpWithoutTlsTest(unittest.TestCase):
    def test_a_hang_up_never_stops_the_service_and_sigterm_still_drains(self):
        server = Server().start()
        try:
            for times in range(1, 4):
                server.proc.send_signal(signal.SIGHUP)
                wait_for(lambda: server.stderr().count("nothing to reload") == times, "SIGHUP line %d" % times)
            self.assertTrue(server.alive())
            self.assertEqual(http_get(server.port, "/healthz")[0], 200)
            self.assertEqual(server.stop(sig=signal.SIGTERM), 0)
        finally:
            server.cleanup()


class PrecedenceTest(unittest.TestCase):
    """Flags, then MEMBRANED_* variables, then the --config file, then the defaults."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="membraned-precedence-")
        self.config = os.path.join(self.tmp.name, "membraned.toml")
        with open(self.config, "w") as f:
            f.write('authority = "from-file.example:1"\nthreads = 3\n')
        self.data_dir = os.path.join(self.tmp.name, "var")
        os.mkdir(self.data_dir)

    def tearDown(self):
        self.tmp.cleanup()

    def authority(self, args, env=None):
        out = run(["check-config", "--config", self.config, "--data-dir", self.data_dir] + args, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        return re.search(r"authority (\S+),", out.stdout).group(1)

    def test_flag_beats_environment_beats_file(self):
        self.assertEqual(self.authority([]), "from-file.example:1")
        self.assertEqual(self.authority([], {"MEMBRANED_AUTHORITY": "from-env.example:2"}), "from-env.example:2")
        self.assertEqual(self.authority(["--authority", "from-flag.example:3"],
                                        {"MEMBRANED_AUTHORITY": "from-env.example:2"}), "from-flag.example:3")
        self.assertEqual(self.authority(["--authority", "from-flag.example:3"]), "from-flag.example:3")

    def test_the_service_itself_takes_the_environment_over_the_file(self):
        # The review's case: an EnvironmentFile entry beside a toml that sets the same key.
        server = Server(args=["--config", self.config])
        server.env = dict(without_membraned_env(), MEMBRANED_AUTHORITY="from-env.example:2")
        server.start()
        try:
            self.assertEqual(server.authority, "from-env.example:2")
            uri = server.first_tenant()["capabilities"]["create"]
            self.assertTrue(uri.startswith("cpblty://from-env.example:2/#"), uri)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()

    def test_the_config_file_may_come_from_the_environment(self):
        out = run(["check-config", "--data-dir", self.data_dir], env={"MEMBRANED_CONFIG": self.config})
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("authority from-file.example:1,", out.stdout)


class CheckConfigTest(unittest.TestCase):
    """`membraned check-config` refuses what serve would refuse, names the file, the key and the
    problem, and creates nothing."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="membraned-check-")
        self.data_dir = os.path.join(self.tmp.name, "var")
        os.mkdir(self.data_dir)

    def tearDown(self):
        self.tmp.cleanup()

    def check(self, text, args=(), name="membraned.toml", env=None):
        config = os.path.join(self.tmp.name, name)
        with open(config, "w") as f:
            f.write(text)
        args = list(args)
        if "--data-dir" not in args:
            args += ["--data-dir", self.data_dir]
        out = run(["check-config", "--config", config] + args, env=env)
        return out.returncode, out.stdout, out.stderr, config

    def assert_nothing_created(self):
        self.assertEqual(os.listdir(self.data_dir), [])

    def test_the_shipped_example_is_valid_with_its_files_in_place(self):
        pki = Pki(self.tmp.name)
        with open(os.path.join(ROOT, "deploy", "membraned.toml")) as f:
            text = f.read()
        for key, value in [("tls-cert", pki.server_cert), ("tls-key", pki.server_key),
                           ("audit-log", os.path.join(self.tmp.name, "audit.log"))]:
            text, n = re.subn(r'(?m)^%s = ".*"$' % key, '%s = "%s"' % (key, value), text)
            self.assertEqual(n, 1, key)
        code, out, err, config = self.check(text)
        self.assertEqual(code, 0, err)
        self.assertIn("the configuration is valid (%s)" % config, out)
        self.assertIn("listen 0.0.0.0:443 (HTTPS)", out)
        self.assert_nothing_created()
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "audit.log")))

    def test_a_toml_syntax_error_names_the_file_and_line(self):
        code, _, err, config = self.check('authority = "m.example"\nlisten = \n')
        self.assertEqual(code, 1)
        self.assertIn(config + ":2:", err)
        self.assertIn("not valid TOML", err)
        self.assertNotIn("--listen", err)  # not blamed on a flag

    def test_a_snake_case_key_gets_its_kebab_case_name(self):
        code, _, err, config = self.check('data_dir = "/somewhere"\n')
        self.assertEqual(code, 1)
        self.assertIn(config, err)
        self.assertIn('unknown key "data_dir" (did you mean "data-dir"?)', err)
        code, _, err, _ = self.check('lisen = "127.0.0.1:1"\n')
        self.assertIn('unknown key "lisen" (did you mean "listen"?)', err)
        code, _, err, _ = self.check('completely-unknown = 1\n')
        self.assertEqual(code, 1)
        self.assertIn('unknown key "completely-unknown"', err)
        self.assertNotIn("did you mean", err)

    def test_a_section_is_refused_by_name(self):
        code, _, err, config = self.check('[serve]\nlisten = "127.0.0.1:1"\n')
        self.assertEqual(code, 1)
        self.assertIn("[serve]", err)
        self.assertIn("top level", err)

    def test_a_bad_value_from_the_file_is_blamed_on_the_file(self):
        code, _, err, config = self.check('listen = "nowhere"\n')
        self.assertEqual(code, 1)
        self.assertIn("(listen in %s)" % config, err)
        code, _, err, config = self.check('threads = 0\n')
        self.assertEqual(code, 1)
        self.assertIn(config + ": threads:", err)
        code, _, err, config = self.check('allow-upstream = ["127.0.0.0/8", "not a range"]\n')
        self.assertEqual(code, 1)
        self.assertIn("(allow-upstream in %s)" % config, err)

    def test_lists_switches_and_ini_are_read(self):
        code, out, err, _ = self.check('allow-upstream = ["127.0.0.0/8", "10.0.0.0/8"]\nmetrics = true\n'
                                       'log-format = "json"\n')
        self.assertEqual(code, 0, err)
        code, out, err, _ = self.check("; INI\nlisten=127.0.0.1:9999\nauthority=ini.example:9\n", name="m.ini")
        self.assertEqual(code, 0, err)
        self.assertIn("authority ini.example:9,", out)

    def test_tls_problems_are_found_without_a_start(self):
        pki = Pki(self.tmp.name)
        other = os.path.join(self.tmp.name, "other")
        os.mkdir(other)
        wrong = Pki(other)
        code, _, err, _ = self.check('tls-cert = "%s"\ntls-key = "%s"\n' % (pki.server_cert, wrong.server_key))
        self.assertEqual(code, 1)
        self.assertIn("--tls-key", err)
        code, _, err, _ = self.check('tls-cert = "/nonexistent/cert.pem"\ntls-key = "%s"\n' % pki.server_key)
        self.assertEqual(code, 1)
        self.assertIn("/nonexistent/cert.pem", err)
        code, _, err, _ = self.check('listen = "0.0.0.0:8443"\n')
        self.assertEqual(code, 1)
        self.assertIn("plain HTTP", err)
        self.assert_nothing_created()

    def test_a_master_key_that_is_no_key_is_found(self):
        code, _, err, _ = self.check("", env={"MEMBRANED_MASTER_KEY": "short"})
        self.assertEqual(code, 1)
        self.assertIn("MEMBRANED_MASTER_KEY", err)
        with open(os.path.join(self.data_dir, "master.key"), "w") as f:
            f.write("not a key\n")
        code, _, err, _ = self.check("")
        self.assertEqual(code, 1)
        self.assertIn(os.path.join(self.data_dir, "master.key"), err)

    def test_a_missing_data_directory_needs_init_and_is_not_made(self):
        missing = os.path.join(self.tmp.name, "not-yet")
        code, _, err, _ = self.check("", args=["--data-dir", missing])
        self.assertEqual(code, 1)
        self.assertIn(missing + " does not exist", err)
        self.assertIn("--init", err)
        code, out, err, _ = self.check("", args=["--data-dir", missing, "--init"])
        self.assertEqual(code, 0, err)
        self.assertIn("to be created", out)
        self.assertFalse(os.path.exists(missing))

    def test_an_unreadable_file_is_named(self):
        out = run(["check-config", "--config", "/nonexistent/membraned.toml", "--data-dir", self.data_dir])
        self.assertEqual(out.returncode, 1)
        self.assertIn("/nonexistent/membraned.toml", out.stderr)


class AccessLogTest(unittest.TestCase):
    """Each line carries the client, the request id the answer carried, the operation, the status,
    the duration and, for a 5xx, its cause; /healthz only with --log-health-checks."""

    def start(self, *args):
        server = Server(args=list(args)).start()
        self.addCleanup(server.cleanup)
        return server

    def exercise(self, server):
        """A create, an unknown token, a health check and an invocation whose upstream is closed:
        {what: X-Request-Id}."""
        ids = {}
        status, body, headers = server.call(token_of(server.first_tenant()["capabilities"]["create"]),
                                            body={"id": "logged"})
        self.assertEqual(status, 201)
        ids["create"] = dict(headers)["X-Request-Id"]
        export = token_of(body["capabilities"]["export"])
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.closed_port = closed.getsockname()[1]
        closed.close()  # nothing listens there now: the connection is refused
        status, body, _ = server.call(export, body={"uri": "http://127.0.0.1:%d/secret-path?q=1" % self.closed_port})
        self.assertEqual(status, 201, body)
        status, _, headers = server.call(token_of(body["capability"]), body="payload")
        self.assertEqual(status, 502)
        ids["invoke"] = dict(headers)["X-Request-Id"]
        status, _, headers = server.call("CPBLTY1-" + "A" * 43)
        self.assertEqual(status, 401)
        ids["unknown"] = dict(headers)["X-Request-Id"]
        self.assertEqual(http_get(server.port, "/healthz")[0], 200)
        return ids

    def json_lines(self, server):
        lines = [line for line in server.stderr().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]  # every line is JSON, not only the access lines

    def test_json_lines_have_the_fields_and_healthz_is_left_out(self):
        server = self.start("--log-format", "json")
        ids = self.exercise(server)
        wait_for(lambda: ids["unknown"] in server.stderr(), "the last line")
        records = {r.get("requestId"): r for r in self.json_lines(server)}
        create = records[ids["create"]]
        self.assertEqual((create["level"], create["client"], create["method"], create["status"], create["operation"]),
                         ("info", "127.0.0.1", "POST", 201, "create"))
        self.assertRegex(create["token"], r"^[0-9a-f]{12}$")
        self.assertIsInstance(create["durationMs"], float)
        self.assertRegex(create["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertNotIn("error", create)
        invoke = records[ids["invoke"]]
        self.assertEqual((invoke["level"], invoke["status"], invoke["operation"]), ("error", 502, "invoke"))
        self.assertIn("upstream 127.0.0.1:%d connect" % self.closed_port, invoke["error"])
        self.assertIn("refused", invoke["error"].lower())
        unknown = records[ids["unknown"]]
        self.assertEqual((unknown["status"], unknown["operation"]), (401, "none"))
        self.assertNotIn("token", unknown)
        everything = server.stderr()
        for secret in ("secret-path", "q=1", "payload", "A" * 43):
            self.assertNotIn(secret, everything)
        self.assertFalse([r for r in records.values() if r.get("status") == 200], "no /healthz line")

    def test_health_checks_are_logged_when_asked(self):
        server = self.start("--log-format", "json", "--log-health-checks")
        status, _, headers = server.call(None, "GET", "/healthz")
        self.assertEqual(status, 200)
        request_id = dict(headers)["X-Request-Id"]
        wait_for(lambda: request_id in server.stderr(), "the /healthz line")
        (line,) = [r for r in self.json_lines(server) if r.get("requestId") == request_id]
        self.assertEqual((line["method"], line["status"], line["operation"]), ("GET", 200, "none"))

    def test_text_lines_stay_readable_and_carry_the_same(self):
        server = self.start()
        ids = self.exercise(server)
        wait_for(lambda: ids["unknown"] in server.stderr(), "the last line")
        lines = {line.split(" id=")[1].split(" ")[0]: line for line in server.stderr().splitlines() if " id=" in line}
        self.assertRegex(lines[ids["create"]],
                         r"^\S+Z POST 201 \d+\.\d{3}ms op=create cap=[0-9a-f]{12} client=127\.0\.0\.1 id=%s$"
                         % ids["create"])
        self.assertRegex(lines[ids["invoke"]],
                         r'^\S+Z POST 502 \S+ms op=invoke cap=\S+ client=127\.0\.0\.1 id=%s '
                         r'error="upstream 127\.0\.0\.1:%d connect: [^"]+"$' % (ids["invoke"], self.closed_port))
        self.assertRegex(lines[ids["unknown"]], r" POST 401 \S+ms op=- client=127\.0\.0\.1 id=")
        self.assertNotIn("GET 200", server.stderr())


class DataDirectoryTest(unittest.TestCase):
    """A data directory that does not exist is a mistake unless --init says otherwise, and a start
    that fails leaves nothing behind."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="membraned-datadir-")
        self.missing = os.path.join(self.tmp.name, "typo", "var")

    def tearDown(self):
        self.tmp.cleanup()

    def test_serve_and_tenant_create_refuse_a_missing_directory_without_init(self):
        for command in (["serve", "--listen", "127.0.0.1:0"], ["tenant", "create"]):
            out = run(command + ["--data-dir", self.missing])
            self.assertEqual(out.returncode, 1, command)
            self.assertIn("the data directory %s does not exist" % self.missing, out.stderr)
            self.assertIn("--init", out.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "typo")), command)

    def test_a_relative_default_is_reported_as_the_folder_it_means(self):
        out = run(["tenant", "create"], cwd=self.tmp.name)  # ./var from the wrong folder
        self.assertEqual(out.returncode, 1)
        self.assertIn(os.path.join(self.tmp.name, "var"), out.stderr)
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_init_creates_it_and_the_command_says_which_directory_it_opened(self):
        out = run(["tenant", "create", "--data-dir", self.missing, "--init"])
        self.assertEqual(out.returncode, 0, out.stderr)
        tenant = json.loads(out.stdout)
        self.assertIn("tenant %s created in data directory %s (created), store SQLite %s"
                      % (tenant["id"], self.missing, os.path.join(self.missing, "membraned.db")), out.stderr)
        again = run(["tenant", "create", "--data-dir", self.missing])  # exists now: no --init needed
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("created in data directory %s, store" % self.missing, again.stderr)
        server = Server(data_dir=self.missing).start()
        try:
            self.assertIn("membraned: data directory %s, store SQLite" % self.missing, "".join(server.stdout_lines))
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()

    def test_a_start_that_fails_later_creates_nothing(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            out = run(["serve", "--init", "--data-dir", self.missing, "--listen", "127.0.0.1:%d" % taken.getsockname()[1]])
        finally:
            taken.close()
        self.assertEqual(out.returncode, 1)
        self.assertIn("cannot listen on", out.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "typo")))
        for args in (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
                     ["--audit-log", "/nonexistent/dir/audit.log"], ["--metrics-listen", "nowhere"]):
            out = run(["serve", "--init", "--data-dir", self.missing, "--listen", "127.0.0.1:0"] + args)
            self.assertEqual(out.returncode, 1, args)
            self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "typo")), args)

    def test_run_sh_prints_the_first_tenant_of_the_directory_it_was_given(self):
        data_dir = os.path.join(self.tmp.name, "given")
        proc = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "run.sh"), "--data-dir", data_dir,
                                 "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(without_membraned_env(), MEMBRANED_BIN=BINARY))
        try:
            deadline = time.monotonic() + 30
            out = ""
            while time.monotonic() < deadline and '"id"' not in out:
                line = proc.stdout.readline()
                if not line:
                    break
                out += line
            self.assertIn("The first tenant's capabilities (%s/first-tenant.json" % data_dir, out)
            printed = json.loads(out[out.index("{"):] + proc.stdout.readline())
            with open(os.path.join(data_dir, "first-tenant.json")) as f:
                self.assertEqual(printed["id"], json.load(f)["id"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0)

    def test_run_sh_prints_no_capabilities_when_the_start_fails(self):
        # A second run.sh on a port in use: its error, not the tokens of the first tenant.
        data_dir = os.path.join(self.tmp.name, "given")
        first = run(["tenant", "create", "--data-dir", data_dir, "--init"])
        self.assertEqual(first.returncode, 0, first.stderr)
        with open(os.path.join(data_dir, "first-tenant.json"), "w") as f:
            f.write(first.stdout)
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run.sh"), "--data-dir", data_dir,
                                  "--listen", "127.0.0.1:%d" % taken.getsockname()[1]], capture_output=True,
                                 text=True, timeout=60, env=dict(without_membraned_env(), MEMBRANED_BIN=BINARY))
        finally:
            taken.close()
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("cannot listen on", out.stderr)
        self.assertNotIn("first tenant's capabilities", out.stdout)
        self.assertNotIn("CPBLTY1-", out.stdout + out.stderr)


class VersionTest(unittest.TestCase):
    def test_both_binaries_name_their_version_and_commit(self):
        for binary, name in ((BINARY, "membraned"), (CAPI, "capi")):
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            m = re.fullmatch(r"%s (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(?:-dirty)?|unknown)\)\n" % name, out.stdout)
            self.assertIsNotNone(m, out.stdout)
            commit = m.group(2)
            if os.path.exists(os.path.join(ROOT, ".git")):
                self.assertNotEqual(commit, "unknown", "built from a git checkout")
                known = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", commit.split("-")[0] + "^{commit}"],
                                       capture_output=True)
                self.assertEqual(known.returncode, 0, "%s is a commit of this repository" % commit)


class UsageErrorTest(unittest.TestCase):
    """A command line that cannot be understood exits 2 (not CLI11's 103-110), naming the word
    and the one probably meant; capi the same."""

    def test_an_unknown_command_or_flag_is_named_with_the_one_meant(self):
        cases = (
            ([BINARY, "serv"], 'membraned: unknown command "serv" for "membraned"; did you mean "serve"? '
                               "(the commands: serve, check-config, tenant, admin)"),
            ([BINARY, "tenant", "list"], 'membraned: unknown command "list" for "membraned tenant" (the commands: create)'),
            ([BINARY, "version"], 'membraned: unknown command "version" for "membraned"; did you mean "--version"?'),
            ([BINARY, "--lisen", "127.0.0.1:1", "serve"], 'membraned: unknown flag "--lisen"; did you mean "--listen"?'),
            ([BINARY, "tenant"], 'membraned: "membraned tenant" needs a command: create'),
            ([BINARY, "serve", "--config"], 'membraned: "--config" needs a value'),
            ([CAPI, "membrane", "lst"], 'capi: unknown command "lst" for "capi membrane"'),
            ([CAPI, "membrane", "query", "--limti", "3"], 'capi: unknown flag "--limti"; did you mean "--limit"?'),
        )
        for args, expected in cases:
            with self.subTest(args=args[1:]):
                out = subprocess.run(args, capture_output=True, text=True, timeout=30, env=without_membraned_env())
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertTrue(out.stderr.startswith(expected), out.stderr)
                self.assertIn("Run with --help for more information.", out.stderr)
                self.assertEqual(out.stdout, "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
