"""contract §10: exports may not reach loopback, link-local, cloud metadata, unspecified or the
service's own address, in any spelling, unless the operator opens a range; every invocation checks
again the address it connects to, so a name re-pointed after the export (DNS rebinding) is not
called. And what an export may make the outgoing side do to everyone else: costly TLS client keys
(refused), answers crossing pooled connections, slow DNS names (each delays only itself).

Names are made to resolve where the test wants by running membraned in a mount namespace of its
own whose /etc/hosts (and, for slow names, /etc/resolv.conf, pointing at a DNS server of the test)
are files of the test (unshare, as root: the test set-up runs as root)."""
import os
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Pki, Server, Upstream, token_of

CLOSED_HOSTS = ["127.0.0.1", "127.1.2.3", "[::1]", "localhost", "LocalHost.", "api.localhost", "2130706433",
                "0177.0.0.1", "0x7f.1", "0x7f000001", "169.254.169.254", "2852039166", "[::ffff:169.254.169.254]",
                "[::ffff:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]", "[fe80::1]", "0.0.0.0", "[::]", "224.0.0.1"]
# The cloud metadata and credential endpoints outside link-local (docs/security.md lists the
# sources): AWS IMDS and the EKS Pod Identity agent over IPv6, GCP's IPv6 metadata server, Azure's
# WireServer, Alibaba Cloud, Oracle, Akamai (Linode).
METADATA_HOSTS = ["[fd00:ec2::254]", "[fd00:ec2::23]", "[fd20:ce::254]", "168.63.129.16", "100.100.100.200",
                  "192.0.0.192", "[fd00:a9fe:a9fe::1]", "[::ffff:168.63.129.16]", "2822734096"]


class SafetyTest(unittest.TestCase):
    def export(self, server, export_token, uri):
        status, body, _ = server.call(export_token, body={"uri": uri})
        return status, body

    def new_membrane(self, server, name):
        create = token_of(server.first_tenant()["capabilities"]["create"])
        status, m, _ = server.call(create, body={"id": name})
        self.assertEqual(status, 201, m)
        return m


class ClosedByDefaultTest(SafetyTest):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(allow_loopback_upstreams=False).start()
        cls.upstream = Upstream()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        assert code == 0, code

    def test_every_spelling_of_a_closed_address_is_refused_at_export(self):
        export = token_of(self.new_membrane(self.server, "closed")["capabilities"]["export"])
        for host in CLOSED_HOSTS:
            with self.subTest(host=host):
                status, body = self.export(self.server, export, "http://%s:%d/x" % (host, self.upstream.port))
                self.assertEqual(status, 400, body)
                self.assertTrue(body["message"].startswith("uri reaches "), body)
                self.assertIn("--allow-upstream", body["message"])
        self.assertEqual(self.upstream.requests, [], "nothing was called")

    def test_cloud_metadata_endpoints_outside_link_local_are_refused_at_export(self):
        # The attack: an IMDSv2 token from the IPv6 endpoint (PUT with the TTL header fixed in the
        # export), then the instance role's keys with a second export carrying that token.
        export = token_of(self.new_membrane(self.server, "metadata")["capabilities"]["export"])
        status, body, _ = self.server.call(export, body={
            "uri": "http://[fd00:ec2::254]/latest/api/token", "method": "PUT",
            "headers": {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}})
        self.assertEqual(status, 400, body)
        self.assertEqual(body["message"], "uri reaches fd00:ec2::254, a cloud metadata endpoint, which exports may "
                                          "not reach unless the operator opens it (--allow-upstream)")
        for host in METADATA_HOSTS:
            with self.subTest(host=host):
                status, body = self.export(self.server, export, "http://%s/v1/credentials" % host)
                self.assertEqual(status, 400, body)
                self.assertTrue(body["message"].startswith("uri reaches "), body)
                self.assertIn("cloud metadata", body["message"])
                self.assertIn("--allow-upstream", body["message"])

    def test_open_addresses_and_unresolvable_names_are_exported(self):
        export = token_of(self.new_membrane(self.server, "open")["capabilities"]["export"])
        for uri in ("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations",
                    "http://10.0.0.1/", "http://192.168.1.1/", "http://[fd00::1]/", "http://no-such-host.invalid/"):
            with self.subTest(uri=uri):
                self.assertEqual(self.export(self.server, export, uri)[0], 201)

    def test_the_services_own_endpoint_is_closed_even_when_loopback_is_opened(self):
        upstream = Upstream()
        server = Server(args=["--allow-upstream", "127.0.0.0/8", "--deny-upstream", "127.0.0.2"]).start()
        try:
            export = token_of(self.new_membrane(server, "own")["capabilities"]["export"])
            status, body = self.export(server, export, "http://127.0.0.1:%d/" % server.port)
            self.assertEqual(status, 400)
            self.assertIn("the service itself", body["message"])
            status, body = self.export(server, export, "http://localhost:%d/" % server.port)
            self.assertEqual(status, 400)
            status, body = self.export(server, export, "http://127.0.0.2:%d/" % upstream.port)
            self.assertEqual(status, 400)
            self.assertIn("--deny-upstream", body["message"])
            status, body = self.export(server, export, "http://127.0.0.1:%d/echo" % upstream.port)
            self.assertEqual(status, 201)
            self.assertEqual(server.call(token_of(body["capability"]), "GET")[0], 200)
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()
            upstream.close()

    def test_bad_ranges_stop_the_start(self):
        with tempfile.TemporaryDirectory() as tmp:
            from harness import BINARY
            for flag, value in (("--allow-upstream", "127.0.0.0/33"), ("--deny-upstream", "not-a-range")):
                proc = subprocess.run([BINARY, "serve", "--data-dir", tmp, "--listen", "127.0.0.1:0", flag, value],
                                      capture_output=True, text=True, timeout=30)
                self.assertEqual(proc.returncode, 1)
                self.assertIn(flag, proc.stderr)
                self.assertIn(value, proc.stderr)


