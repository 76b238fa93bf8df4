#!/usr/bin/env python3
"""A soak run: membraned under mixed load for a long while, watched for leaks.

Load, all at once, for DURATION seconds:
  - invokers: keep-alive clients invoking the live capabilities (a Lambda-shaped POST);
  - an owner: creating membranes and exporting through them, re-exporting some;
  - a revoker: revoking a membrane every second (invocations of it then get 401);
  - a stockpiler: invocations whose body arrives after their membrane was revoked.
Every SAMPLE seconds: the process's RSS and open descriptors, and the answers so far by status.
At the end: the samples as a table, and a verdict: RSS and descriptors must stay flat (the last
third no higher than the middle third by more than a margin), and nothing but 200/201/202/401
may have been answered.

    bench/soak.py BINARY [DURATION] [SAMPLE]     (bench/soak.sh runs it on the release build)
"""
import collections
import http.client
import http.server
import json
import os
import random
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

BINARY = sys.argv[1]
DURATION = float(sys.argv[2]) if len(sys.argv) > 2 else 600.0
SAMPLE = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
INVOKERS = 6


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"statusCode":200,"body":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_membraned(data_dir):
    proc = subprocess.Popen([BINARY, "serve", "--init", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--threads", "2",
                             "--allow-upstream", "127.0.0.0/8"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if "listening on" in line:
            port = int(line.split("127.0.0.1:")[1].split()[0])
            return proc, port
    raise RuntimeError("membraned did not start")


def token(uri):
    return uri.split("#", 1)[1]


class Load:
    def __init__(self, port, upstream_port, create):
        self.port, self.upstream_port, self.create = port, upstream_port, create
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.live = []       # (capability, revoke) of unrevoked membranes
        self.stop = threading.Event()

    def call(self, conn, tok, method="POST", body=b"{}"):
        conn.request(method, "/", body=body, headers={"Authorization": "Bearer " + tok})
        response = conn.getresponse()
        data = response.read()
        with self.lock:
            self.statuses[response.status] += 1
        return response.status, data

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def owner(self):
        conn = self.connection()
        n = 0
        while not self.stop.is_set():
            n += 1
            status, data = self.call(conn, self.create, body=json.dumps({"id": "soak-%d" % n}).encode())
            if status != 201:
                continue
            made = json.loads(data)
            export, revoke = token(made["capabilities"]["export"]), token(made["capabilities"]["revoke"])
            status, data = self.call(conn, export, body=json.dumps({
                "uri": "http://127.0.0.1:%d/2015-03-31/functions/f/invocations" % self.upstream_port,
                "method": "POST",
                "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": "AKIDEXAMPLE", "secretAccessKey": "soak-secret",
                                              "region": "us-east-1", "service": "lambda"}}}).encode())
            if status != 201:
                continue
            cap = token(json.loads(data)["capability"])
            if n % 3 == 0:  # a re-export of it, through the same membrane
                status, data = self.call(conn, export, body=json.dumps({"capability": json.loads(data)["capability"]}).encode())
                if status == 201:
                    cap = token(json.loads(data)["capability"])
            with self.lock:
                self.live.append((cap, revoke))
            time.sleep(0.2)

    def revoker(self):
        conn = self.connection()
        while not self.stop.is_set():
            time.sleep(1.0)
            with self.lock:
                if len(self.live) < 20:
                    continue
                cap, revoke = self.live.pop(random.randrange(len(self.live)))
            self.call(conn, revoke, method="GET", body=None)

    def invoker(self):
        conn = self.connection()
        while not self.stop.is_set():
            with self.lock:
                if not self.live:
                    cap = None
                else:
                    cap = random.choice(self.live)[0]
            if cap is None:
                time.sleep(0.05)
                continue
            try:
                self.call(conn, cap, body=b'{"soak":' + b"1" * 256 + b"}")
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = self.connection()

    def stockpiler(self):
        while not self.stop.is_set():
            time.sleep(2.0)
            with self.lock:
                if len(self.live) < 20:
                    continue
                cap, revoke = self.live.pop(random.randrange(len(self.live)))
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            sock.sendall(("POST / HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer %s\r\nContent-Length: 4\r\n\r\n{}"
                          % cap).encode())
            conn = self.connection()
            self.call(conn, revoke, method="GET", body=None)
            conn.close()
            sock.sendall(b"  ")
            answer = sock.recv(4096)
            sock.close()
            with self.lock:
                self.statuses[int(answer.split(b" ")[1])] += 1


def resources(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def main():
    upstream = ThreadingServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="membraned-soak-") as tmp:
        proc, port = start_membraned(os.path.join(tmp, "var"))
        try:
            with open(os.path.join(tmp, "var", "first-tenant.json")) as f:
                create = token(json.load(f)["capabilities"]["create"])
            load = Load(port, upstream.server_address[1], create)
            threads = [threading.Thread(target=t, daemon=True)
                       for t in [load.owner, load.revoker, load.stockpiler] + [load.invoker] * INVOKERS]
            for t in threads:
                t.start()
            samples = []
            started = time.monotonic()
            while time.monotonic() - started < DURATION:
                time.sleep(SAMPLE)
                rss, fds = resources(proc.pid)
                with load.lock:
                    counts = dict(load.statuses)
                    live = len(load.live)
                samples.append((time.monotonic() - started, rss, fds, live, counts))
                print("%6.0f s  RSS %7d KiB  fds %4d  live %5d  answers %s" % (samples[-1][0], rss, fds, live, counts),
                      flush=True)
            load.stop.set()
            for t in threads:
                t.join(60)
        finally:
            proc.terminate()
            code = proc.wait(60)
    third = max(1, len(samples) // 3)
    middle, last = samples[third:2 * third], samples[2 * third:]
    rss_middle, rss_last = max(s[1] for s in middle or samples), max(s[1] for s in last)
    fds_middle, fds_last = max(s[2] for s in middle or samples), max(s[2] for s in last)
    counts = samples[-1][4]
    unexpected = {k: v for k, v in counts.items() if k not in (200, 201, 202, 401)}
    print("RSS: middle third at most %d KiB, last third at most %d KiB; descriptors: %d, %d; "
          "answers: %s; unexpected: %s; exit code %s" % (rss_middle, rss_last, fds_middle, fds_last, counts,
                                                         unexpected, code))
    flat = rss_last <= rss_middle * 1.10 + 4096 and fds_last <= fds_middle + 8
    ok = flat and not unexpected and code == 0
    print("verdict:", "flat, no unexpected answers, clean exit" if ok else "NOT FLAT OR ERRORS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
