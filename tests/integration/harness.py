"""Starts real membraned processes on loopback ports and talks to them over real sockets.

Standard library only, so the test set-up needs nothing beyond python3 and openssl (and, for the
PostgreSQL store, Debian's postgresql: psql and tests/support/pg_cluster.sh).
"""
import base64
import glob
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid

BINARY = os.environ.get("MEMBRANED_BINARY", "membraned")
LISTENING = re.compile(r"listening on (https?)://[^ ]+:(\d+) \(authority ([^)]+)\)")


def token_of(uri):
    """The CPBLTY1-... part of a capability URI."""
    return uri.split("#", 1)[1]


def header_values(headers, name):
    """The values of the header `name` (in any case) among (name, value) pairs, in order."""
    return [v for k, v in headers if k.lower() == name.lower()]


def metric_value(text, name, labels=""):
    """The sample `name{labels}` (labels as written, e.g. 'reason="rate"') of a Prometheus text
    exposition, or None when there is none."""
    pattern = r"^%s%s ([0-9.e+-]+)$" % (re.escape(name), r"\{%s\}" % re.escape(labels) if labels else "")
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


def http_get(port, path, headers=None):
    """A plain GET on loopback without a capability: (status, Content-Type, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), body.decode()


def rss_kib(pid):
    """The resident memory of a process, in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for process %d" % pid)


def new_master_key():
    """A master key as MEMBRANED_MASTER_KEY takes it: 32 random bytes in base64."""
    return base64.b64encode(os.urandom(32)).decode()


