"""Grants that end by themselves, and revoking one grant (contract §11-12), against the real
binary and a recording upstream: what a holder sees, and what the upstream receives."""
import concurrent.futures
import datetime
import time
import unittest

from harness import Server, Upstream, token_of

UNKNOWN_401 = {"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"}


def rfc3339(seconds_from_now):
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class GrantTest(unittest.TestCase):
    # The harness connects from 127.0.0.1; the service trusts it as a proxy in this class, so
    # that X-Forwarded-For can stand for other requesters.
    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream()
        cls.server = Server(args=["--trusted-proxies", "127.0.0.1/32"]).start()
        cls.tenant = cls.server.first_tenant()
        cls.create = token_of(cls.tenant["capabilities"]["create"])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        assert code == 0, code

    def membrane(self):
        status, body, _ = self.server.call(self.create, body={"id": "m-%d" % time.monotonic_ns()})
        self.assertEqual(status, 201, body)
        return body

    def export(self, membrane=None, expect=201, **fields):
        membrane = membrane or self.membrane()
        if "capability" not in fields:
            fields.setdefault("uri", self.upstream.url("/echo/%d" % time.monotonic_ns()))
        status, body, _ = self.server.call(token_of(membrane["capabilities"]["export"]), body=fields)
        self.assertEqual(status, expect, body)
        if status == 201:
            body["_uri"] = fields.get("uri")  # the upstream it reaches, for counting arrivals
        return body

    def invoke(self, grant, headers=None):
        return self.server.call(token_of(grant["capability"]), body={"x": 1}, headers=headers)

    def arrived_for(self, uri):
        path = uri.split("127.0.0.1:%d" % self.upstream.port, 1)[1]
        return len([r for r in self.upstream.requests if r["path"] == path])

    # --- the handle and revoking one grant -------------------------------------------------------

    def test_revoking_a_grant_cuts_it_and_its_re_exports_and_nothing_else(self):
        m, n = self.membrane(), self.membrane()
        x = self.export(m)
        sibling = self.export(m)
        y = self.export(n, capability=x["capability"])
        self.assertRegex(x["id"], r"^g_[0-9a-f]{24}$")
        self.assertNotEqual(x["id"], y["id"])
        for grant in (x, y, sibling):
            self.assertEqual(self.invoke(grant)[0], 200)
        status, body, _ = self.server.call(token_of(x["revoke"]), "DELETE")
        self.assertEqual((status, body), (202, {"statusCode": 202, "message": "Accepted"}))
        self.assertEqual(self.invoke(x)[:2], (401, UNKNOWN_401))
        self.assertEqual(self.invoke(y)[:2], (401, UNKNOWN_401))
        self.assertEqual(self.invoke(sibling)[0], 200)
        # The membrane lives on: it still exports.
        self.assertEqual(self.invoke(self.export(m))[0], 200)
        # Repeatable.
        self.assertEqual(self.server.call(token_of(x["revoke"]))[0], 202)
        # A grant's revoke capability is no export capability: it cannot export or invoke.
        self.assertEqual(self.server.call(token_of(sibling["revoke"]), body={"uri": self.upstream.url()})[0], 202)
        self.assertEqual(self.invoke(sibling)[0], 401, "the body was ignored and the grant revoked")

    # --- expiry ----------------------------------------------------------------------------------

    def test_an_expiring_grant_works_until_its_time_and_then_answers_401(self):
        grant = self.export(expiresAt=rfc3339(2))
        self.assertIn("expiresAt", grant)
        self.assertEqual(self.invoke(grant)[0], 200)
        time.sleep(2.5)
        self.assertEqual(self.invoke(grant)[:2], (401, UNKNOWN_401))
        self.assertEqual(self.arrived_for(grant["_uri"]), 1, "nothing was sent after the expiry")

    # --- uses ------------------------------------------------------------------------------------

    def test_max_uses_is_exact_under_concurrent_holders(self):
        uri = self.upstream.url("/echo/uses-%d" % time.monotonic_ns())
        grant = self.export(uri=uri, maxUses=7)
        self.assertEqual(grant["maxUses"], 7)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: self.invoke(grant)[0], range(40)))
        self.assertEqual(statuses.count(200), 7, statuses)
        self.assertEqual(statuses.count(401), 33, statuses)
        self.assertEqual(self.arrived_for(uri), 7)

    def test_a_use_of_a_re_export_is_a_use_of_its_parent(self):
        uri = self.upstream.url("/echo/chain-%d" % time.monotonic_ns())
        parent = self.export(uri=uri, maxUses=3)
        child = self.export(capability=parent["capability"], maxUses=100, label="partner")
        self.assertEqual(child["maxUses"], 3, "the 201 reports what takes effect")
        self.assertEqual(child["label"], "partner")
        self.assertEqual([self.invoke(child)[0] for _ in range(3)], [200, 200, 200])
        self.assertEqual(self.invoke(parent)[0], 401)
        self.assertEqual(self.arrived_for(uri), 3)

    def test_a_re_exported_create_counts_operations(self):
        m = self.membrane()
        status, body, _ = self.server.call(token_of(m["capabilities"]["export"]),
                                           body={"capability": self.tenant["capabilities"]["create"], "maxUses": 2})
        self.assertEqual(status, 201, body)
        delegated = token_of(body["capability"])
        results = [self.server.call(delegated, body={"id": "via-%d-%d" % (i, time.monotonic_ns())})[0] for i in range(3)]
        self.assertEqual(results, [201, 201, 401])

    # --- rate ------------------------------------------------------------------------------------

    def test_over_its_rate_a_grant_answers_429_with_retry_after_and_sends_nothing(self):
        uri = self.upstream.url("/echo/rate-%d" % time.monotonic_ns())
        grant = self.export(uri=uri, rateLimit={"requests": 2, "perSeconds": 60})
        self.assertEqual(grant["rateLimit"], {"requests": 2, "perSeconds": 60})
        self.assertEqual([self.invoke(grant)[0] for _ in range(2)], [200, 200])
        status, body, headers = self.invoke(grant)
        self.assertEqual((status, body), (429, {"statusCode": 429, "error": "Too Many Requests",
                                                "message": "this capability's rate limit is reached"}))
        retry_after = dict((k.lower(), v) for k, v in headers)["retry-after"]
        self.assertTrue(1 <= int(retry_after) <= 60, retry_after)
        self.assertEqual(self.arrived_for(uri), 2)

    # --- addresses -------------------------------------------------------------------------------

    def test_allow_from_admits_only_its_addresses_and_believes_only_trusted_proxies(self):
        uri = self.upstream.url("/echo/from-%d" % time.monotonic_ns())
        grant = self.export(uri=uri, allowFrom=["10.0.0.0/8", "2001:db8::/32"])
        self.assertEqual(grant["allowFrom"], ["10.0.0.0/8", "2001:db8::/32"])
        # From the trusted proxy itself, with no forwarded address: 127.0.0.1 is not admitted.
        status, body, _ = self.invoke(grant)
        self.assertEqual(body, {"statusCode": 403, "error": "Forbidden",
                                "message": "this capability may not be used from this address"})
        self.assertEqual(self.invoke(grant, {"X-Forwarded-For": "10.1.2.3"})[0], 200)
        self.assertEqual(self.invoke(grant, {"X-Forwarded-For": "2001:db8::7"})[0], 200)
        # The right-most entry the trusted proxy appended decides, not what the client wrote.
        self.assertEqual(self.invoke(grant, {"X-Forwarded-For": "10.1.2.3, 192.0.2.1"})[0], 403)
        self.assertEqual(self.arrived_for(uri), 2)

    # --- bad values ------------------------------------------------------------------------------

    def test_bad_grant_fields_are_400_naming_the_field_and_store_nothing(self):
        uri = self.upstream.url()
        cases = [
            ({"expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"),
            ({"expiresAt": "tomorrow"}, "expiresAt"),
            ({"maxUses": 0}, "maxUses"),
            ({"maxUses": 1.5}, "maxUses"),
            ({"rateLimit": {"requests": 1}}, "rateLimit.perSeconds"),
            ({"rateLimit": {"requests": 1, "perSeconds": 86401}}, "rateLimit.perSeconds"),
            ({"rateLimit": {"requests": 1, "perSeconds": 1, "burst": 2}}, "rateLimit.burst"),
            ({"allowFrom": []}, "allowFrom"),
            ({"allowFrom": ["10.0.0.0/33"]}, "allowFrom[0]"),
            ({"label": "a\nb"}, "label"),
            ({"label": "x" * 257}, "label"),
        ]
        for fields, field in cases:
            with self.subTest(fields=fields):
                body = self.export(expect=400, uri=uri, **fields)
                self.assertEqual(body["statusCode"], 400)
                self.assertTrue(body["message"].startswith(field), body)


class UntrustedProxyTest(unittest.TestCase):
    """Without --trusted-proxies, X-Forwarded-For is never believed."""

    def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(self):
        upstream = Upstream()
        server = Server().start()
        try:
            create = token_of(server.first_tenant()["capabilities"]["create"])
            _, m, _ = server.call(create, body={"id": "m"})
            status, grant, _ = server.call(token_of(m["capabilities"]["export"]),
                                           body={"uri": upstream.url(), "allowFrom": ["10.0.0.0/8"]})
            self.assertEqual(status, 201, grant)
            status, body, _ = server.call(token_of(grant["capability"]), headers={"X-Forwarded-For": "10.1.2.3"})
            self.assertEqual(status, 403, body)
            self.assertEqual(upstream.requests, [])
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()
            upstream.close()


if __name__ == "__main__":
    unittest.main()
