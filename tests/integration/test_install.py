"""`cmake --install` into a temporary prefix, and the installed systemd unit started with the
installed example configuration, as systemd would start it.

There is no systemd here, so the test does what the unit tells systemd to do: it reads the
installed unit's User=, Group=, ExecStart=, AmbientCapabilities=, CapabilityBoundingSet= and
NoNewPrivileges=, creates the user if missing (useradd --system, as the unit's header says), and
runs the ExecStart command line with setpriv as that user, with those capabilities and no others.

What the test changes, and nothing else (the rest of the unit and of the configuration is used as
installed):
- ExecStart's `--data-dir /var/lib/membraned`: a temporary folder owned by the user, mode 0700
  (what StateDirectory= makes);
- in membraned.toml, `tls-cert` and `tls-key`: a certificate for the shipped authority
  membrane.example.com made here, its key owned by the user, mode 0600;
- `audit-log`: a file in a temporary folder owned by the user (what LogsDirectory= makes);
- `metrics-listen`: port 0 instead of 9464 (any free port);
- `listen`: the port, only when 443 is taken on this machine: then another free port below 1024,
  which needs the same capability (ip_unprivileged_port_start is checked).
"""
import grp
import http.client
import json
import os
import pwd
import re
import shlex
import signal
import socket
import ssl
import subprocess
import tempfile
import unittest

CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")
BUILD_DIR = os.environ.get("MEMBRANED_BUILD_DIR")
AUTHORITY = "membrane.example.com"


def unit_settings(path):
    """{key: [values]} of the unit's [Service] section (a key may repeat)."""
    settings, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
    return settings


def capabilities(values):
    """setpriv's spelling of a unit's capability list: CAP_NET_BIND_SERVICE -> net_bind_service."""
    return [name.lower().removeprefix("cap_") for value in values for name in value.split()]


def port_is_free(port):
    try:
        socket.create_server(("0.0.0.0", port)).close()
        return True
    except OSError:
        return False


def privileged_port(preferred):
    """The configuration's port if free, else a free one that is still privileged here."""
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        first_unprivileged = int(f.read())
    assert preferred < first_unprivileged, "port %d needs no capability on this machine" % preferred
    if port_is_free(preferred):
        return preferred
    return next(p for p in range(min(first_unprivileged, 1024) - 1, 0, -1) if port_is_free(p))


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert BUILD_DIR, "MEMBRANED_BUILD_DIR (the build folder to install from) is not set"
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-install-")
        # The service's user must reach the installed files, as it would in /usr/local.
        os.chmod(cls.tmp.name, 0o755)
        cls.prefix = os.path.join(cls.tmp.name, "prefix")
        cls.install = subprocess.run([CMAKE, "--install", BUILD_DIR, "--prefix", cls.prefix],
                                     capture_output=True, text=True, timeout=300)
        assert cls.install.returncode == 0, cls.install.stdout + cls.install.stderr
        cls.unit_path = os.path.join(cls.prefix, "lib", "systemd", "system", "membraned.service")
        cls.config_path = os.path.join(cls.prefix, "etc", "membraned", "membraned.toml")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def installed(self, *parts):
        path = os.path.join(self.prefix, *parts)
        self.assertTrue(os.path.isfile(path), "not installed: " + path)
        return path

    def test_every_file_is_installed_with_the_prefix_paths(self):
        for program, section in (("membraned", 8), ("capi", 1)):
            version = subprocess.run([self.installed("bin", program), "--version"], capture_output=True, text=True)
            self.assertRegex(version.stdout, r"^%s 0\.1\.0 \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)\n$" % program)
            with open(self.installed("share", "man", "man%d" % section, "%s.%d" % (program, section))) as f:
                page = f.read()
            self.assertIn('.TH %s "%d"' % (program.upper(), section), page)
            self.assertNotIn(BUILD_DIR, page, "the page names the build folder")
        with open(self.installed("share", "man", "man8", "membraned.8")) as f:
            page = f.read()
        self.assertIn(r"\-\-authority", page)  # the flags, from --help
        self.assertIn("MEMBRANED_MASTER_KEY", page)  # the hand-written sections
        for doc in ("operations.md", "contract.md", "tutorial.md", "README.md", "LICENSE", "membraned.toml"):
            self.installed("share", "doc", "membraned", doc)
        self.installed("etc", "logrotate.d", "membraned")

        unit = unit_settings(self.unit_path)
        command = shlex.split(unit["ExecStart"][0])
        self.assertEqual(command[:4], [os.path.join(self.prefix, "bin", "membraned"), "serve", "--config",
                                       self.config_path])
        # Every Documentation= of the unit is an installed file.
        with open(self.unit_path) as f:
            documentation = re.search(r"(?m)^Documentation=(.*)$", f.read()).group(1).split()
        self.assertEqual(len(documentation), 2, documentation)
        for uri in documentation:
            man = re.fullmatch(r"man:([a-z]+)\((\d)\)", uri)
            if man:
                self.installed("share", "man", "man" + man.group(2), "%s.%s" % man.groups())
            else:
                self.assertTrue(uri.startswith("file://"), uri)
                self.assertTrue(os.path.isfile(uri[len("file://"):]), uri)

    def test_an_edited_configuration_is_kept_by_a_new_install(self):
        prefix = os.path.join(self.tmp.name, "again")
        config = os.path.join(prefix, "etc", "membraned", "membraned.toml")
        for edit in (None, 'authority = "edited.example.com"\n'):
            if edit:
                with open(config, "w") as f:
                    f.write(edit)
            out = subprocess.run([CMAKE, "--install", BUILD_DIR, "--prefix", prefix], capture_output=True, text=True,
                                 timeout=300)
            self.assertEqual(out.returncode, 0, out.stderr)
        with open(config) as f:
            self.assertEqual(f.read(), 'authority = "edited.example.com"\n')
        self.assertIn("Kept: " + config, out.stdout)