class Server:
    """One membraned serve process with its own data directory."""

    def __init__(self, data_dir=None, args=(), env=None, tls=None, allow_loopback_upstreams=True, prefix=(),
                 store=None, master_key=None):
        self.tmp = None
        if data_dir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="membraned-it-")
            data_dir = os.path.join(self.tmp.name, "var")
        self.data_dir = data_dir
        self.args = list(args)
        # A store URL (--store), e.g. a PostgreSQL database several instances share; they then need
        # the same master key, given as MEMBRANED_MASTER_KEY. None: SQLite in the data directory.
        self.store = store
        if store:
            self.args += ["--store", store]
        self.env = dict(os.environ, **(env or {}))
        if master_key:
            self.env["MEMBRANED_MASTER_KEY"] = master_key
        self.tls = tls  # a Pki, or None for plain HTTP
        # The tests' upstreams listen on loopback, which contract §10 closes unless the operator
        # opens it.
        self.allow_loopback_upstreams = allow_loopback_upstreams
        self.prefix = list(prefix)  # a command that runs membraned (e.g. in its own mount namespace)
        self.proc = None
        self.port = None
        self.stderr_path = None

    def start(self, timeout=20):
        self.spawn()
        return self.wait_started(timeout)

    def spawn(self):
        """Starts the process without waiting for it to listen (several may then start at once)."""
        # --init: the tests start on fresh directories (serve refuses a missing one without it).
        cmd = self.prefix + [BINARY, "serve", "--data-dir", self.data_dir, "--init", "--threads", "2"]
        if "--listen" not in self.args:
            cmd += ["--listen", "127.0.0.1:0"]
        if self.tls:
            cmd += ["--tls-cert", self.tls.server_cert, "--tls-key", self.tls.server_key]
        if self.allow_loopback_upstreams:
            cmd += ["--allow-upstream", "127.0.0.0/8"]
        cmd += self.args
        os.makedirs(os.path.dirname(os.path.abspath(self.data_dir)), exist_ok=True)
        self.stderr_path = os.path.abspath(self.data_dir) + ".stderr.log"
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr_file, env=self.env, text=True)
        return self

    def wait_started(self, timeout=20):
        """Reads stdout up to the "listening on" line."""
        deadline = time.monotonic() + timeout
        self.stdout_lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.stdout.close()
                raise RuntimeError("membraned exited early (%s): %s" % (self.proc.wait(), self.stderr()))
            self.stdout_lines.append(line)
            m = LISTENING.search(line)
            if m:
                self.port = int(m.group(2))
                self.authority = m.group(3)
                return self
        raise RuntimeError("membraned did not start: " + self.stderr())

    def stderr(self):
        self.stderr_file.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def first_tenant(self):
        with open(os.path.join(self.data_dir, "first-tenant.json")) as f:
            return json.load(f)

    def wrote_first_tenant(self):
        """Whether this instance made the first tenant (with a shared store, only one does)."""
        return os.path.exists(os.path.join(self.data_dir, "first-tenant.json"))

    def tenant_create(self, authority=None):
        """`membraned tenant create` on this instance's store, key and data directory: the new
        tenant's JSON ({"id", "capabilities": {"create", "query", "deleteSelf"}})."""
        cmd = [BINARY, "tenant", "create", "--data-dir", self.data_dir,
               "--authority", authority or self.authority]
        if self.store:
            cmd += ["--store", self.store]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("membraned tenant create failed (%d): %s" % (out.returncode, out.stderr))
        return json.loads(out.stdout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        if self.proc and self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        if getattr(self, "stderr_file", None):
            self.stderr_file.close()
        if self.tmp:
            self.tmp.cleanup()

    def connection(self, timeout=10):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls.client_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, token, method="POST", path="/", body=None, headers=None, conn=None):
        """One request; returns (status, parsed JSON body or raw text, response headers)."""
        own = conn is None
        conn = conn or self.connection()
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        if own:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, parsed, resp.getheaders()

    def raw_socket(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if self.tls:
            s = self.tls.client_context().wrap_socket(s, server_hostname="localhost")
        return s


class Pki:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with openssl."""

    def __init__(self, directory):
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self.server_cert = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server.key")
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2", "-subj", "/CN=membraned test CA")
        csr = os.path.join(directory, "server.csr")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.server_key, "-out", csr, "-subj", "/CN=localhost")
        ext = os.path.join(directory, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
            "-out", self.server_cert, "-days", "2", "-extfile", ext)

    def client_context(self, **versions):
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        for k, v in versions.items():
            setattr(ctx, k, v)
        return ctx


class Upstream:
    """A local upstream for invocations: records every request it gets and answers by path.

    /echo...        200 with JSON {method, path, headers, body (base64)}
    /status/N       status N with a small JSON body
    /big/N          N bytes, streamed in 64 KiB chunks with chunked encoding
    /sized/N        N bytes with Content-Length
    /slow/MS        waits MS milliseconds, then answers 200
    /drop           closes the connection without answering
    /garbage        answers bytes that are not HTTP
    """

    def __init__(self, tls=None, require_client_cert=False):
        import base64
        import http.server
        import threading

        outer = self
        self.requests = []
        self.gate = threading.Event()  # "/gated": the rest of the body waits for it
        self.gate_opened = None

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                body = self._body()
                record = {"method": self.command, "path": self.path, "headers": list(self.headers.items()),
                          "body": body, "peer": self.client_address}
                outer.requests.append(record)
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[0] == "status":
                    self._send(int(parts[1]), json.dumps({"status": int(parts[1])}).encode())
                elif parts[0] == "big":
                    n = int(parts[1])
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * 65536
                    sent = 0
                    while sent < n:
                        piece = chunk[: min(65536, n - sent)]
                        self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                        sent += len(piece)
                    self.wfile.write(b"0\r\n\r\n")
                elif parts[0] == "sized":
                    self._send(200, b"y" * int(parts[1]), "application/octet-stream")
                elif parts[0] == "slow":
                    time.sleep(int(parts[1]) / 1000.0)
                    self._send(200, b'{"slow":true}')
                elif parts[0] in ("stallbody", "midstall"):
                    # The header (announcing 10 bytes) at once; the body after a pause, in whole
                    # ("stallbody") or after its first 4 bytes ("midstall").
                    self.send_response(200)
                    self.send_header("Content-Length", "10")
                    self.end_headers()
                    if parts[0] == "midstall":
                        self.wfile.write(b"0123")
                    self.wfile.flush()
                    time.sleep(int(parts[1]) / 1000.0)
                    try:
                        self.wfile.write(b"0123456789"[4 if parts[0] == "midstall" else 0:])
                    except OSError:
                        pass
                elif parts[0] == "gated":
                    # 4 bytes of 10 at once; the rest only once the test opens the gate, which it
                    # can do only after those 4 bytes reached it through membraned.
                    self.send_response(200)
                    self.send_header("Content-Length", "10")
                    self.end_headers()
                    self.wfile.write(b"0123")
                    self.wfile.flush()
                    outer.gate_opened = outer.gate.wait(20)
                    self.wfile.write(b"456789")
                elif parts[0] == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif parts[0] == "garbage":
                    self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
                    self.close_connection = True
                else:
                    payload = {"method": self.command, "path": self.path,
                               "headers": list(self.headers.items()),
                               "body": base64.b64encode(body).decode()}
                    self._send(200, json.dumps(payload).encode(), extra=[("X-Upstream", "yes"),
                                                                         ("Connection", "X-Hop"), ("X-Hop", "drop me")])

            def _send(self, status, payload, ctype="application/json", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.server_cert, tls.server_key)
            if require_client_cert:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(tls.ca_cert)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/echo"):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


PG_CLUSTER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support", "pg_cluster.sh")


def _pg_program(name):
    """A PostgreSQL client program: the newest /usr/lib/postgresql/*/bin one, else the PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name),
                   key=lambda p: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p)])
    return found[-1] if found else name


class PgCluster:
    """A throwaway PostgreSQL cluster made by tests/support/pg_cluster.sh (initdb + pg_ctl on a
    free loopback port, trust authentication): the one the ctest fixture pg_cluster shares through
    MEMBRANED_TEST_PG_DIR (shared()), or one of the test's own that it may halt and resume
    (private(); stop() it in a cleanup)."""

    def __init__(self, directory, own=False):
        self.dir = directory
        self.own = own
        with open(os.path.join(directory, "url")) as f:
            self.url = f.read().strip()  # postgresql://postgres@127.0.0.1:PORT/postgres

    @classmethod
    def shared(cls):
        directory = os.environ.get("MEMBRANED_TEST_PG_DIR")
        if not directory or not os.path.exists(os.path.join(directory, "url")):
            # Never skipped: the ctest fixture pg_cluster starts it (tests/CMakeLists.txt).
            raise RuntimeError("MEMBRANED_TEST_PG_DIR must name a running cluster (bash %s start DIR)"
                               % PG_CLUSTER_SCRIPT)
        return cls(directory)

    @classmethod
    def private(cls):
        tmp = tempfile.TemporaryDirectory(prefix="membraned-pg-own-")
        try:
            cls._script("start", tmp.name)
        except Exception:
            cls._script("stop", tmp.name, check=False)
            tmp.cleanup()
            raise
        cluster = cls(tmp.name, own=True)
        cluster.tmp = tmp
        return cluster

    @staticmethod
    def _script(command, directory, check=True):
        out = subprocess.run(["bash", PG_CLUSTER_SCRIPT, command, directory], capture_output=True, text=True,
                             timeout=180)
        if check and out.returncode != 0:
            raise RuntimeError("pg_cluster.sh %s failed (%d): %s" % (command, out.returncode, out.stderr))
        return out

    def halt(self):
        """Stops the server (pg_ctl stop -m fast), keeping the data: an outage."""
        self._script("halt", self.dir)

    def resume(self):
        self._script("resume", self.dir)

    def stop(self):
        """Stops the cluster and removes its data (a private one only; nothing when already stopped)."""
        if self.own and getattr(self, "tmp", None):
            self._script("stop", self.dir, check=False)
            self.tmp.cleanup()
            self.tmp = None

    def database_url(self, name):
        return self.url.rsplit("/", 1)[0] + "/" + name

    def create_database(self, prefix="membraned_it"):
        """A new, empty database on the cluster: its URL."""
        name = "%s_%s" % (prefix, uuid.uuid4().hex[:12])
        self.psql(self.url, "CREATE DATABASE %s" % name)
        return self.database_url(name)

    @staticmethod
    def psql(url, sql):
        """Runs SQL with psql on a database URL; the rows, unaligned, one a line."""
        out = subprocess.run([_pg_program("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("psql failed (%d): %s" % (out.returncode, out.stderr))
        return out.stdout.strip()
