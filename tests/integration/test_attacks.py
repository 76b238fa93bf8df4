"""The attack review of December 2026 against the real binary: each finding the service closed,
run as the attacker ran it, and judged by what a user notices (the status and JSON body, the
connection closing, the service's memory, what the upstream received)."""
import json
import os
import socket
import threading
import unittest
import uuid

from harness import Server, Upstream, rss_kib, token_of

MiB = 1024 * 1024


def read_until_closed(sock, timeout=10):
    """Everything the service sends until it closes the connection (or `timeout` of silence)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def split_answer(data):
    """(status, headers as a lower-cased dict, body bytes, the bytes after) of the first answer."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/1.") else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return status, headers, rest[:length], rest[length:]


class ServiceCase(unittest.TestCase):
    """One membraned for the class, with a tenant, a membrane and its export capability."""

    @classmethod
    def setUpClass(cls):
        cls.start_service()

    @classmethod
    def tearDownClass(cls):
        cls.stop_service()

    @classmethod
    def start_service(cls):
        # Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) and would
        # show as growth; a small one keeps the memory measures about the service.
        asan = os.environ.get("ASAN_OPTIONS", "")
        cls.server = Server(env={"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=16"}).start()
        tenant = cls.server.first_tenant()
        cls.create = token_of(tenant["capabilities"]["create"])
        cls.query = token_of(tenant["capabilities"]["query"])
        status, m, _ = cls.server.call(cls.create, body={"id": "attacks-%s" % uuid.uuid4()})
        assert status == 201, m
        cls.export = token_of(m["capabilities"]["export"])

    @classmethod
    def stop_service(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        assert code == 0, code

    def capability(self, **export):
        status, body, _ = self.server.call(self.export, body=export)
        self.assertEqual(status, 201, body)
        return token_of(body["capability"])

    def exchange(self, request, timeout=10):
        """Sends raw bytes; everything that comes back until the service closes."""
        s = self.server.raw_socket()
        try:
            s.sendall(request)
            return read_until_closed(s, timeout)
        finally:
            s.close()

    def assert_json_error(self, data, status, message=None):
        got, headers, body, rest = split_answer(data)
        self.assertEqual(got, status, data[:300])
        self.assertEqual(headers.get("content-type"), "application/json")
        parsed = json.loads(body)
        self.assertEqual(parsed["statusCode"], status)
        if message:
            self.assertEqual(parsed["message"], message)
        return headers, rest

    def assert_refused_and_closed(self, data, status, message=None):
        """One JSON error that says the connection closes, and nothing after it."""
        headers, rest = self.assert_json_error(data, status, message)
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(rest, b"")

    def assert_serving(self):
        self.assertEqual(self.server.call(self.query, "GET")[0], 200)


class RawUpstream:
    """An upstream on a raw socket: reads each request's header (and Content-Length body), counts
    it, then lets `answer(sock)` write whatever it likes and closes the connection."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def url(self, path="/fn"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            self.requests += 1
            try:
                self.answer(conn)
            except OSError:
                pass  # the service stopped reading: what the attack is about

    def close(self):
        self.listener.close()


class Peak:
    """The highest VmRSS of a process while it runs, sampled every few milliseconds."""

    def __init__(self, pid):
        self.pid = pid
        self.before = rss_kib(pid)
        self.peak = self.before
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, rss_kib(self.pid))

    def growth_kib(self):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))
        return self.peak - self.before


# --- H1: framing that never ends is held in a bounded buffer --------------------------------------
class EndlessFramingTest(ServiceCase):
    """No capability needed: before, 256 MiB of a chunk extension or a trailer grew the service by
    as much, one connection at a time. Now the read buffer (--header-limit) bounds it."""

    # A service of its own for each test: memory a test made the service map stays mapped, and
    # would hide the growth of the next.
    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self.start_service()

    def tearDown(self):
        self.stop_service()

    def stream(self, head, filler, total=64 * MiB):
        """Sends `head`, then `filler` up to `total` bytes or until the service stops reading:
        (bytes sent, the service's RSS growth in KiB meanwhile, what it answered)."""
        s = self.server.raw_socket()
        try:
            peak = Peak(self.server.proc.pid)
            s.sendall(head)
            sent = 0
            piece = filler * (64 * 1024)
            try:
                while sent < total:
                    s.sendall(piece)
                    sent += len(piece)
            except OSError:
                pass  # refused: the service closed the connection
            growth = peak.growth_kib()
            return sent, growth, read_until_closed(s, timeout=5)
        finally:
            s.close()

    def test_an_endless_chunk_extension_is_413_and_memory_stays_flat(self):
        sent, growth, answer = self.stream(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=", b"a")
        self.assertLess(growth, 20 * 1024, "RSS grew by %d KiB while %d bytes were sent" % (growth, sent))
        self.assertLess(sent, 64 * MiB)
        self.assert_refused_and_closed(answer, 413, "request chunk header is too large")
        self.assert_serving()

    def test_endless_trailers_are_431_and_memory_stays_flat(self):
        sent, growth, answer = self.stream(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX-Trailer: ", b"a")
        self.assertLess(growth, 20 * 1024, "RSS grew by %d KiB while %d bytes were sent" % (growth, sent))
        self.assertLess(sent, 64 * MiB)
        self.assert_refused_and_closed(answer, 431, "request trailers are too large")
        self.assert_serving()


class EndlessUpstreamFramingTest(ServiceCase):
    """Before, an upstream that answered a chunk extension of 1 GiB grew the service by 2 GiB for
    one invocation. Now the relay's read buffer (64 KiB, like the answer's header) bounds it."""

    def test_an_upstream_endless_chunk_extension_is_502_and_memory_stays_flat(self):
        def endless(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=")
            piece = b"a" * (64 * 1024)
            for _ in range(64 * MiB // len(piece)):
                conn.sendall(piece)

        upstream = RawUpstream(endless)
        echo = Upstream()
        try:
            cap = self.capability(uri=upstream.url(), method="POST")
            conn = self.server.connection(timeout=60)
            peak = Peak(self.server.proc.pid)
            status, body, _ = self.server.call(cap, "POST", body=b"{}", conn=conn)
            growth = peak.growth_kib()
            self.assertLess(growth, 20 * 1024, "RSS grew by %d KiB" % growth)
            self.assertEqual(status, 502, body)
            self.assertEqual(body, {"statusCode": 502, "error": "Bad Gateway",
                                    "message": "the upstream's answer could not be read"})
            # The requester's connection goes on.
            self.assertEqual(self.server.call(self.capability(uri=echo.url("/echo")), "GET", conn=conn)[0], 200)
            conn.close()
        finally:
            upstream.close()
            echo.close()


# --- L1: Transfer-Encoding other than exactly chunked -------------------------------------------
class TransferEncodingTest(ServiceCase):
    def test_an_obfuscated_transfer_encoding_is_400_and_its_body_never_runs_as_a_request(self):
        upstream = Upstream()
        try:
            cap = self.capability(uri=upstream.url("/echo"))
            smuggled = ("GET /?limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % self.query).encode()
            for coding in ("xchunked", "identity", "gzip", "chunked, gzip", "chunked, chunked"):
                with self.subTest(coding=coding):
                    before = len(upstream.requests)
                    answer = self.exchange(("POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                            "Transfer-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
                                            % (cap, coding, 0)).encode() + smuggled)
                    self.assert_refused_and_closed(answer, 400)
                    self.assertNotIn(b"membranes", answer)  # the query never ran
                    self.assertEqual(len(upstream.requests), before)  # nor the invocation
        finally:
            upstream.close()

    def test_chunked_beside_content_length_stays_400(self):
        for fields in ("Transfer-Encoding: chunked\r\nContent-Length: 4", "Content-Length: 4\r\nTransfer-Encoding: chunked"):
            with self.subTest(fields=fields):
                answer = self.exchange(("POST / HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n0\r\n\r\n" % fields).encode())
                self.assert_refused_and_closed(answer, 400)

    def test_chunked_alone_is_served(self):
        body = json.dumps({"id": "chunked-%s" % uuid.uuid4()}).encode()
        s = self.server.raw_socket()
        s.sendall(("POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: close\r\n\r\n%x\r\n" % (self.create, len(body))).encode() + body + b"\r\n0\r\n\r\n")
        status, _, answer, _ = split_answer(read_until_closed(s))
        s.close()
        self.assertEqual(status, 201, answer)


# --- L2: the answer's framing follows the requester's method ------------------------------------
class HeadFramingTest(ServiceCase):
    INJECTED = (b"HTTP/1.1 200 OK\r\nSet-Cookie: session=attacker\r\nContent-Length: 22\r\n\r\n"
                b"<h1>INJECTED-BODY</h1>")

    def test_a_head_requester_never_gets_the_body_of_an_export_fixed_to_post(self):
        def answer(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Upstream: yes\r\nContent-Length: %d\r\n\r\n" % len(self.INJECTED)
                         + self.INJECTED)

        upstream = RawUpstream(answer)
        try:
            cap = self.capability(uri=upstream.url(), method="POST")
            # A keep-alive client sends its next request on the same connection (here at once).
            data = self.exchange(("HEAD / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                                  "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % cap).encode())
            head, _, rest = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), data)
            self.assertIn(b"\r\nX-Upstream: yes", head)
            self.assertIn(b"\r\nContent-Length: %d" % len(self.INJECTED), head)
            # What follows the HEAD answer's header is the next answer, the service's own.
            status, headers, body, after = split_answer(rest)
            self.assertEqual(status, 200, rest)
            self.assertNotIn("set-cookie", headers)
            self.assertEqual(json.loads(body)["status"], "ok")
            self.assertEqual(after, b"")
            self.assertNotIn(b"INJECTED", data)
            self.assertEqual(upstream.requests, 1)
        finally:
            upstream.close()

    def test_a_get_requester_of_an_export_fixed_to_head_gets_an_empty_body_that_says_so(self):
        upstream = Upstream()
        try:
            cap = self.capability(uri=upstream.url("/sized/50"), method="HEAD")
            conn = self.server.connection(timeout=10)
            conn.request("GET", "/", headers={"Authorization": "Bearer " + cap})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Content-Length"), "0")
            self.assertEqual(resp.read(), b"")
            self.assertEqual(upstream.requests[-1]["method"], "HEAD")
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            self.assertEqual((resp.status, json.loads(resp.read())["status"]), (200, "ok"))
            conn.close()
        finally:
            upstream.close()


# --- L4: body framing errors are answered ---------------------------------------------------------
class ChunkSizeTest(ServiceCase):
    def test_a_bad_chunk_size_is_a_json_400_and_the_connection_closes(self):
        for size in (b"zz", b"ffffffffffffffffffff", b"-4"):
            with self.subTest(size=size):
                answer = self.exchange(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + self.create.encode()
                                       + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabcd\r\n0\r\n\r\n")
                self.assert_refused_and_closed(answer, 400, "malformed HTTP request")
        self.assert_serving()


# --- L5: one Host -----------------------------------------------------------------------------
class HostTest(ServiceCase):
    def test_an_http11_request_without_host_or_with_two_is_400(self):
        query = ("Authorization: Bearer %s\r\n" % self.query).encode()
        for request, message in (
                (b"GET / HTTP/1.1\r\n" + query + b"\r\n", "Host header is required"),
                (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + query + b"\r\n", "Host header is given more than once"),
                (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n" + query + b"\r\n", "Host header is given more than once")):
            with self.subTest(request=request[:40]):
                answer = self.exchange(request)
                self.assert_refused_and_closed(answer, 400, message)
                self.assertNotIn(b"membranes", answer)

    def test_an_http10_request_without_host_is_served(self):
        answer = self.exchange(("GET / HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n" % self.query).encode())
        status, _, body, _ = split_answer(answer)
        self.assertEqual(status, 200, answer[:300])
        self.assertIn("membranes", json.loads(body))


# --- L6: duplicate JSON keys ----------------------------------------------------------------------
class DuplicateKeyTest(ServiceCase):
    def test_a_create_body_with_a_key_given_twice_is_400_and_creates_nothing(self):
        first, second = "dup-a-%s" % uuid.uuid4(), "dup-b-%s" % uuid.uuid4()
        status, body, _ = self.server.call(self.create, body='{"id":"%s","id":"%s"}' % (first, second))
        self.assertEqual(status, 400, body)
        self.assertEqual(body["message"], "id is given twice")
        for mid in (first, second):
            status, listed, _ = self.server.call(self.query, "GET", path="/?id=" + mid)
            self.assertEqual((status, listed["membranes"]), (200, []))

    def test_an_export_body_with_a_key_given_twice_stays_400(self):
        status, body, _ = self.server.call(self.export, body='{"uri":"http://127.0.0.1:1/","uri":"http://127.0.0.1:2/"}')
        self.assertEqual(status, 400, body)
        self.assertEqual(body["message"], "uri is given twice")


if __name__ == "__main__":
    unittest.main(verbosity=2)