class ClientKeyTest(SafetyTest):
    """Every TLS handshake of an export with a client certificate signs with its key on one of the
    service's I/O threads: a 16384-bit RSA key costs about 250 ms of one each time, for everyone.
    Keys above RSA 4096 bits (or on unusual curves) are refused at export, naming tls.key."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-keys-")
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.tmp.cleanup()
        assert code == 0, code

    def client_pem(self, name, newkey, *options):
        key, cert = (os.path.join(self.tmp.name, "%s.%s" % (name, ext)) for ext in ("key", "pem"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", newkey, *options, "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=membraned test client"], check=True, capture_output=True)
        with open(cert) as c, open(key) as k:
            return c.read(), k.read()

    def export_with(self, name, newkey, *options):
        cert, key = self.client_pem(name, newkey, *options)
        export = token_of(self.new_membrane(self.server, "keys-" + name)["capabilities"]["export"])
        status, body, _ = self.server.call(export, body={"uri": "https://upstream.example/x",
                                                         "tls": {"cert": cert, "key": key}})
        return status, body

    def test_an_8192_bit_rsa_key_is_refused_at_export(self):
        status, body = self.export_with("rsa8192", "rsa:8192")
        self.assertEqual(status, 400, body)
        self.assertEqual(body["message"], "tls.key must be an RSA key of at most 4096 bits, an EC key on P-256, "
                                          "P-384 or P-521, or an Ed25519 or Ed448 key")

    def test_keys_up_to_rsa_4096_and_the_usual_curves_are_exported(self):
        for name, newkey, options in (("rsa4096", "rsa:4096", ()), ("p384", "ec", ("-pkeyopt", "ec_paramgen_curve:P-384")),
                                      ("ed25519", "ed25519", ())):
            with self.subTest(key=name):
                status, body = self.export_with(name, newkey, *options)
                self.assertEqual(status, 201, body)


class ClientCertificateReuseTest(SafetyTest):
    """An export with its own TLS material (a client certificate here) has its TLS context made once
    and its connections kept alive like any other, so a handshake, and the signature with its key
    on an I/O thread, is not paid on every invocation. Only exports with the same material, of the
    same tenant, share a connection."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-reuse-")
        cls.pki = Pki(os.path.join(cls.tmp.name))
        cls.client_pki = Pki(tempfile.mkdtemp(dir=cls.tmp.name))
        cls.upstream = Upstream(tls=cls.pki, require_client_cert=True)
        cls.upstream.httpd.socket.context.load_verify_locations(cls.client_pki.ca_cert)
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        cls.tmp.cleanup()
        assert code == 0, code

    def test_connections_with_a_client_certificate_are_reused_for_the_same_material_only(self):
        def read(path):
            with open(path) as f:
                return f.read()
        tls = {"ca": read(self.pki.ca_cert), "cert": read(self.client_pki.server_cert),
               "key": read(self.client_pki.server_key)}
        export = token_of(self.new_membrane(self.server, "client-cert")["capabilities"]["export"])
        caps = []
        for extra in ({}, {}, {"rejectUnauthorized": False}):
            status, body, _ = self.server.call(export, body={"uri": self.upstream.url("/echo"), "tls": dict(tls, **extra)})
            self.assertEqual(status, 201, body)
            caps.append(token_of(body["capability"]))
        conn = self.server.connection()
        peers = []
        for cap in (caps[0], caps[0], caps[1], caps[2]):
            status, body, _ = self.server.call(cap, "GET", conn=conn)
            self.assertEqual(status, 200, body)
            peers.append(self.upstream.requests[-1]["peer"])
        conn.close()
        self.assertEqual(peers[0], peers[1], "the second invocation made a new connection (and handshake)")
        self.assertEqual(peers[0], peers[2], "another export with the same material did not share it")
        self.assertNotEqual(peers[0], peers[3], "an export that does not verify the upstream shared a verified one")


