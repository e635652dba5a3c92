"""The IAM tier's harness: the enforcing emulator, one IAM user per principal, running code as one.

- `Emulator.start` runs `tests.iam.server` in a subprocess, creates an admin user (the only one
  with `*`, for provisioning and for reading the state back), then switches enforcement on.
- `Emulator.provision` creates what the template declares, from the template: every table
  (`llmtally.tables` specs; the names are checked against the template's), the bus, the queues,
  the KMS keys and the secrets — and records the ARNs the emulator assigned, for the `Resolver`.
- `Emulator.principal(name, policies)` makes an IAM user whose one inline policy is
  `runtime_document(policies)` (the synthesized statements, `Resource: "*"`), with an access key.
- `Emulator.running_as(principal, environment)` is a Lambda container for the code under test:
  the function's environment from the template (resolved), the principal's credentials, every
  `functools.cache` of the code forgotten before and after (clients, settings, services).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tests.iam.actions import ALIASES, Arns, Call, Requirement, requirements
from tests.iam.policies import PolicySet, Resolver, runtime_document

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
#: Modules whose `functools.cache`s hold clients, settings or services built from the environment.
_CODE_MODULES = ("llmtally", "api", "ingest", "aggregate", "notify")
#: Pure, expensive and credential-free: kept across principals.
_KEEP_CACHES = ("llmtally.pricing",)


@dataclass(frozen=True)
class Principal:
    name: str
    policies: PolicySet
    access_key: str
    secret_key: str


@dataclass
class Denial:
    principal: str
    requirement: Requirement
    how: str

    def __str__(self) -> str:
        return f"{self.principal}: {self.requirement.action} on {self.requirement.resource} — {self.how}"


@dataclass
class Emulator:
    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path
    admin_keys: tuple[str, str] = ("testing", "testing")
    arns: Arns = field(default_factory=lambda: Arns(ACCOUNT, REGION))
    _offset: int = 0

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: Path) -> Emulator:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        log_path = workdir / "requests.jsonl"
        log_path.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INITIAL_NO_AUTH", "MOTO_"))}
        with (workdir / "server.log").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.iam.server", str(port), str(log_path)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            process.kill()
            process.wait()
            process.stdout.close()
            raise RuntimeError(f"the IAM emulator did not start: {(workdir / 'server.log').read_text()[-2000:]}")
        process.stdout.close()
        emulator = cls(f"http://127.0.0.1:{port}", process, log_path)
        try:
            emulator._bootstrap()
        except BaseException:
            emulator.stop()
            raise
        return emulator

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _bootstrap(self) -> None:
        iam = self.client("iam")
        iam.create_user(UserName="iam-tier-admin")
        iam.put_user_policy(
            UserName="iam-tier-admin",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName="iam-tier-admin")["AccessKey"]
        self.admin_keys = (key["AccessKeyId"], key["SecretAccessKey"])
        # From here on, every request is authenticated and authorized (moto's IAM enforcement).
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).read()
        denied = boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="AKIAUNKNOWN0000000000",
            aws_secret_access_key="x",
        )
        try:
            denied.list_queues()
        except Exception:  # an unknown key must be refused once enforcement is on
            pass
        else:
            raise RuntimeError("moto's IAM enforcement is not on")

    def client(self, service: str, keys: tuple[str, str] | None = None) -> Any:
        access, secret = keys or self.admin_keys
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
        )

    # -- provisioning (as the admin) -------------------------------------------------------------

    def provision(self, template: Mapping[str, Any], prefix: str) -> Resolver:
        from llmtally.resources import ResourceNames
        from llmtally.tables import create_tables
        from llmtally.topology import provision_messaging, topology

        names = ResourceNames(prefix)
        resolver = Resolver(template, ACCOUNT, REGION)
        dynamodb, sqs, events = self.client("dynamodb"), self.client("sqs"), self.client("events")
        create_tables(dynamodb, names)
        provision_messaging(events, sqs, topology(names))
        existing_tables = set(dynamodb.list_tables()["TableNames"])
        kms, secrets = self.client("kms"), self.client("secretsmanager")
        for logical, resource in template["Resources"].items():
            kind, props = resource["Type"], resource.get("Properties", {})
            if kind == "AWS::DynamoDB::Table":
                name = props["TableName"]
                assert name in existing_tables, f"the template's table {name} is not one of llmtally.tables' specs"
                described = dynamodb.describe_table(TableName=name)["Table"]
                assigned = {"Arn": described["TableArn"]}
                if described.get("LatestStreamArn"):
                    assigned["StreamArn"] = described["LatestStreamArn"]
                resolver.assigned[logical] = assigned
            elif kind == "AWS::SQS::Queue":
                url = sqs.create_queue(QueueName=props["QueueName"])["QueueUrl"]
                arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                resolver.assigned[logical] = {"Ref": url, "Arn": arn, "QueueName": props["QueueName"]}
                self.arns.queues[url] = arn
            elif kind == "AWS::Events::EventBus":
                buses = {b["Name"]: b["Arn"] for b in events.list_event_buses()["EventBuses"]}
                arn = buses.get(props["Name"]) or events.create_event_bus(Name=props["Name"])["EventBusArn"]
                resolver.assigned[logical] = {"Ref": props["Name"], "Name": props["Name"], "Arn": arn}
            elif kind == "AWS::KMS::Key":
                meta = kms.create_key(Description=str(props.get("Description", logical)))["KeyMetadata"]
                resolver.assigned[logical] = {"Ref": meta["KeyId"], "Arn": meta["Arn"]}
        for logical, resource in template["Resources"].items():
            if resource["Type"] != "AWS::SecretsManager::Secret":
                continue
            props = resource["Properties"]
            kms_key = resolver.resolve(props["KmsKeyId"]) if "KmsKeyId" in props else None
            created = secrets.create_secret(
                Name=props["Name"],
                SecretString="iam-tier-" + os.urandom(16).hex(),
                **({"KmsKeyId": kms_key} if kms_key else {}),
            )
            resolver.assigned[logical] = {"Ref": created["ARN"]}
            if kms_key:
                self.arns.secret_keys[props["Name"]] = str(kms_key)
        return resolver

    def environment(self, variables: Mapping[str, Any], resolver: Resolver) -> dict[str, str]:
        """A function's `Environment.Variables`, resolved; dynamic references resolved as
        CloudFormation does at deploy time (with the deployer's access: the admin here)."""
        resolved = {name: str(resolver.resolve(value)) for name, value in variables.items()}
        secrets = self.client("secretsmanager")

        def dynamic(match: re.Match[str]) -> str:
            return str(secrets.get_secret_value(SecretId=match.group(1))["SecretString"])

        return {
            name: re.sub(r"\{\{resolve:secretsmanager:(.+?):SecretString:::\}\}", dynamic, value)
            for name, value in resolved.items()
        }

    # -- principals --------------------------------------------------------------------------------

    def principal(self, name: str, policies: PolicySet) -> Principal:
        iam = self.client("iam")
        user = re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", f"iam-tier-{name}")[:64]
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName="synthesized", PolicyDocument=json.dumps(runtime_document(policies, ALIASES))
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return Principal(name, policies, key["AccessKeyId"], key["SecretAccessKey"])

    @contextmanager
    def running_as(self, principal: Principal, environment: Mapping[str, str]) -> Iterator[None]:
        saved = dict(os.environ)
        for name in list(os.environ):
            if name.startswith(("LLMTALLY_", "POWERTOOLS_")) or name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
                del os.environ[name]
        os.environ.update(environment)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": principal.access_key,
                "AWS_SECRET_ACCESS_KEY": principal.secret_key,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "LLMTALLY_ENDPOINT_URL": self.endpoint,
            }
        )
        forget_caches()
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            forget_caches()

    # -- the request log ---------------------------------------------------------------------------

    def mark(self) -> int:
        return self.log_path.stat().st_size

    def calls(self, since: int, principal: Principal | None = None) -> list[Call]:
        """The requests logged after `since` (a `mark()`), of one principal or of all."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            lines = log.read().decode("utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return [Call.from_log(e) for e in entries if principal is None or e["access_key"] == principal.access_key]

    def learn_secret_keys(self, since: int) -> None:
        """Which KMS key encrypts each secret the code created (Secrets Manager decrypts with it later)."""
        for call in self.calls(since):
            if call.operation in ("CreateSecret", "UpdateSecret") and call.params.get("KmsKeyId"):
                name = self.arns.secret_name(str(call.params.get("Name") or call.params.get("SecretId")))
                self.arns.secret_keys[name] = self.arns.key(str(call.params["KmsKeyId"]))

    def check(self, principal: Principal, calls: list[Call]) -> list[Denial]:
        """Every refusal of moto's enforcement, and every need the resolved policy does not grant."""
        found: list[Denial] = []
        for call in calls:
            needs = requirements(call, self.arns)
            if call.denied:
                missing = [n for n in needs if not principal.policies.allows(n.action, n.resource, n.context)]
                for need in (
                    missing or needs or [Requirement(f"{call.service}:{call.operation}", "?", origin=str(call))]
                ):
                    found.append(Denial(principal.name, need, f"refused by the emulator: {call.error} [{need.origin}]"))
                continue
            for need in needs:
                if principal.policies.allows(need.action, need.resource, need.context):
                    continue
                if principal.policies.granted_on(need.action, need.resource):
                    how = (
                        f"granted, but a condition of the synthesized statement does not hold for {dict(need.context)}"
                    )
                else:
                    how = "not allowed on that resource by the synthesized policy"
                found.append(Denial(principal.name, need, f"{how} [{need.origin}]"))
        return found


def forget_caches() -> None:
    """Clear every `functools.cache` in the code's modules (a new Lambda container, as far as state goes)."""
    for name, module in list(sys.modules.items()):
        if module is None or not any(name == p or name.startswith(p + ".") for p in _CODE_MODULES):
            continue
        if name.startswith(_KEEP_CACHES):
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                value.cache_clear()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)