class UnitStartsAsShippedTest(unittest.TestCase):
    """The installed unit's command line, as its user with its capabilities, on the example file."""

    @classmethod
    def setUpClass(cls):
        assert BUILD_DIR, "MEMBRANED_BUILD_DIR (the build folder to install from) is not set"
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-unit-")
        os.chmod(cls.tmp.name, 0o755)
        prefix = os.path.join(cls.tmp.name, "prefix")
        out = subprocess.run([CMAKE, "--install", BUILD_DIR, "--prefix", prefix], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        cls.unit = unit_settings(os.path.join(prefix, "lib", "systemd", "system", "membraned.service"))
        cls.user = cls.unit["User"][0]
        cls.group = cls.unit["Group"][0]
        try:
            pwd.getpwnam(cls.user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--home-dir", "/var/lib/membraned", "--shell", "/usr/sbin/nologin",
                            cls.user], check=True, capture_output=True)
        cls.uid, cls.gid = pwd.getpwnam(cls.user).pw_uid, grp.getgrnam(cls.group).gr_gid
        cls.command = shlex.split(cls.unit["ExecStart"][0])
        cls.config = os.path.join(prefix, "etc", "membraned", "membraned.toml")
        cls.adapt_config()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def owned_dir(cls, name):
        path = os.path.join(cls.tmp.name, name)
        os.mkdir(path, 0o700)
        os.chown(path, cls.uid, cls.gid)
        return path

    @classmethod
    def adapt_config(cls):
        tls = cls.owned_dir("tls")
        cls.cert, key = os.path.join(tls, "fullchain.pem"), os.path.join(tls, "privkey.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cls.cert, "-days", "2", "-subj", "/CN=" + AUTHORITY,
                        "-addext", "subjectAltName=DNS:" + AUTHORITY], check=True, capture_output=True)
        for path in (cls.cert, key):
            os.chown(path, cls.uid, cls.gid)
            os.chmod(path, 0o600)
        with open(cls.config) as f:
            text = f.read()
        shipped_port = int(re.search(r'(?m)^listen = "0\.0\.0\.0:(\d+)"$', text).group(1))
        cls.port = privileged_port(shipped_port)
        for key_name, value in [("tls-cert", cls.cert), ("tls-key", key), ("metrics-listen", "127.0.0.1:0"),
                                ("audit-log", os.path.join(cls.owned_dir("logs"), "audit.log")),
                                ("listen", "0.0.0.0:%d" % cls.port)]:
            text, n = re.subn(r'(?m)^%s = ".*"$' % key_name, '%s = "%s"' % (key_name, value), text)
            assert n == 1, key_name
        with open(cls.config, "w") as f:
            f.write(text)

    def start(self, state, with_capabilities=True):
        """The ExecStart line under setpriv as the unit's user, with a new data directory: (process, stderr file)."""
        self.data_dir = self.owned_dir(state)
        command = list(self.command)
        command[command.index("--data-dir") + 1] = self.data_dir
        ambient = capabilities(self.unit.get("AmbientCapabilities", [])) if with_capabilities else []
        bounding = capabilities(self.unit.get("CapabilityBoundingSet", []))
        setpriv = ["setpriv", "--reuid", self.user, "--regid", self.group, "--init-groups",
                   "--bounding-set", ",".join(["-all"] + ["+" + c for c in bounding])]
        if ambient:
            caps = ",".join("+" + c for c in ambient)
            setpriv += ["--inh-caps", caps, "--ambient-caps", caps]
        if self.unit.get("NoNewPrivileges") == ["yes"]:
            setpriv.append("--no-new-privs")
        stderr = tempfile.TemporaryFile(dir=self.tmp.name)
        proc = subprocess.Popen(setpriv + command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd="/")
        return proc, stderr

    def request(self, method, token=None, body=None, path="/"):
        context = ssl.create_default_context(cafile=self.cert)

        class ToTheName(http.client.HTTPSConnection):
            # The certificate's name, at this machine's loopback address.
            def connect(conn):
                sock = socket.create_connection(("127.0.0.1", conn.port), conn.timeout)
                conn.sock = context.wrap_socket(sock, server_hostname=conn.host)

        conn = ToTheName(AUTHORITY, self.port, timeout=10, context=context)
        conn.request(method, path, body=json.dumps(body) if body else None,
                     headers={"Authorization": "Bearer " + token} if token else {})
        resp = conn.getresponse()
        answer = (resp.status, json.loads(resp.read()))
        conn.close()
        return answer

    def test_the_unit_serves_the_example_configuration_on_its_port_as_its_user(self):
        self.assertEqual(self.unit["AmbientCapabilities"], ["CAP_NET_BIND_SERVICE"])
        proc, stderr = self.start("state")
        try:
            line = proc.stdout.readline()
            while line.startswith("membraned: created") or line.startswith("membraned: data directory"):
                line = proc.stdout.readline()
            stderr.seek(0)
            self.assertIn("listening on https://0.0.0.0:%d (authority %s)" % (self.port, AUTHORITY), line,
                          stderr.read().decode())
            with open("/proc/%d/status" % proc.pid) as f:
                status = f.read()
            self.assertRegex(status, r"\nUid:\t%d\t%d\t" % (self.uid, self.uid))
            self.assertRegex(status, r"\nCapEff:\t0000000000000400\n")  # CAP_NET_BIND_SERVICE alone

            self.assertEqual(self.request("GET", path="/healthz"), (200, {"status": "ok", "store": "sqlite"}))
            with open(os.path.join(self.data_dir, "first-tenant.json")) as f:
                tenant = json.load(f)
            create = tenant["capabilities"]["create"]
            self.assertTrue(create.startswith("cpblty://%s/#CPBLTY1-" % AUTHORITY), create)
            status, membrane = self.request("POST", create.split("#")[1], {"id": "installed"})
            self.assertEqual(status, 201, membrane)
            self.assertTrue(membrane["capabilities"]["export"].startswith("cpblty://%s/#" % AUTHORITY))
            status, listed = self.request("GET", tenant["capabilities"]["query"].split("#")[1], path="/?limit=10")
            self.assertEqual((status, [m["id"] for m in listed["membranes"]]), (200, ["installed"]))
            # Everything it wrote is its own, and private.
            for name in ("membraned.db", "master.key", "first-tenant.json"):
                info = os.stat(os.path.join(self.data_dir, name))
                self.assertEqual((info.st_uid, info.st_mode & 0o077), (self.uid, 0), name)
        finally:
            proc.send_signal(signal.SIGTERM)  # the unit's KillSignal=
            code = proc.wait(timeout=60)
            proc.stdout.close()
        stderr.seek(0)
        self.assertEqual(code, 0, stderr.read().decode())

    def test_without_the_capability_the_port_is_refused(self):
        # The control: the port the test uses is privileged here, so the capability is what
        # lets the service start.
        proc, stderr = self.start("state-without-capability", with_capabilities=False)
        code = proc.wait(timeout=60)
        proc.stdout.close()
        stderr.seek(0)
        self.assertEqual(code, 1)
        self.assertIn("cannot listen on 0.0.0.0:%d: Permission denied" % self.port, stderr.read().decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