class LateTalker:
    """An upstream on loopback that answers each request, and after answering /late writes a second,
    unsolicited answer on the idle connection 300 ms later (a hostile or buggy server several
    exports share, e.g. behind one ingress)."""

    INJECTED = (b"HTTP/1.1 200 OK\r\nX-Injected: yes\r\nContent-Length: 8\r\nContent-Type: text/plain\r\n"
                b"\r\nINJECTED")

    def __init__(self):
        import threading
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.paths = []
        self.threading = threading
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        pending = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in pending:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                self.paths.append(path)
                body = b"ok" if path == "/late" else b"genuine"
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                                 % (len(body), body))
                    if path == "/late":
                        time.sleep(0.3)
                        conn.sendall(self.INJECTED)
                except OSError:
                    return

    def close(self):
        self.listener.close()


class PoolTest(SafetyTest):
    """Pooled upstream connections (attack review M5): a connection that received bytes while idle
    is not reused, and connections are not shared between tenants."""

    def test_an_unsolicited_answer_never_reaches_another_tenants_invocation(self):
        upstream = LateTalker()
        server = Server().start()
        try:
            attacker = token_of(self.new_membrane(server, "attacker")["capabilities"]["export"])
            status, body, _ = server.call(attacker, body={"uri": "http://127.0.0.1:%d/late" % upstream.port})
            self.assertEqual(status, 201, body)
            late = token_of(body["capability"])
            other = server.tenant_create()
            status, m, _ = server.call(token_of(other["capabilities"]["create"]), body={"id": "victim"})
            self.assertEqual(status, 201, m)
            status, body, _ = server.call(token_of(m["capabilities"]["export"]),
                                          body={"uri": "http://127.0.0.1:%d/victim" % upstream.port})
            self.assertEqual(status, 201, body)
            victim = token_of(body["capability"])
            for _ in range(3):
                status, body, _ = server.call(late, "GET")
                self.assertEqual((status, body), (200, "ok"))
                time.sleep(0.5)  # the unsolicited answer is in the pooled connection by now
                status, body, headers = server.call(victim, "GET")
                self.assertEqual((status, body), (200, "genuine"))
                self.assertNotIn("x-injected", [k.lower() for k, _ in headers])
            # And the same tenant's next invocation gets its own answer too: the connection that
            # spoke unasked is dropped, not reused.
            status, body, _ = server.call(late, "GET")
            self.assertEqual((status, body), (200, "ok"))
            time.sleep(0.5)
            status, body, headers = server.call(late, "GET")
            self.assertEqual((status, body), (200, "ok"))
            self.assertNotIn("x-injected", [k.lower() for k, _ in headers])
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()
            upstream.close()


