"""SPEC 9, the flows that need no network for credentials: an --aws-config profile that signs with
the service's environment (seed 001: the execution role's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
and AWS_SESSION_TOKEN, here towards an execute-api stage) or with keys held in the file; grants
per tenant; a profile whose credentials cannot be had is 502 naming it; a cycle stops the start.
The fake stage verifies every signature, session token included, with botocore."""
import os
import subprocess
import tempfile
import unittest
import uuid

from harness import BINARY, Server, token_of
from test_tutorial import HERE, start_fake_aws, stop_fake_aws

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
        cls.server = Server(args=["--aws-config", config], env=env).start()
        create = token_of(cls.server.first_tenant()["capabilities"]["create"])
        status, m, _ = cls.server.call(create, body={"id": "creds"})
        cls.export = token_of(m["capabilities"]["export"])

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
