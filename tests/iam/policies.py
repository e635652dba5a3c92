"""The synthesized template's IAM policies, resolved to the emulator, and a small IAM evaluator.

- `Resolver` turns CloudFormation values (`Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, pseudo
  parameters) into the emulator's names and ARNs (account, region, the physical names the
  template gives its tables, queues, bus, …, and the ARNs the emulator assigned to keys and secrets).
- `PolicySet` holds one principal's resolved statements (a function's role, or producer managed
  policies) and answers `allows(action, resource, context)` with resource patterns and condition
  operators evaluated — what moto cannot do (moto checks actions only: see docs/deploy.md).
- `runtime_document` is what moto enforces: the same statements with `Resource: "*"` and without
  conditions (moto would not evaluate them), plus the API operation names whose IAM action differs
  (`sqs:SendMessageBatch` is authorized as `sqs:SendMessage` on AWS; moto asks for the former).
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Statement = dict[str, Any]


class UnresolvedError(LookupError):
    pass


@dataclass
class Resolver:
    template: Mapping[str, Any]
    account: str
    region: str
    partition: str = "aws"
    #: Physical ids the emulator assigned (logical id → {"Ref": …, "Arn": …, …}); see `Emulator`.
    assigned: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def resources(self) -> Mapping[str, Any]:
        return self.template["Resources"]  # type: ignore[no-any-return]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "llmtally-iam-tier",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.assigned and "Ref" in self.assigned[name]:
            return self.assigned[name]["Ref"]
        resource = self.resources.get(name)
        if resource is None:
            raise UnresolvedError(f"Ref {name}: not in the template")
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::DynamoDB::Table":
            return str(props["TableName"])
        if kind == "AWS::Events::EventBus":
            return str(props["Name"])
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", str(props["TopicName"]))
        if kind == "AWS::IAM::Role":
            return name
        if kind == "AWS::IAM::ManagedPolicy":
            return self.arn("iam", f"policy/{props.get('ManagedPolicyName', name)}", region="")
        raise UnresolvedError(f"Ref {name} ({kind}): no emulator value assigned")

    def get_att(self, logical: str, attribute: str) -> str:
        if logical in self.assigned and attribute in self.assigned[logical]:
            return self.assigned[logical][attribute]
        resource = self.resources.get(logical)
        if resource is None:
            raise UnresolvedError(f"GetAtt {logical}.{attribute}: not in the template")
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return self.arn("dynamodb", f"table/{props['TableName']}")
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return self.arn("sqs", str(props["QueueName"]))
        if kind == "AWS::Events::EventBus" and attribute in ("Arn", "Name"):
            return self.arn("events", f"event-bus/{props['Name']}") if attribute == "Arn" else str(props["Name"])
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return self.arn("logs", f"log-group:{props['LogGroupName']}:*")
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return self.arn("iam", f"role/{logical}", region="")
        raise UnresolvedError(f"GetAtt {logical}.{attribute} ({kind}): no emulator value assigned")

    def arn(self, service: str, resource: str, *, region: str | None = None) -> str:
        account = self.account
        return f"arn:{self.partition}:{service}:{self.region if region is None else region}:{account}:{resource}"


# -- policies ----------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_policy_documents(template: Mapping[str, Any], role_logical_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every identity policy a role gets: inline `AWS::IAM::Policy` resources naming it, its
    `Policies`, and customer managed policies (`AWS::IAM::ManagedPolicy`) attached to it."""
    resources = template["Resources"]
    role = resources[role_logical_id]["Properties"]
    found: list[tuple[str, dict[str, Any]]] = []
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_logical_id} in props.get("Roles", []):
            found.append((name, props["PolicyDocument"]))
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": role_logical_id} in props.get("Roles", []):
            found.append((name, props["PolicyDocument"]))
    for inline in role.get("Policies", []):
        found.append((inline["PolicyName"], inline["PolicyDocument"]))
    for attached in role.get("ManagedPolicyArns", []):
        # An AWS managed policy's document is not in the template: the tier cannot run it honestly.
        raise AssertionError(f"{role_logical_id} has a managed policy the tier cannot see: {attached}")
    return found