class NamesTest(SafetyTest):
    """Names resolved through a hosts file the test controls."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-dns-")
        cls.hosts = os.path.join(cls.tmp.name, "hosts")
        cls.point("93.184.216.34")
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        cls.server = Server(allow_loopback_upstreams=False,
                            prefix=["unshare", "--mount", "--", "sh", "-c", script, cls.hosts]).start()
        cls.upstream = Upstream()

    @classmethod
    def point(cls, rebind_address):
        # Written in place: the bind mount follows the file, not its name.
        with open(cls.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n127.0.0.1 sneaky.test\n169.254.169.254 metadata.test\n"
                    "::ffff:169.254.169.254 mapped.test\n10.0.0.1 fine.test\n%s rebind.test\n"
                    "fd00:ec2::254 imds6.test\n168.63.129.16 wireserver.test\n" % rebind_address)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        cls.tmp.cleanup()
        assert code == 0, code

    def test_names_that_resolve_to_closed_addresses_are_refused_at_export(self):
        export = token_of(self.new_membrane(self.server, "names")["capabilities"]["export"])
        for name in ("sneaky.test", "metadata.test", "mapped.test", "imds6.test", "wireserver.test"):
            with self.subTest(name=name):
                status, body = self.export(self.server, export, "http://%s:%d/" % (name, self.upstream.port))
                self.assertEqual(status, 400, body)
                self.assertTrue(body["message"].startswith("uri reaches "), body)
        self.assertEqual(self.export(self.server, export, "http://fine.test/")[0], 201)

    def test_a_name_re_pointed_after_the_export_is_not_called(self):
        self.point("93.184.216.34")
        export = token_of(self.new_membrane(self.server, "rebind")["capabilities"]["export"])
        status, body = self.export(self.server, export, "http://rebind.test:%d/echo" % self.upstream.port)
        self.assertEqual(status, 201, body)
        cap = token_of(body["capability"])
        self.point("127.0.0.1")  # DNS rebinding: now the name leads to the machine itself
        status, body, _ = self.server.call(cap, "GET")
        self.assertEqual(status, 502, body)
        self.assertIn("loopback", body["message"])
        self.assertEqual(self.upstream.requests, [], "the upstream on loopback must not have been called")


if __name__ == "__main__":
    unittest.main(verbosity=2)


class SilentDns:
    """A tiny DNS server on a loopback address, port 53 (UDP): it answers NXDOMAIN to every query
    but, once `silent` is set, never answers for names under never.attacker.test (a name whose
    servers do not answer: each lookup waits for the resolver's timeout)."""

    def __init__(self):
        import threading
        self.address = "127.53.%d.%d" % (os.getpid() % 250 + 1, threading.get_ident() % 250 + 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.address, 53))
        self.silent = False
        self.queries = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            labels, at = [], 12
            while at < len(packet) and packet[at] != 0:
                labels.append(packet[at + 1:at + 1 + packet[at]].decode("ascii", "replace"))
                at += 1 + packet[at]
            name = ".".join(labels).lower()
            self.queries.append(name)
            if self.silent and (name == "never.attacker.test" or name.endswith(".never.attacker.test")):
                continue
            question = packet[12:at + 5]
            answer = packet[:2] + b"\x81\x83" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
            try:
                self.sock.sendto(answer, peer)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class SlowDnsTest(SafetyTest):
    """One slow or never-answering DNS name must delay nobody else (attack review H2). membraned
    runs in a mount namespace of its own whose /etc/resolv.conf points at SilentDns (a lookup it
    does not answer takes the resolver's 20 s timeout) and whose /etc/hosts names victim.test."""

    LOOKUP_TIMEOUT_S = 20  # resolv.conf's: a silent name's lookup ends (EAI_AGAIN) no sooner
    SLOW_TIMEOUT_MS = 5000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-slowdns-")
        cls.dns = SilentDns()
        files = {"hosts": "127.0.0.1 localhost\n127.0.0.1 victim.test\n",
                 "resolv.conf": "nameserver %s\noptions timeout:%d attempts:1\n" % (cls.dns.address,
                                                                                    cls.LOOKUP_TIMEOUT_S),
                 "nsswitch.conf": "hosts: files dns\n"}
        for name, text in files.items():
            with open(os.path.join(cls.tmp.name, name), "w") as f:
                f.write(text)
        script = ('mount --bind "$0/hosts" /etc/hosts && mount --bind "$0/resolv.conf" /etc/resolv.conf && '
                  'mount --bind "$0/nsswitch.conf" /etc/nsswitch.conf && exec "$@"')
        cls.server = Server(prefix=["unshare", "--mount", "--", "sh", "-c", script, cls.tmp.name]).start()
        cls.upstream = Upstream()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        cls.dns.close()
        cls.tmp.cleanup()
        assert code == 0, code

    def export_as(self, export_token, uri, timeout_ms):
        conn = self.server.connection(timeout=3 * self.LOOKUP_TIMEOUT_S)
        status, body, _ = self.server.call(export_token, body={"uri": uri, "timeoutMs": timeout_ms}, conn=conn)
        conn.close()
        self.assertEqual(status, 201, body)
        return token_of(body["capability"])

    def invoke(self, cap, outcome):
        started = time.monotonic()
        try:
            conn = self.server.connection(timeout=3 * self.LOOKUP_TIMEOUT_S)
            status, body, _ = self.server.call(cap, "GET", conn=conn)
            conn.close()
        except OSError as e:
            status, body = None, repr(e)
        outcome.update(status=status, body=body, started=started, ended=time.monotonic())

    def test_a_name_that_never_resolves_delays_no_other_invocation(self):
        import threading
        self.dns.silent = False  # while exporting: the slow names do not resolve, at once
        attacker = token_of(self.new_membrane(self.server, "slow-names")["capabilities"]["export"])
        # The same name twice (one lookup would serve both) and three names of their own (each its
        # own lookup): a flood that would hold every resolver thread if nothing limited it.
        hosts = ["never.attacker.test", "never.attacker.test"] + ["x%d.never.attacker.test" % i for i in range(3)]
        slow = [self.export_as(attacker, "http://%s/x" % host, self.SLOW_TIMEOUT_MS) for host in hosts]
        other = self.server.tenant_create()
        status, m, _ = self.server.call(token_of(other["capabilities"]["create"]), body={"id": "victim"})
        self.assertEqual(status, 201, m)
        victim_export = token_of(m["capabilities"]["export"])
        victim = self.export_as(victim_export, "http://victim.test:%d/echo" % self.upstream.port, 5000)
        literal = self.export_as(victim_export, "http://127.0.0.1:%d/echo" % self.upstream.port, 5000)

        self.dns.silent = True
        asked_before = len(self.dns.queries)
        outcomes = [dict() for _ in slow]
        threads = [threading.Thread(target=self.invoke, args=(cap, out)) for cap, out in zip(slow, outcomes)]
        for t in threads:
            t.start()
        # The slow lookups are asked (or queued) before the victim comes.
        deadline = time.monotonic() + 10
        while sum(1 for q in self.dns.queries[asked_before:] if q.endswith("never.attacker.test")) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        by_name, by_address = {}, {}
        self.invoke(victim, by_name)
        self.invoke(literal, by_address)
        pending_when_victims_done = [t.is_alive() for t in threads]
        for t in threads:
            t.join()

        self.assertEqual(by_name["status"], 200, by_name["body"])
        self.assertEqual(by_address["status"], 200, by_address["body"])
        # The victims finished while every slow invocation was still waiting for its name.
        self.assertEqual(pending_when_victims_done, [True] * len(threads))
        self.assertLess(by_address["ended"], min(o["ended"] for o in outcomes))
        for host, out in zip(hosts, outcomes):
            with self.subTest(host=host):
                # 504 from the export's own deadline: the lookup itself could not have ended (the DNS
                # server never answers; glibc gives up only after LOOKUP_TIMEOUT_S).
                self.assertEqual(out["status"], 504, out["body"])
                self.assertEqual(out["body"]["message"], "the upstream did not answer in time")
                self.assertLess(out["ended"] - out["started"], self.LOOKUP_TIMEOUT_S)

    def test_the_export_time_check_of_a_silent_name_is_bounded(self):
        self.dns.silent = True
        export = token_of(self.new_membrane(self.server, "slow-export")["capabilities"]["export"])
        started = time.monotonic()
        # Answered, 201 (a name that does not resolve now is left to the invocation's check), while
        # the lookup it started cannot end before LOOKUP_TIMEOUT_S.
        self.export_as(export, "http://never.attacker.test/y", 1000)
        self.assertLess(time.monotonic() - started, self.LOOKUP_TIMEOUT_S)
