"""HTTPS with certificates made in the test, and durability across kill -9 under load."""
import json
import os
import signal
import ssl
import tempfile
import threading
import time
import unittest
import uuid

from harness import Pki, Server, token_of


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.TemporaryDirectory(prefix="membraned-pki-")
        cls.pki = Pki(cls.pki_dir.name)
        cls.server = Server(tls=cls.pki).start()
        cls.tenant = cls.server.first_tenant()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.pki_dir.cleanup()
        assert code == 0, code

    def test_https_serves_every_operation(self):
        create = token_of(self.tenant["capabilities"]["create"])
        conn = self.server.connection()
        status, m, _ = self.server.call(create, body={"id": "tls-%s" % uuid.uuid4()}, conn=conn)
        self.assertEqual(status, 201, m)
        status, body, _ = self.server.call(token_of(m["capabilities"]["export"]),
                                           body={"uri": "https://upstream.example/x"}, conn=conn)
        self.assertEqual(status, 201, body)
        status, body, _ = self.server.call(token_of(self.tenant["capabilities"]["query"]), "GET", conn=conn)
        self.assertEqual(status, 200, body)
        status, body, _ = self.server.call(token_of(m["capabilities"]["revoke"]), "GET", conn=conn)
        self.assertEqual(status, 202, body)
        conn.close()
        self.assertTrue(self.server.stdout_lines[-1].startswith("membraned") and "https://" in self.server.stdout_lines[-1])

    def test_only_tls_1_2_and_1_3_are_spoken(self):
        query = token_of(self.tenant["capabilities"]["query"])
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = self.pki.client_context(minimum_version=version, maximum_version=version)
            s = ctx.wrap_socket(__import__("socket").create_connection(("127.0.0.1", self.server.port), timeout=10),
                                server_hostname="localhost")
            self.assertEqual(s.version(), {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version])
            s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n" % query).encode())
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            s.close()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki.ca_cert)
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            self.skipTest("this Python's OpenSSL cannot even offer TLS 1.1")
        with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
            ctx.wrap_socket(__import__("socket").create_connection(("127.0.0.1", self.server.port), timeout=10),
                            server_hostname="localhost")

    def test_plain_http_to_the_tls_port_gets_no_http_answer(self):
        import socket
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        s.close()
        self.assertFalse(data.startswith(b"HTTP/1.1 200"))
        self.assertEqual(self.server.call(token_of(self.tenant["capabilities"]["query"]), "GET")[0], 200)

    def test_tls_lets_the_service_listen_beyond_loopback_and_bad_key_pairs_fail_at_start(self):
        other = Pki(tempfile.mkdtemp(prefix="membraned-pki2-"))
        mismatched = Server(args=["--tls-cert", self.pki.server_cert, "--tls-key", other.server_key])
        with self.assertRaises(RuntimeError) as ctx:
            mismatched.start()
        self.assertIn("tls-key", str(ctx.exception))
        mismatched.cleanup()
        wide = Server(tls=self.pki, args=["--listen", "0.0.0.0:0"]).start()
        try:
            self.assertEqual(wide.call(token_of(wide.first_tenant()["capabilities"]["query"]), "GET")[0], 200)
        finally:
            self.assertEqual(wide.stop(), 0)
            wide.cleanup()


class DurabilityTest(unittest.TestCase):
    """Everything acknowledged before a kill -9 is still true after the restart."""

    def test_kill_9_mid_load_loses_nothing_acknowledged(self):
        server = Server().start()
        tenant = server.first_tenant()
        create = token_of(tenant["capabilities"]["create"])
        # A revoke whose answer was lost in the kill may or may not have happened: "attempted".
        created, revoked, attempted, lock = {}, {}, set(), threading.Lock()
        stop = threading.Event()

        def worker(n):
            for i in range(400):  # bounded: the kill normally ends the loop much earlier
                if stop.is_set():
                    return
                try:
                    status, m, _ = server.call(create, body={"id": "w%d-%d" % (n, i)})
                    if status != 201:
                        continue
                    with lock:
                        created[m["id"]] = m
                    if i % 2 == 0:
                        with lock:
                            attempted.add(m["id"])
                        status, _, _ = server.call(token_of(m["capabilities"]["revoke"]), "GET")
                        if status == 202:
                            with lock:
                                revoked[m["id"]] = m
                except OSError:
                    return  # the server is gone

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(revoked) < 30:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        self.assertGreaterEqual(len(revoked), 30, "the load did not get going")

        again = Server(data_dir=server.data_dir).start()
        try:
            query = token_of(tenant["capabilities"]["query"])
            self.assertGreater(len(set(created) - attempted), 10)
            for mid, m in created.items():
                status, body, _ = again.call(query, "GET", "/?id=" + mid)
                if mid in revoked:
                    self.assertEqual(body["membranes"], [], mid)
                    self.assertEqual(again.call(token_of(m["capabilities"]["export"]), body={"uri": "https://x.example/"})[0], 401, mid)
                elif mid not in attempted:
                    self.assertEqual(len(body["membranes"]), 1, mid)
                    self.assertEqual(again.call(token_of(m["capabilities"]["export"]), body={"uri": "https://x.example/"})[0], 201, mid)
                    found = body["membranes"][0]["capabilities"]
                    self.assertEqual({k: token_of(v) for k, v in found.items()},
                                     {k: token_of(v) for k, v in m["capabilities"].items()})
        finally:
            self.assertEqual(again.stop(), 0)
            again.cleanup()
            server.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
