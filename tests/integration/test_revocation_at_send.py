"""Revocation at send time (contract §7): once a revoke has answered 202, no request it covers
leaves for the upstream, on any instance, whatever the holder did before: headers stockpiled
before the revoke with their bodies sent after it, bodies dripping across it, or fast keep-alive
load. Real processes: membraned on SQLite, and three instances on one PostgreSQL.

Every request the upstream receives is stamped by the kernel as its first bytes arrive
(SO_TIMESTAMPNS, CLOCK_REALTIME), and so is the 202 as it reaches the revoking client: the two
clocks are the same kernel's, so "arrived after the 202" needs no guess about thread scheduling.
The count of arrivals after the 202 must be zero.
"""
import collections
import http.client
import os
import socket
import struct
import sys
import threading
import time
import unittest
import uuid

from harness import PgCluster, Server, new_master_key, token_of

# Linux's SO_TIMESTAMPNS (asm-generic/socket.h); Python does not name it. The control message of
# a received segment then carries a struct timespec of its arrival.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
STAMP_SPACE = socket.CMSG_SPACE(struct.calcsize("qq"))


def content_length(head):
    """The Content-Length of a message head (bytes, without its blank line), 0 if none."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def stamping(sock):
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def recv_stamped(sock, size=65536):
    """(bytes, kernel arrival time in ns of the segment they came in; None without a stamp)."""
    data, ancillary, _, _ = sock.recvmsg(size, STAMP_SPACE)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", payload[:16])
            return data, seconds * 1_000_000_000 + nanoseconds
    return data, None


class StampingUpstream:
    """An upstream on loopback that answers every request 200 and records the kernel's arrival time
    of each request's first bytes."""

    def __init__(self):
        # On the listening socket too: a connection inherits it, so even bytes that arrive before
        # accept() returns are stamped.
        self.listener = stamping(socket.socket())
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.arrivals = []  # (kernel ns, path)
        self.closing = False
        threading.Thread(target=self.accept, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def accept(self):
        while not self.closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(stamping(conn),), daemon=True).start()

    def serve(self, conn):
        pending, first_seen = b"", None
        try:
            while True:
                data, stamp = recv_stamped(conn)
                if not data:
                    return
                if not pending:
                    first_seen = stamp
                pending += data
                while b"\r\n\r\n" in pending:
                    head, rest = pending.split(b"\r\n\r\n", 1)
                    length = content_length(head)
                    if len(rest) < length:
                        break
                    path = head.split(b" ")[1].decode()
                    with self.lock:
                        self.arrivals.append((first_seen, path))
                    pending = rest[length:]
                    first_seen = stamp if pending else None
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            conn.close()

    def arrived(self, path):
        with self.lock:
            return [t for t, p in self.arrivals if p == path]

    def close(self):
        self.closing = True
        self.listener.close()


def raw_request(token, body_part=b"", length=None, expect=False, close=False):
    headers = ["POST / HTTP/1.1", "Host: membraned", "Authorization: Bearer " + token,
               "Content-Length: %d" % (len(body_part) if length is None else length)]
    if expect:
        headers.append("Expect: 100-continue")
    if close:
        headers.append("Connection: close")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body_part


