"""contract §9: exports that sign with credentials the operator makes available, so that no AWS
secret is stored anywhere.
  - The service's environment (as a Lambda function has its execution role's AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, here towards an execute-api stage), and keys in
    the --aws-config file.
  - The EC2 instance role over IMDSv2, then STS AssumeRole, then Lambda Invoke (an EC2 instance
    invoking a function through a role it assumes), chains of two AssumeRoles with an
    ExternalId, the ECS container role, STS error documents, an IMDS that is down at start and
    recovers, and short-lived credentials refreshed once per refresh however many requests wait.
  - Grants per tenant; a profile whose credentials cannot be had is 502 naming it; a cycle stops
    the start.
The fakes verify every signature, session token included, with botocore: the Lambda and stage
fakes the invocation's, the fake STS the AssumeRole request's (made with the instance's or the
previous role's temporary credentials)."""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

from harness import BINARY, Pki, Server, token_of
from test_tutorial import FAKE_PYTHON, HERE, start_fake_aws, stop_fake_aws

ACCESS_KEY = "ASIAENVIRONMENTKEY01"
SECRET = "env-secret-" + uuid.uuid4().hex
SESSION_TOKEN = "FwoGZXIvYXdzE" + uuid.uuid4().hex

CONFIG = """
[profile api-caller]
credential_source = Environment
membraned_tenants = *

[profile someone-elses]
credential_source = Environment
membraned_tenants = tenant-that-is-not-yours

[profile from-instance]
credential_source = Ec2InstanceMetadata
membraned_tenants = *
"""


class EnvironmentCredentialsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-creds-")
        cls.fake, cls.fake_url = start_fake_aws("--access-key", ACCESS_KEY, "--secret", SECRET,
                                                "--session-token", SESSION_TOKEN)
        config = os.path.join(cls.tmp.name, "aws-config")
        with open(config, "w") as f:
            f.write(CONFIG)
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": SESSION_TOKEN,
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1"}
        cls.config = config
        cls.server = Server(args=["--aws-config", config], env=env).start()
        create = token_of(cls.server.first_tenant()["capabilities"]["create"])
        status, m, _ = cls.server.call(create, body={"id": "creds"})
        cls.export = token_of(m["capabilities"]["export"])

    def test_the_start_names_the_profiles_it_loaded(self):
        # The line after "listening on" (no metrics listener here).
        self.assertEqual(self.server.proc.stdout.readline(),
                         "membraned: AWS profiles from %s: api-caller, from-instance, someone-elses\n" % self.config)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        cls.server.cleanup()
        stop_fake_aws(cls.fake)
        cls.tmp.cleanup()
        assert code == 0, code

    def stage_export(self, profile):
        return {"uri": self.fake_url + "/stage/items", "allowQuery": True,
                "hmac": {"aws4-hmac-sha256": {"credentials": profile, "region": "us-east-1", "service": "execute-api"}}}

    def test_the_execution_roles_environment_signs_execute_api_requests(self):
        status, body, _ = self.server.call(self.export, body=self.stage_export("api-caller"))
        self.assertEqual(status, 201, body)
        cap = token_of(body["capability"])
        for method in ("GET", "POST", "DELETE"):
            status, answer, _ = self.server.call(cap, method, "/?page=2", body='{"a":1}' if method == "POST" else None)
            self.assertEqual(status, 200, answer)  # botocore checked the signature and the session token
            self.assertEqual((answer["method"], answer["query"]), (method, "page=2"))
        # A re-export signs with the same profile.
        create = token_of(self.server.first_tenant()["capabilities"]["create"])
        status, m2, _ = self.server.call(create, body={"id": "creds-partner"})
        status, again, _ = self.server.call(token_of(m2["capabilities"]["export"]), body={"capability": body["capability"]})
        self.assertEqual(self.server.call(token_of(again["capability"]), "GET")[0], 200)
        # No secret of the environment is in the database.
        for name in os.listdir(self.server.data_dir):
            with open(os.path.join(self.server.data_dir, name), "rb") as f:
                data = f.read()
            self.assertNotIn(SECRET.encode(), data, name)
            self.assertNotIn(SESSION_TOKEN.encode(), data, name)

    def test_a_profile_not_granted_or_unknown_is_400_naming_credentials(self):
        for profile in ("someone-elses", "no-such-profile"):
            with self.subTest(profile=profile):
                status, body, _ = self.server.call(self.export, body=self.stage_export(profile))
                self.assertEqual(status, 400, body)
                self.assertTrue(body["message"].startswith("credentials "), body)

    def test_a_profile_without_valid_credentials_is_502_naming_it(self):
        status, body, _ = self.server.call(self.export, body=self.stage_export("from-instance"))
        self.assertEqual(status, 201, body)
        status, answer, _ = self.server.call(token_of(body["capability"]), "GET")
        self.assertEqual(status, 502, answer)
        self.assertIn('"from-instance"', answer["message"])
        self.assertNotIn(SECRET, answer["message"])


