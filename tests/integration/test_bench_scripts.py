"""The load scripts of bench/ must keep working as the service changes: each is run here for a
second per step against this build, and its table must show answers and no errors. (They once
stopped starting membraned when `serve` began to refuse a missing data directory, and nothing
noticed.) The figures themselves mean nothing here (a sanitizer build, a second per run): they
are measured with the release build and written in docs/benchmarks.md.
"""
import os
import re
import subprocess
import unittest

from harness import BINARY

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SEEDER = os.environ.get("MEMBRANED_SEED_GRANTS", "")
ROW = re.compile(r"^\| (.+?) +\| +([0-9.]+) \| +(\S+) \| +(\S+) \|(.*)$", re.M)


def run_script(args, timeout=300):
    result = subprocess.run(["bash"] + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError("%s exited with %d:\n%s\n%s" % (args[0], result.returncode, result.stdout, result.stderr))
    return result.stdout


class BenchScriptsTest(unittest.TestCase):
    def rows(self, out):
        rows = {label.strip(): (float(rps), errors.strip()) for label, rps, _, _, errors in ROW.findall(out)}
        self.assertTrue(rows, out)
        for label, (rps, errors) in rows.items():
            self.assertGreater(rps, 0, (label, out))
            self.assertEqual(errors, "", (label, out))  # no non-2xx answer, no socket error
        return rows

    def test_proxy_load_compares_membraned_with_nginx(self):
        out = run_script(["bench/proxy_load.sh", BINARY, "1", "4"])
        rows = self.rows(out)
        self.assertIn("membraned invoke (SigV4), 1 thread(s)", rows)
        self.assertIn("nginx proxy_pass, keep-alive, 1 worker(s)", rows)
        self.assertIn("Node aws4 signing proxy, 1 process", rows)  # node and npm come with the tests

    def test_write_load_measures_exports_on_both_stores_and_revokes(self):
        out = run_script(["bench/write_load.sh", BINARY, "1", "4"])
        rows = self.rows(out)
        self.assertEqual(sorted(rows), sorted([
            "SQLite, one commit per export (--write-threads 0)", "SQLite, group commit (--write-threads 32, default)",
            "SQLite, group commit, audit log on", "PostgreSQL (fsync on), --db-connections 4"]))
        revokes = re.findall(r"^\| (.+?) +\| +(\d+) \| +([0-9.]+) ms \|$", out, re.M)
        self.assertEqual(len(revokes), 4, out)
        below = [int(n) for _, n, _ in revokes]
        self.assertEqual(below[0], 1)
        self.assertEqual(below[2], 1)
        # the export runs made the grants the second revoke of each store cut
        self.assertGreater(below[1], 1, out)
        self.assertGreater(below[3], 1, out)

    @unittest.skipUnless(SEEDER, "bench/seed_grants is not built (MEMBRANED_BUILD_BENCHMARKS off)")
    def test_many_holders_reports_the_ratio_the_cache_and_the_memory(self):
        build = os.path.dirname(os.path.dirname(os.path.abspath(SEEDER)))
        self.assertTrue(os.path.samefile(os.path.join(build, "server", "membraned"), BINARY))
        out = run_script(["bench/many_holders.sh", build, "1", "4", "300"])
        rows = self.rows(out)
        self.assertEqual(sorted(rows), sorted(["one token (one-hot)", "random token, first 1 s",
                                               "random token, next 1 s"]))
        m = re.search(r"random / one-hot: ([0-9.]+); cache hit ratio in the second random run: ([0-9.]+)%; "
                      r"(\d+) resolutions cached .*membraned RSS (\d+) MB", out)
        self.assertIsNotNone(m, out)
        self.assertGreater(float(m.group(1)), 0)
        self.assertGreater(float(m.group(2)), 50)  # 300 tokens all fit: nearly every lookup hits
        self.assertLessEqual(int(m.group(3)), 300)
        self.assertGreater(int(m.group(4)), 0)


if __name__ == "__main__":
    unittest.main()
