"""docs/operations.md must document every flag membraned has, and the environment variable of
each flag that reads one: a flag added without documentation fails this test.

The flags are taken from the binary itself (`--help` of the top-level command and of the `serve`,
`tenant create` and `admin` subcommands), the environment variables from the `(Env:...)` notes of that
help and from the `getenv("MEMBRANED_...")` calls in the service's sources.
"""
import os
import re
import subprocess
import unittest

from harness import BINARY

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
HELP_COMMANDS = (["--help"], ["serve", "--help"], ["tenant", "create", "--help"], ["admin", "--help"],
                 ["admin", "grants", "--help"], ["admin", "revoke-grant", "--help"])

# An option line of CLI11's help: "  --name ...", "  -h,--help ...".
OPTION_LINE = re.compile(r"^\s+(?:-[A-Za-z0-9],\s*)?(--[A-Za-z0-9][A-Za-z0-9-]*)(.*)$")
ENV_NOTE = re.compile(r"\(Env:(MEMBRANED_[A-Z0-9_]+)\)")
GETENV = re.compile(r'getenv\(\s*"(MEMBRANED_[A-Z0-9_]+)"\s*\)')


def help_text(args):
    result = subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError("membraned %s exited with %d: %s" % (" ".join(args), result.returncode, result.stderr))
    return result.stdout


def flags_and_env():
    """{flag: env var or None} over the three help texts."""
    found = {}
    for args in HELP_COMMANDS:
        for line in help_text(args).splitlines():
            m = OPTION_LINE.match(line)
            if not m:
                continue
            flag, rest = m.group(1), m.group(2)
            env = ENV_NOTE.search(rest)
            if env or flag not in found:
                found[flag] = env.group(1) if env else None
    return found


def env_vars_read_by_sources():
    names = set()
    for folder in ("server", "storage", "api"):
        path = os.path.join(ROOT, folder)
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            if name.endswith((".cpp", ".hpp", ".ipp")):
                with open(os.path.join(path, name), encoding="utf-8") as f:
                    names.update(GETENV.findall(f.read()))
    return names


class OperationsDocTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(OPERATIONS, encoding="utf-8") as f:
            cls.doc = f.read()
        cls.flags = flags_and_env()

    def test_the_help_lists_flags(self):
        # Guards against a help format this test no longer understands (it would then pass vacuously).
        for flag in ("--data-dir", "--listen", "--authority"):
            self.assertIn(flag, self.flags, "membraned --help no longer lists %s in a form this test reads" % flag)

    def test_every_flag_is_documented(self):
        missing = [flag for flag in sorted(self.flags) if "`%s`" % flag not in self.doc]
        self.assertEqual(missing, [], "flags of membraned missing from docs/operations.md (write them as `--flag`)")

    def test_every_environment_variable_of_a_flag_is_documented(self):
        missing = []
        for flag, env in sorted(self.flags.items()):
            if env is None:
                continue
            expected = "MEMBRANED_" + flag[2:].upper().replace("-", "_")
            self.assertEqual(env, expected, "%s reads %s, not MEMBRANED_<FLAG>" % (flag, env))
            if "`%s`" % env not in self.doc:
                missing.append(env)
        self.assertEqual(missing, [], "environment variables missing from docs/operations.md (write them as `NAME`)")

    def test_every_environment_variable_read_directly_is_documented(self):
        names = env_vars_read_by_sources()
        self.assertIn("MEMBRANED_MASTER_KEY", names)
        missing = [name for name in sorted(names) if "`%s`" % name not in self.doc]
        self.assertEqual(missing, [], "environment variables read by the service missing from docs/operations.md")


if __name__ == "__main__":
    unittest.main()
