"""Issue 9: with the PostgreSQL store, no I/O thread ever waits on the database. Store calls run
on the store threads while the session waits; so when the database holds every store call of
the moment (a table locked by another client), the service still answers what needs no store
(/metrics) and what the remaining store threads can serve (/healthz), and the held requests
finish once the database lets them. A real PostgreSQL (the pg_cluster fixture), real processes."""
import subprocess
import threading
import time
import unittest

from harness import PgCluster, Server, http_get, new_master_key, token_of


class StoreCallsOffTheIoThreadsTest(unittest.TestCase):
    def test_requests_held_by_the_database_do_not_hold_the_io_threads(self):
        cluster = PgCluster.shared()
        url = cluster.create_database("io")
        # Two I/O threads, three store threads (the default pool: threads + 1); the statement
        # timeout is long so that only the lock's release ends the held requests.
        server = Server(store=url, master_key=new_master_key(),
                        args=["--metrics", "--db-statement-timeout-ms", "120000"]).start()
        self.addCleanup(server.cleanup)
        query = token_of(server.first_tenant()["capabilities"]["query"])
        self.assertEqual(http_get(server.port, "/healthz"), (200, "application/json", '{"status":"ok","store":"postgresql"}'))

        # Another client takes the capabilities table: every capability lookup now waits.
        locker = subprocess.Popen(["psql", "-X", "-q", "-t", "-A", url], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(locker.kill)
        locker.stdin.write("BEGIN;\nLOCK TABLE capabilities IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n")
        locker.stdin.flush()
        self.assertEqual(locker.stdout.readline().strip(), "locked")

        # As many held requests as there are I/O threads: were store calls made on the I/O
        # threads, both would now be stuck and nothing else could be answered.
        results = []
        def held():
            results.append(server.call(query, "GET")[0])
        threads = [threading.Thread(target=held) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        waiting = 0
        while time.time() < deadline:
            waiting = int(cluster.psql(cluster.url, "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
                                                    "AND wait_event_type = 'Lock'" % url.rsplit("/", 1)[1]))
            if waiting >= 2:
                break
            time.sleep(0.1)
        self.assertEqual(waiting, 2, "both requests should be waiting on the lock")

        status, _, text = http_get(server.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("membraned_open_connections", text)
        # The third store thread still reaches the database (tenants is not locked).
        self.assertEqual(http_get(server.port, "/healthz")[0], 200)
        self.assertTrue(all(t.is_alive() for t in threads), "the held requests cannot have finished")
        self.assertEqual(results, [])

        locker.stdin.write("COMMIT;\n\\q\n")
        locker.stdin.flush()
        locker.wait(timeout=30)
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(results, [200, 200])
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
