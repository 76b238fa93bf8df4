"""Starts real membraned processes on loopback ports and talks to them over real sockets.

Standard library only, so the test set-up needs nothing beyond python3 and openssl.
"""
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

BINARY = os.environ.get("MEMBRANED_BINARY", "membraned")
LISTENING = re.compile(r"listening on (https?)://[^ ]+:(\d+) \(authority ([^)]+)\)")


def token_of(uri):
    """The CPBLTY1-... part of a capability URI."""
    return uri.split("#", 1)[1]


class Server:
    """One membraned serve process with its own data directory."""

    def __init__(self, data_dir=None, args=(), env=None, tls=None):
        self.tmp = None
        if data_dir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="membraned-it-")
            data_dir = os.path.join(self.tmp.name, "var")
        self.data_dir = data_dir
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.tls = tls  # a Pki, or None for plain HTTP
        self.proc = None
        self.port = None
        self.stderr_path = None

    def start(self, timeout=20):
        cmd = [BINARY, "serve", "--data-dir", self.data_dir, "--threads", "2"]
        if "--listen" not in self.args:
            cmd += ["--listen", "127.0.0.1:0"]
        if self.tls:
            cmd += ["--tls-cert", self.tls.server_cert, "--tls-key", self.tls.server_key]
        cmd += self.args
        os.makedirs(os.path.dirname(os.path.abspath(self.data_dir)), exist_ok=True)
        self.stderr_path = os.path.abspath(self.data_dir) + ".stderr.log"
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr_file, env=self.env, text=True)
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
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
            "-out", self.server_cert, "-days", "2", "-extfile", ext)

    def client_context(self, **versions):
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        for k, v in versions.items():
            setattr(ctx, k, v)
        return ctx