ROLE = "arn:aws:iam::123456789012:role/"

ROLE_CONFIG = """
[profile instance]
credential_source = Ec2InstanceMetadata
membraned_tenants = *

[profile lambda-invoker]
role_arn = arn:aws:iam::123456789012:role/Lambda-Invoker
credential_source = Ec2InstanceMetadata
role_session_name = tutorial
duration_seconds = 900
membraned_tenants = *

[profile first-hop]
role_arn = arn:aws:iam::123456789012:role/first-hop
credential_source = Ec2InstanceMetadata

[profile second-hop]
role_arn = arn:aws:iam::123456789012:role/external-partner
source_profile = first-hop
external_id = ext-123
membraned_tenants = *

[profile refused]
role_arn = arn:aws:iam::123456789012:role/denied
credential_source = Ec2InstanceMetadata
membraned_tenants = *

[profile short-lived]
role_arn = arn:aws:iam::123456789012:role/short-lived
credential_source = Ec2InstanceMetadata
membraned_tenants = *

[profile container]
credential_source = EcsContainer
membraned_tenants = *

[profile not-yours]
role_arn = arn:aws:iam::123456789012:role/Lambda-Invoker
credential_source = Ec2InstanceMetadata
membraned_tenants = some-other-tenant
"""


def start_fake_identity(*args):
    """fake_identity.py: (process, main base URL, IMDS port or 0)."""
    proc = subprocess.Popen([FAKE_PYTHON, os.path.join(HERE, "fake_identity.py")] + list(args),
                            stdout=subprocess.PIPE, text=True, cwd=HERE)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        raise RuntimeError("fake identity services did not start (needs %s with python3-botocore)" % FAKE_PYTHON)
    _, main, imds = line.split()
    return proc, "http://127.0.0.1:%s" % main, int(imds)


