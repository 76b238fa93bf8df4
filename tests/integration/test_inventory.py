"""The inventory (contract §12) over HTTP with the real binary: what an owner sees of the grants
handed out through a membrane, paged like membranes, and never a token, secret or query string."""
import datetime
import json
import time
import unittest
import urllib.parse

from harness import Server, Upstream, token_of

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY-inventory"


class InventoryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream()
        cls.server = Server().start()
        cls.tenant = cls.server.first_tenant()
        cls.create = token_of(cls.tenant["capabilities"]["create"])
        cls.query = token_of(cls.tenant["capabilities"]["query"])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        cls.upstream.close()
        assert code == 0, code

    def membrane(self, mid):
        status, body, _ = self.server.call(self.create, body={"id": mid})
        self.assertEqual(status, 201, body)
        return body

    def export(self, membrane, **fields):
        status, body, _ = self.server.call(token_of(membrane["capabilities"]["export"]), body=fields)
        self.assertEqual(status, 201, body)
        return body

    def inventory(self, token=None, **params):
        status, body, _ = self.server.call(token or self.query, "GET", "/?" + urllib.parse.urlencode(params))
        return status, body

    def test_an_owner_sees_every_grant_of_a_membrane_in_pages_and_nothing_secret(self):
        m = self.membrane("inv-%d" % time.monotonic_ns())
        n = self.membrane("inv-n-%d" % time.monotonic_ns())
        uri = self.upstream.url("/echo/fn") + "?token=query-secret-123"
        hmac = {"aws4-hmac-sha256": {"awsAccessKeyId": "AKIDINVENTORY", "secretAccessKey": SECRET,
                                     "region": "us-east-1", "service": "lambda"}}
        made = [self.export(m, uri=uri, method="POST", hmac=hmac, label="grant %d" % i, maxUses=10 + i)
                for i in range(5)]
        child = self.export(n, capability=made[0]["capability"], label="partner")
        self.assertEqual(self.server.call(token_of(made[1]["revoke"]))[0], 202)

        listed, last = [], None
        for _ in range(5):
            params = {"exportsOf": m["id"], "limit": 2}
            if last:
                params["lastId"] = last
            status, body = self.inventory(**params)
            self.assertEqual(status, 200, body)
            self.assertLessEqual(len(body["exports"]), 2)
            listed += body["exports"]
            if body["completed"]:
                break
            last = body["exports"][-1]["id"]
        self.assertEqual([e["id"] for e in listed], sorted(g["id"] for g in made))
        by_id = {e["id"]: e for e in listed}
        first = by_id[made[0]["id"]]
        self.assertEqual(first["membrane"], m["id"])
        self.assertEqual(first["kind"], "uri")
        self.assertEqual(first["target"], self.upstream.url("/echo/fn"))
        self.assertEqual(first["method"], "POST")
        self.assertEqual(first["label"], "grant 0")
        self.assertEqual(first["maxUses"], 10)
        self.assertIsNone(first["standsFor"])
        self.assertFalse(first["revoked"])
        self.assertIsNone(first["revokedAt"])
        self.assertEqual(first["state"], "active")
        self.assertTrue(by_id[made[1]["id"]]["revoked"])
        self.assertIsNotNone(by_id[made[1]["id"]]["revokedAt"])
        self.assertEqual(by_id[made[1]["id"]]["state"], "revoked")
        self.assertEqual(set(first), {"id", "label", "membrane", "kind", "operation", "target", "method", "standsFor",
                                      "createdAt", "expiresAt", "maxUses", "uses", "lastUsedAt", "rateLimit",
                                      "allowFrom", "revoked", "revokedAt", "state"})

        status, body = self.inventory(grant=child["id"])
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["exports"]), 1)
        self.assertEqual(body["exports"][0]["standsFor"], made[0]["id"])
        self.assertEqual(body["exports"][0]["kind"], "reexport")
        self.assertEqual(body["exports"][0]["membrane"], n["id"])

        everything = json.dumps(listed) + json.dumps(body)
        for needle in [SECRET, "query-secret-123", "AKIDINVENTORY"] + [
                token_of(g[k]) for g in made + [child] for k in ("capability", "revoke")]:
            self.assertNotIn(needle, everything)

    def state_of(self, grant):
        status, body = self.inventory(grant=grant["id"])
        self.assertEqual(status, 200, body)
        return body["exports"][0]["state"]

    def test_the_state_says_whether_a_grant_still_acts_and_why_not(self):
        m = self.membrane("inv-state-%d" % time.monotonic_ns())
        n = self.membrane("inv-state-n-%d" % time.monotonic_ns())
        parent = self.export(m, uri=self.upstream.url("/echo/state"))
        child = self.export(n, capability=parent["capability"])
        in_a_second = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
        soon = self.export(n, uri=self.upstream.url("/echo/soon"),
                           expiresAt=in_a_second.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        once = self.export(n, uri=self.upstream.url("/echo/once"), maxUses=1)
        self.assertEqual([self.state_of(g) for g in (parent, child, soon, once)], ["active"] * 4)
        self.assertEqual(self.server.call(token_of(once["capability"]), body={})[0], 200)
        time.sleep(1.5)  # soon expires; once's use is written
        self.assertEqual(self.state_of(soon), "expired")
        self.assertEqual(self.state_of(once), "used-up")
        self.assertEqual(self.server.call(token_of(m["capabilities"]["revoke"]))[0], 202)
        # Cut by the revocation of the membrane above: not marked revoked, but no longer acting.
        for grant in (parent, child):
            status, body = self.inventory(grant=grant["id"])
            self.assertEqual(body["exports"][0]["state"], "cut")
            self.assertFalse(body["exports"][0]["revoked"])
            self.assertEqual(self.server.call(token_of(grant["capability"]), body={})[0], 401)

    def test_nothing_but_a_query_capability_of_the_tenant_lists(self):
        m = self.membrane("inv-only-%d" % time.monotonic_ns())
        grant = self.export(m, uri=self.upstream.url())
        # Another tenant's query capability sees nothing, under the same membrane id too.
        other = self.server.tenant_create()
        status, body = self.inventory(token_of(other["capabilities"]["query"]), exportsOf=m["id"])
        self.assertEqual((status, body), (200, {"exports": [], "completed": True}))
        status, body = self.inventory(token_of(other["capabilities"]["query"]), grant=grant["id"])
        self.assertEqual((status, body), (200, {"exports": [], "completed": True}))
        # A membrane's export capability, a grant's own token and its revoke capability do not list.
        for token in (m["capabilities"]["export"], grant["capability"]):
            status, body = self.inventory(token_of(token), exportsOf=m["id"])
            self.assertNotIn("exports", body if isinstance(body, dict) else {}, body)

    def test_uses_and_last_use_follow_what_the_upstream_received(self):
        m = self.membrane("inv-uses-%d" % time.monotonic_ns())
        n = self.membrane("inv-uses-n-%d" % time.monotonic_ns())
        path = "/echo/uses-%d" % time.monotonic_ns()
        limited = self.export(m, uri=self.upstream.url(path), maxUses=4)
        unlimited = self.export(m, uri=self.upstream.url(path + "/u"))
        child = self.export(n, capability=limited["capability"])
        results = [self.server.call(token_of(g["capability"]), body={})[0]
                   for g in (limited, limited, child, unlimited, unlimited, unlimited, child, child)]
        self.assertEqual(results.count(401), 1, results)  # the fifth use of the limited grant
        time.sleep(1.5)  # the counts are written once a second
        uses = {}
        for g in (limited, unlimited, child):
            status, body = self.inventory(grant=g["id"])
            self.assertEqual(status, 200, body)
            uses[g["id"]] = body["exports"][0]
        received = len([r for r in self.upstream.requests if r["path"] == path])
        self.assertEqual(uses[limited["id"]]["uses"], received)  # its own uses and its child's
        self.assertEqual(uses[limited["id"]]["uses"], 4)
        self.assertEqual(uses[child["id"]]["uses"], 2)
        self.assertEqual(uses[unlimited["id"]]["uses"], 3)
        self.assertIsNotNone(uses[unlimited["id"]]["lastUsedAt"])

    def test_bad_parameters_are_400(self):
        cases = [
            "/?exportsOf=m&limit=0",
            "/?exportsOf=m&limit=-1",
            "/?exportsOf=m&exportsOf=n",
            "/?exportsOf=m&grant=g_1",
            "/?grant=a&grant=b",
            "/?exportsOf=%zz",
        ]
        for target in cases:
            with self.subTest(target=target):
                status, body, _ = self.server.call(self.query, "GET", target)
                self.assertEqual(status, 400, body)
                self.assertEqual(body["statusCode"], 400)


if __name__ == "__main__":
    unittest.main()