@dataclass
class PolicySet:
    """One principal's resolved Allow statements (no Deny is synthesized; one would be refused here)."""

    name: str
    statements: list[Statement]

    @classmethod
    def from_documents(cls, name: str, documents: Iterable[dict[str, Any]], resolver: Resolver) -> PolicySet:
        statements: list[Statement] = []
        for document in documents:
            for statement in _as_list(document["Statement"]):
                if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
                    raise AssertionError(f"{name}: the tier only evaluates Allow/Action/Resource: {statement}")
                statements.append(resolver.resolve(copy.deepcopy(statement)))
        return cls(name, statements)

    def without_action(self, action: str, resource_contains: str = "") -> PolicySet:
        """A copy with `action` removed from the statements whose resource contains `resource_contains`."""
        trimmed = []
        for statement in copy.deepcopy(self.statements):
            if resource_contains in str(statement.get("Resource")):
                statement["Action"] = [a for a in _as_list(statement["Action"]) if a != action]
            if statement["Action"]:
                trimmed.append(statement)
        return PolicySet(f"{self.name} without {action}", trimmed)

    def actions(self) -> set[str]:
        return {a for s in self.statements for a in _as_list(s["Action"])}

    def allows(self, action: str, resource: str, context: Mapping[str, Any] | None = None) -> bool:
        return any(self.matching(action, resource, context))

    def matching(self, action: str, resource: str, context: Mapping[str, Any] | None = None) -> list[Statement]:
        return [
            s
            for s in self.statements
            if _matches_any(s["Action"], action, case_insensitive=True)
            and _matches_any(s.get("Resource", "*"), resource)
            and conditions_hold(s.get("Condition", {}), context or {})
        ]

    def granted_on(self, action: str, resource: str) -> bool:
        """Action and resource match, whatever the conditions (for messages that say why)."""
        return any(
            _matches_any(s["Action"], action, case_insensitive=True) and _matches_any(s.get("Resource", "*"), resource)
            for s in self.statements
        )


def _glob(pattern: str, value: str, *, case_insensitive: bool = False) -> bool:
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _matches_any(patterns: Any, value: str, *, case_insensitive: bool = False) -> bool:
    return any(_glob(str(p), value, case_insensitive=case_insensitive) for p in _as_list(patterns))


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringNotEquals": lambda expected, actual: expected != actual,
    "StringLike": lambda expected, actual: _glob(expected, actual),
    "StringNotLike": lambda expected, actual: not _glob(expected, actual),
    "ArnEquals": lambda expected, actual: expected == actual,
    "ArnLike": lambda expected, actual: _glob(expected, actual),
    "Bool": lambda expected, actual: str(expected).lower() == str(actual).lower(),
}


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]) -> bool:
    """IAM's condition semantics for the operators this app synthesizes.

    Single-valued operators need the key present (unless `…IfExists`) and one expected value to
    match; `ForAllValues:` holds when every request value matches one expected value — including
    when the key is absent, as on AWS; `ForAnyValue:` needs one request value to match."""
    for raw_operator, keys in conditions.items():
        qualifier, _, operator = raw_operator.rpartition(":")
        if_exists = operator.endswith("IfExists")
        operator = operator.removesuffix("IfExists")
        if operator == "Null":
            for key, expected in keys.items():
                if (key not in context) != (str(expected).lower() == "true"):
                    return False
            continue
        compare = _OPERATORS.get(operator)
        if compare is None:
            raise AssertionError(f"condition operator {raw_operator} is not evaluated by the tier")
        for key, expected_raw in keys.items():
            expected = [str(e) for e in _as_list(expected_raw)]
            if key not in context:
                if qualifier == "ForAllValues" or if_exists:
                    continue
                return False
            actual = [str(a) for a in _as_list(context[key])]
            negated = operator.startswith("StringNot")
            if qualifier == "ForAllValues":
                ok = all(_one(compare, expected, a, negated=negated) for a in actual)
            elif qualifier == "ForAnyValue":
                ok = any(_one(compare, expected, a, negated=negated) for a in actual)
            else:
                ok = len(actual) == 1 and _one(compare, expected, actual[0], negated=negated)
            if not ok:
                return False
    return True


def _one(compare: Callable[[str, str], bool], expected: list[str], value: str, *, negated: bool) -> bool:
    """A negated operator holds when no expected value matches; the others when one does."""
    results = [compare(e, value) for e in expected]
    return all(results) if negated else any(results)


def runtime_document(policies: PolicySet, aliases: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """What moto enforces: every action of the resolved statements on `*`, with the API operation
    names AWS authorizes as that action (`aliases`: IAM action → operations)."""
    actions: set[str] = set()
    for statement in policies.statements:
        for action in _as_list(statement["Action"]):
            actions.add(action)
            actions.update(aliases.get(action, ()))
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]}