def control(base, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data=data), timeout=10) as r:
        return json.loads(r.read())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FetchedCredentialsTest(unittest.TestCase):
    """One membraned whose profiles reach a fake IMDSv2, ECS endpoint and STS on loopback."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="membraned-roles-")
        cls.fake, cls.fake_url, imds_port = start_fake_identity("--sts-delay", "0.2")
        config = os.path.join(cls.tmp.name, "aws-config")
        with open(config, "w") as f:
            f.write(ROLE_CONFIG)
        env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:%d" % imds_port,
               "AWS_ENDPOINT_URL_STS": cls.fake_url,
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": cls.fake_url + "/ecs/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Bearer ecs-authorization-token-for-tests"}
        cls.server = Server(args=["--aws-config", config], env=env).start()
        create = token_of(cls.server.first_tenant()["capabilities"]["create"])
        status, m, _ = cls.server.call(create, body={"id": "roles"})
        cls.export = token_of(m["capabilities"]["export"])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        log = cls.server.stderr()
        try:
            cls.check_log_has_no_secret(log)
        finally:
            cls.server.cleanup()
            stop_fake_aws(cls.fake)
            cls.tmp.cleanup()
        assert code == 0, code

    @classmethod
    def check_log_has_no_secret(cls, log):
        issued = control(cls.fake_url, "/_control/issued")
        leaked = [s for s in issued["secrets"] if s in log]
        assert issued["secrets"] and not leaked, "a secret the fakes issued is in the service's log"
        assert "ecs-authorization-token" not in log

    def lambda_export(self, profile, function="echo"):
        return {"uri": self.fake_url + "/2015-03-31/functions/%s/invocations" % function, "method": "POST",
                "hmac": {"aws4-hmac-sha256": {"credentials": profile, "region": "us-east-1", "service": "lambda"}}}

    def capability(self, profile):
        status, body, _ = self.server.call(self.export, body=self.lambda_export(profile))
        self.assertEqual(status, 201, body)
        return token_of(body["capability"])

    def stats(self):
        return control(self.fake_url, "/_control/stats")

    def test_instance_role_then_assume_role_then_lambda(self):
        cap = self.capability("lambda-invoker")
        status, answer, _ = self.server.call(cap, body={"from": "an instance"})
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer, {"function": "echo", "event": {"from": "an instance"}})
        stats = self.stats()
        # The upstream saw the assumed role's temporary key and its session token (botocore
        # verified both), and STS saw an AssumeRole signed with the instance's credentials.
        last = stats["lambda_calls"][-1]
        self.assertEqual((last["kind"], last["role"], last["session_token"]), ("role", "Lambda-Invoker", True))
        sts = [c for c in stats["sts_calls"] if c["role"] == ROLE + "Lambda-Invoker"]
        self.assertEqual(len(sts), 1, sts)
        self.assertIsNone(sts[0]["problem"])
        self.assertEqual((sts[0]["source_kind"], sts[0]["session_name"], sts[0]["duration"]),
                         ("instance", "tutorial", "900"))
        # Later calls use the cached credentials: no new STS call.
        for _ in range(5):
            self.assertEqual(self.server.call(cap, body={})[0], 200)
        self.assertEqual(len([c for c in self.stats()["sts_calls"] if c["role"] == ROLE + "Lambda-Invoker"]), 1)
        # No secret the fakes handed out is in the database.
        data = b""
        for name in os.listdir(self.server.data_dir):
            with open(os.path.join(self.server.data_dir, name), "rb") as f:
                data += f.read()
        self.assertNotIn(b"IQoJ", data)  # every session token issued starts so
        self.assertNotIn(last["key"].encode(), data)

    def test_a_chain_of_two_assume_roles_sends_the_external_id(self):
        cap = self.capability("second-hop")
        status, answer, _ = self.server.call(cap, body={"hops": 2})
        self.assertEqual(status, 200, answer)
        stats = self.stats()
        self.assertEqual(stats["lambda_calls"][-1]["role"], "external-partner")
        first = [c for c in stats["sts_calls"] if c["role"] == ROLE + "first-hop"]
        second = [c for c in stats["sts_calls"] if c["role"] == ROLE + "external-partner"]
        self.assertEqual(len(first), 1)
        self.assertEqual(len(second), 1)
        self.assertEqual(first[0]["source_kind"], "instance")
        self.assertIsNone(first[0]["external_id"])
        # The second AssumeRole is signed with the first role's credentials and carries the id.
        self.assertEqual((second[0]["source_kind"], second[0]["source_role"]), ("role", "first-hop"))
        self.assertEqual(second[0]["external_id"], "ext-123")
        self.assertIsNone(second[0]["problem"])

    def test_the_container_role_signs_directly(self):
        cap = self.capability("container")
        status, answer, _ = self.server.call(cap, body={})
        self.assertEqual(status, 200, answer)
        self.assertEqual(self.stats()["lambda_calls"][-1]["kind"], "container")

    def test_an_sts_error_document_is_502_naming_the_profile(self):
        cap = self.capability("refused")
        status, answer, _ = self.server.call(cap, body={})
        self.assertEqual(status, 502, answer)
        self.assertEqual(answer["error"], "Bad Gateway", answer)
        # The requester, a third party, learns the profile, not the operator's roles or accounts.
        self.assertEqual(answer["message"], 'no valid credentials for profile "refused"')
        # The operator's log has what failed: STS's error document, naming the role's profile.
        deadline = time.time() + 5
        while "AccessDenied" not in self.server.stderr() and time.time() < deadline:
            time.sleep(0.05)
        log = self.server.stderr()
        self.assertIn('credentials the role of profile "refused": refresh failed', log)
        self.assertIn('credentials profile "refused": no valid credentials: STS', log)
        self.assertIn("AccessDenied", log)

    def test_a_tenant_without_the_grant_is_400_naming_credentials(self):
        status, body, _ = self.server.call(self.export, body=self.lambda_export("not-yours"))
        self.assertEqual(status, 400, body)
        self.assertTrue(body["message"].startswith("credentials "), body)

    def test_short_lived_credentials_are_refreshed_once_per_refresh_under_load(self):
        # The fake STS gives this role credentials that expire 303 s after issue: a few seconds
        # later they are inside the 5-minute refresh window. Eight clients call without pause
        # until two refreshes have happened; STS answers slowly (0.2 s), so that a herd of
        # requests each starting its own refresh would overlap there.
        cap = self.capability("short-lived")
        self.assertEqual(self.server.call(cap, body={})[0], 200)

        def sts_calls():
            return [c for c in self.stats()["sts_calls"] if c["role"] == ROLE + "short-lived"]

        statuses = []
        done = threading.Event()
        lock = threading.Lock()

        def client():
            conn = self.server.connection()
            while not done.is_set():
                status = self.server.call(cap, body={"load": True}, conn=conn)[0]
                with lock:
                    statuses.append(status)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        guard = time.time() + 120  # only against a hang: the loop ends on the refreshes seen
        while len(sts_calls()) < 3 and time.time() < guard:
            time.sleep(0.2)
        done.set()
        for t in threads:
            t.join()
        stats = self.stats()
        calls = sts_calls()
        used = {c["key"] for c in stats["lambda_calls"] if c["role"] == "short-lived"}
        self.assertGreaterEqual(len(calls), 3, "two refreshes under load")
        self.assertTrue(statuses)
        self.assertEqual(set(statuses), {200})  # no request waited out a refresh or used stale keys
        self.assertEqual(stats["rejected"], [])
        # One call at a time, and every set of credentials STS issued was put to use: no refresh
        # was a duplicate started by another waiting request.
        self.assertEqual(stats["sts_max_in_flight"][ROLE + "short-lived"], 1)
        issued = len(calls)
        self.assertGreaterEqual(len(used), issued - 1)


class InstanceMetadataDownTest(unittest.TestCase):
    def test_imds_down_at_start_then_recovering(self):
        imds_port = free_port()
        fake, fake_url, _ = start_fake_identity("--imds-late")
        with tempfile.TemporaryDirectory(prefix="membraned-imds-") as tmp:
            config = os.path.join(tmp, "aws-config")
            with open(config, "w") as f:
                f.write(ROLE_CONFIG)
            env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:%d" % imds_port,
                   "AWS_ENDPOINT_URL_STS": fake_url}
            server = Server(args=["--aws-config", config], env=env).start()
            try:
                create = token_of(server.first_tenant()["capabilities"]["create"])
                status, m, _ = server.call(create, body={"id": "imds"})
                export = {"uri": fake_url + "/2015-03-31/functions/late/invocations", "method": "POST",
                          "hmac": {"aws4-hmac-sha256": {"credentials": "lambda-invoker", "region": "us-east-1",
                                                        "service": "lambda"}}}
                status, body, _ = server.call(token_of(m["capabilities"]["export"]), body=export)
                self.assertEqual(status, 201, body)
                cap = token_of(body["capability"])
                # Nothing listens where the metadata service should be.
                status, answer, _ = server.call(cap, body={})
                self.assertEqual(status, 502, answer)
                self.assertEqual(answer["message"], 'no valid credentials for profile "lambda-invoker"')
                self.assertIn("the instance metadata service at 127.0.0.1:%d could not be reached" % imds_port,
                              server.stderr())
                # It comes up; after the pause between attempts the next request succeeds.
                control(fake_url, "/_control/open-imds", {"port": imds_port})
                deadline = time.time() + 10
                while True:
                    status, answer, _ = server.call(cap, body={"late": True})
                    if status == 200 or time.time() > deadline:
                        break
                    time.sleep(0.2)
                self.assertEqual(status, 200, answer)
                self.assertEqual(answer["event"], {"late": True})
            finally:
                self.assertEqual(server.stop(), 0)
                server.cleanup()
                stop_fake_aws(fake)


class StsOverTlsTest(unittest.TestCase):
    """STS is an HTTPS endpoint in real life: its certificate and name are verified against the
    system trust store, which SSL_CERT_FILE moves (here to a CA made for the test)."""

    def run_with_trust(self, trusted_ca):
        with tempfile.TemporaryDirectory(prefix="membraned-sts-tls-") as tmp:
            pki = Pki(tmp)
            fake, fake_url, imds_port = start_fake_identity("--tls", pki.server_cert, pki.server_key)
            config = os.path.join(tmp, "aws-config")
            with open(config, "w") as f:
                f.write(ROLE_CONFIG)
            sts_url = fake_url.replace("http://127.0.0.1", "https://localhost")
            env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:%d" % imds_port,
                   "AWS_ENDPOINT_URL_STS": sts_url,
                   "SSL_CERT_FILE": pki.ca_cert if trusted_ca else os.path.join(tmp, "server.pem")}
            # The Lambda fake is plain HTTP on the IMDS port (same handler): only STS is TLS here.
            lambda_url = "http://127.0.0.1:%d/2015-03-31/functions/tls/invocations" % imds_port
            server = Server(args=["--aws-config", config], env=env).start()
            try:
                create = token_of(server.first_tenant()["capabilities"]["create"])
                status, m, _ = server.call(create, body={"id": "tls"})
                export = {"uri": lambda_url, "method": "POST",
                          "hmac": {"aws4-hmac-sha256": {"credentials": "lambda-invoker", "region": "us-east-1",
                                                        "service": "lambda"}}}
                status, body, _ = server.call(token_of(m["capabilities"]["export"]), body=export)
                self.assertEqual(status, 201, body)
                status, answer, _ = server.call(token_of(body["capability"]), body={"over": "tls"})
                return status, answer, server.stderr()
            finally:
                self.assertEqual(server.stop(), 0)
                server.cleanup()
                stop_fake_aws(fake)

    def test_assume_role_over_https_with_a_trusted_ca(self):
        status, answer, _ = self.run_with_trust(True)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["event"], {"over": "tls"})

    def test_an_untrusted_sts_certificate_is_502_naming_the_profile(self):
        status, answer, log = self.run_with_trust(False)
        self.assertEqual(status, 502, answer)
        self.assertEqual(answer["message"], 'no valid credentials for profile "lambda-invoker"')
        self.assertIn("TLS handshake", log)


class ConfigFileTest(unittest.TestCase):
    def start(self, config_text):
        with tempfile.TemporaryDirectory(prefix="membraned-creds-") as tmp:
            config = os.path.join(tmp, "aws-config")
            with open(config, "w") as f:
                f.write(config_text)
            proc = subprocess.run([BINARY, "serve", "--data-dir", os.path.join(tmp, "var"), "--listen", "127.0.0.1:0",
                                   "--aws-config", config], capture_output=True, text=True, timeout=30)
            return proc.returncode, proc.stderr

    def test_a_profile_cycle_stops_the_start(self):
        code, err = self.start("[profile a]\nrole_arn = arn:aws:iam::123456789012:role/a\nsource_profile = b\n"
                               "membraned_tenants = *\n[profile b]\nrole_arn = arn:aws:iam::123456789012:role/b\n"
                               "source_profile = a\n")
        self.assertEqual(code, 1)
        self.assertIn("--aws-config", err)
        self.assertIn("a -> b -> a", err)

    def test_the_example_in_deploy_is_accepted(self):
        example = os.path.join(HERE, "..", "..", "deploy", "aws-config.example")
        server = Server(args=["--aws-config", example]).start()
        self.assertEqual(server.stop(), 0)
        server.cleanup()

    def test_a_missing_file_stops_the_start(self):
        proc = subprocess.run([BINARY, "serve", "--listen", "127.0.0.1:0", "--aws-config", "/nonexistent/aws-config"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("/nonexistent/aws-config", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