def read_answer(sock):
    """The status of one whole answer read from sock (Content-Length framed, as membraned's are)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = content_length(head)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ")[1])


def revoke_stamped(server, token):
    """Revokes; the kernel arrival time (ns) of the 202 at this client."""
    sock = stamping(socket.create_connection(("127.0.0.1", server.port), timeout=30))
    try:
        sock.sendall(("GET / HTTP/1.1\r\nHost: membraned\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n"
                      % token).encode())
        data, stamp = recv_stamped(sock)
        assert data.startswith(b"HTTP/1.1 202"), data
        assert stamp is not None, "no kernel time stamp on the answer"
        return stamp
    finally:
        sock.close()


class RevocationAtSend:
    """The scenarios, over self.servers (the instances) and self.create (a create capability)."""

    def new_capability(self, upstream):
        """A fresh membrane and a uri capability exported through it: (capability, revoke, path)."""
        server = self.servers[0]
        status, made, _ = server.call(self.create, "POST", body={"id": "m-" + uuid.uuid4().hex})
        self.assertEqual(status, 201, made)
        path = "/fn/" + uuid.uuid4().hex
        status, exported, _ = server.call(token_of(made["capabilities"]["export"]), "POST",
                                          body={"uri": upstream.url(path), "method": "POST"})
        self.assertEqual(status, 201, exported)
        return token_of(exported["capability"]), token_of(made["capabilities"]["revoke"]), path

    def test_stockpiled_headers_finished_after_the_202_never_reach_the_upstream(self):
        cap, revoke, path = self.new_capability(self.upstream)
        socks = []
        try:
            for i in range(24):
                server = self.servers[i % len(self.servers)]
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                socks.append(sock)
                # Authorised on its header: the service answers 100 Continue once it knows the
                # capability (and how large a body it may send).
                sock.sendall(raw_request(cap, b'{"n":', length=10, expect=True))
            for sock in socks:
                self.assertTrue(sock.recv(1024).startswith(b"HTTP/1.1 100"))
            revoked_at = revoke_stamped(self.servers[-1], revoke)
            for sock in socks:
                sock.sendall(b'"late"}')
            statuses = collections.Counter(read_answer(sock) for sock in socks)
        finally:
            for sock in socks:
                sock.close()
        after = [t for t in self.upstream.arrived(path) if t > revoked_at]
        log("stockpile (%d instance(s)): answers %s, upstream arrivals %d, after the 202 %d"
            % (len(self.servers), dict(statuses), len(self.upstream.arrived(path)), len(after)))
        self.assertEqual(after, [])
        self.assertEqual(statuses, {401: 24})

    def test_bodies_dripping_across_the_revoke_never_reach_the_upstream_after_the_202(self):
        cap, revoke, path = self.new_capability(self.upstream)
        stop = threading.Event()
        statuses = collections.Counter()
        lock = threading.Lock()

        def drip(server):
            while not stop.is_set():
                with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                    body = b'{"drip":"' + b"x" * 190 + b'"}'
                    sock.sendall(raw_request(cap, b"", length=len(body), close=True))
                    for i in range(0, len(body), 20):  # about 0.3 s per request
                        sock.sendall(body[i:i + 20])
                        time.sleep(0.03)
                    status = read_answer(sock)
                with lock:
                    statuses[status] += 1

        threads = [threading.Thread(target=drip, args=(self.servers[i % len(self.servers)],), daemon=True)
                   for i in range(12)]
        for t in threads:
            t.start()
        wait_until(lambda: len(self.upstream.arrived(path)) >= 12, "dripped requests before the revoke")
        # The next round's headers are in (authorised) and their bodies half sent: the revoke
        # comes in the middle of them.
        time.sleep(0.15)
        revoked_at = revoke_stamped(self.servers[0], revoke)
        time.sleep(1.0)  # every dripping request in flight at the revoke has finished by now
        stop.set()
        for t in threads:
            t.join(30)
        after = [t for t in self.upstream.arrived(path) if t > revoked_at]
        log("drip (%d instance(s)): answers %s, upstream arrivals %d, after the 202 %d"
            % (len(self.servers), dict(statuses), len(self.upstream.arrived(path)), len(after)))
        self.assertEqual(after, [])
        self.assertGreater(statuses[401], 0)
        self.assertLessEqual(set(statuses), {200, 401})

    def test_fast_load_across_the_revoke_never_reaches_the_upstream_after_the_202(self):
        cap, revoke, path = self.new_capability(self.upstream)
        stop = threading.Event()
        statuses = collections.Counter()
        lock = threading.Lock()

        def hammer(server):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            while not stop.is_set():
                conn.request("POST", "/", body=b'{"fast":1}', headers={"Authorization": "Bearer " + cap})
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses[response.status] += 1
            conn.close()

        threads = [threading.Thread(target=hammer, args=(self.servers[i % len(self.servers)],), daemon=True)
                   for i in range(12)]
        for t in threads:
            t.start()
        wait_until(lambda: len(self.upstream.arrived(path)) >= 500, "fast requests before the revoke")
        revoked_at = revoke_stamped(self.servers[-1], revoke)
        wait_until(lambda: statuses[401] >= 500, "fast requests after the revoke")
        stop.set()
        for t in threads:
            t.join(30)
        after = [t for t in self.upstream.arrived(path) if t > revoked_at]
        log("fast (%d instance(s)): answers %s, upstream arrivals %d, after the 202 %d"
            % (len(self.servers), dict(statuses), len(self.upstream.arrived(path)), len(after)))
        self.assertEqual(after, [])
        self.assertLessEqual(set(statuses), {200, 401})


def wait_until(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class OnSqlite(RevocationAtSend, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = StampingUpstream()
        cls.servers = [Server().start()]
        cls.create = token_of(cls.servers[0].first_tenant()["capabilities"]["create"])

    @classmethod
    def tearDownClass(cls):
        codes = [s.stop() for s in cls.servers]
        for s in cls.servers:
            s.cleanup()
        cls.upstream.close()
        assert codes == [0], codes


class OnThreeInstancesOfOnePostgres(RevocationAtSend, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = StampingUpstream()
        url, key = PgCluster.shared().create_database(), new_master_key()
        cls.servers = []
        for _ in range(3):
            cls.servers.append(Server(store=url, master_key=key).start())
        made = [s for s in cls.servers if s.wrote_first_tenant()]
        cls.create = token_of(made[0].first_tenant()["capabilities"]["create"])

    @classmethod
    def tearDownClass(cls):
        codes = [s.stop() for s in cls.servers]
        for s in cls.servers:
            s.cleanup()
        cls.upstream.close()
        assert codes == [0, 0, 0], codes


if __name__ == "__main__":
    unittest.main()
