"""infra/terraform: every .tf parsed with python-hcl2 and its security properties asserted; then,
where the terraform binary and a provider mirror exist, fmt + init + validate, an apply against
moto's S3/IAM/KMS server, what moto then holds, and a plan that finds no drift.

The static half always runs. The terraform half is skipped, saying why, only when this machine
has no terraform binary or no filesystem mirror of the hashicorp/aws provider (conftest.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from functools import cache
from typing import Any

import hcl2

from .helpers import TERRAFORM_DIR, TerraformRun

LAYERS = ["bronze", "silver", "gold", "meta"]
FILES = {"versions.tf", "providers.tf", "variables.tf", "kms.tf", "s3.tf", "iam.tf", "outputs.tf"}
ROLES = {"writer", "job", "maintenance", "reader"}


# --------------------------------------------------------------------------------------------
# the configuration, parsed
# --------------------------------------------------------------------------------------------
@cache
def parsed() -> dict[str, dict[str, Any]]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    out = {}
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        with path.open() as f:
            out[path.name] = hcl2.load(f, serialization_options=options)
    return out


def blocks(kind: str, type_: str) -> dict[str, dict[str, Any]]:
    """Every ``kind "type_" "name" {...}`` block (kind: resource or data), by name."""
    found: dict[str, dict[str, Any]] = {}
    for doc in parsed().values():
        for entry in doc.get(kind, []):
            for name, body in entry.get(type_, {}).items():
                assert name not in found, f"{kind} {type_}.{name} defined twice"
                found[name] = body
    return found


def local(name: str) -> Any:
    values = [entry[name] for doc in parsed().values() for entry in doc.get("locals", []) if name in entry]
    assert len(values) == 1, f"local.{name}: {values}"
    return values[0]


def statements(document: str) -> list[dict[str, Any]]:
    return list(blocks("data", "aws_iam_policy_document")[document]["statement"])


def test_every_tf_file_parses() -> None:
    assert set(parsed()) == FILES
    assert all(parsed().values()), "an empty .tf file"


def test_bucket_encrypted_with_the_rotated_kms_key() -> None:
    sse = blocks("resource", "aws_s3_bucket_server_side_encryption_configuration")["lake"]
    (rule,) = sse["rule"]
    (default,) = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.lake.arn}"
    assert rule["bucket_key_enabled"] is True
    key = blocks("resource", "aws_kms_key")["lake"]
    assert key["enable_key_rotation"] is True
    assert key["policy"] == "${data.aws_iam_policy_document.kms.json}"


def test_versioning_enabled_on_every_bucket() -> None:
    buckets = blocks("resource", "aws_s3_bucket")
    versioning = blocks("resource", "aws_s3_bucket_versioning")
    assert set(buckets) == {"lake", "access_logs"}
    for name in buckets:
        (config,) = versioning[name]["versioning_configuration"]
        assert versioning[name]["bucket"] == f"${{aws_s3_bucket.{name}.id}}"
        assert config["status"] == "Enabled", name


def test_public_access_blocked_on_every_bucket() -> None:
    blocked = blocks("resource", "aws_s3_bucket_public_access_block")
    ownership = blocks("resource", "aws_s3_bucket_ownership_controls")
    for name in blocks("resource", "aws_s3_bucket"):
        pab = blocked[name]
        assert pab["bucket"] == f"${{aws_s3_bucket.{name}.id}}"
        flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        assert all(pab[flag] is True for flag in flags), (name, pab)
        assert ownership[name]["rule"][0]["object_ownership"] == "BucketOwnerEnforced"  # ACLs off


def test_every_bucket_policy_denies_plain_http() -> None:
    policies = blocks("resource", "aws_s3_bucket_policy")
    for name in blocks("resource", "aws_s3_bucket"):
        document = policies[name]["policy"].removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
        deny = [s for s in statements(document) if s["effect"] == "Deny"]
        assert len(deny) == 1, (name, document)
        (statement,) = deny
        assert statement["actions"] == ["s3:*"]
        assert statement["principals"] == [{"type": "*", "identifiers": ["*"]}]
        assert statement["condition"] == [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}]
        arn = f"${{aws_s3_bucket.{name}.arn}}"
        assert statement["resources"] == [arn, f"{arn}/*"], statement["resources"]


def test_lifecycle_rules_per_layer_never_expire_current_objects() -> None:
    """Per layer: noncurrent versions expire, multipart uploads are aborted, and no current
    object ever expires (it would delete files a Delta version still references)."""
    assert local("layers") == LAYERS
    lifecycle = blocks("resource", "aws_s3_bucket_lifecycle_configuration")["lake"]
    (dynamic,) = lifecycle["dynamic"]
    rule = dynamic["rule"]
    assert rule["for_each"] == "${local.layers}"
    (content,) = rule["content"]
    assert content["status"] == "Enabled"
    assert content["filter"] == [{"prefix": "${local.prefix}${rule.value}/"}]
    assert content["noncurrent_version_expiration"] == [
        {"noncurrent_days": "${var.noncurrent_version_expiration_days[rule.value]}"}
    ]
    assert content["abort_incomplete_multipart_upload"] == [
        {"days_after_initiation": "${var.abort_incomplete_multipart_upload_days}"}
    ]
    assert content["expiration"] == [{"expired_object_delete_marker": True}]  # no `days`
    variables = {n: body for doc in parsed().values() for entry in doc.get("variable", []) for n, body in entry.items()}
    assert set(variables["noncurrent_version_expiration_days"]["default"]) == set(LAYERS)


def test_reader_policy_is_read_only() -> None:
    actions = [a for s in statements("reader") for a in s["actions"]]
    assert actions, "reader policy without actions"
    assert not [a for a in actions if "Put" in a or "Delete" in a or "*" in a], actions
    assert set(actions) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert all(s["effect"] == "Allow" for s in statements("reader"))


def test_role_policies_name_only_their_layers() -> None:
    """writer: bronze only; job: reads bronze, writes silver and gold; only maintenance deletes;
    nobody deletes object versions or gets a wildcard action."""

    def resources(role: str, action: str) -> set[str]:
        return {r for s in statements(role) if action in s["actions"] for r in _as_list(s["resources"])}

    def layer_objects(*layers: str) -> set[str]:
        return {f'${{local.layer_objects["{layer}"]}}' for layer in layers}

    assert resources("writer", "s3:PutObject") == layer_objects("bronze")
    assert resources("writer", "s3:GetObject") == layer_objects("bronze")
    assert resources("job", "s3:GetObject") == layer_objects("bronze", "silver", "gold")
    assert resources("job", "s3:PutObject") == layer_objects("silver", "gold")
    assert resources("maintenance", "s3:DeleteObject") == {"${values(local.layer_objects)}"}
    for role in ROLES:
        actions = {a for s in statements(role) for a in s["actions"]}
        assert not [a for a in actions if "*" in a or a == "s3:DeleteObjectVersion"], (role, actions)
        if role != "maintenance":
            assert "s3:DeleteObject" not in actions, role
        listing = [s for s in statements(role) if "s3:ListBucket" in s["actions"]]
        assert listing and all(s["condition"][0]["variable"] == "s3:prefix" for s in listing), role
    assert set(local("role_policies")) == ROLES


def test_provider_endpoints_can_point_at_a_test_server() -> None:
    (doc,) = parsed()["providers.tf"]["provider"]
    aws = doc["aws"]
    for flag in ("skip_credentials_validation", "skip_requesting_account_id", "skip_metadata_api_check"):
        assert aws[flag] == "${var.test_endpoint_url != null}", flag
    (dynamic,) = aws["dynamic"]
    (content,) = dynamic["endpoints"]["content"]
    assert set(content) == {"s3", "iam", "kms", "sts"}
    assert "access_key" not in aws and "secret_key" not in aws  # credentials: the AWS chain only


# --------------------------------------------------------------------------------------------
# the real terraform, against moto
# --------------------------------------------------------------------------------------------
def test_terraform_fmt_init_validate(terraform: TerraformRun) -> None:
    for name in ("fmt", "init", "validate"):
        step = terraform.step(name)
        assert step.returncode == 0, step.explain()
    assert '"valid": true' in terraform.step("validate").stdout
    print(f"terraform {terraform.version} ({terraform.binary}), provider mirror {terraform.mirror}")


def test_terraform_apply_against_moto(terraform: TerraformRun) -> None:
    apply = terraform.step("apply")
    assert apply.returncode == 0, apply.explain()
    got = terraform.applied
    assert got, terraform.error
    (sse,) = got["encryption"]["Rules"]
    assert sse["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": terraform.outputs["kms_key_arn"]["value"],
    }
    assert sse["BucketKeyEnabled"] is True
    assert got["key_rotation"] is True
    assert got["versioning"] == "Enabled"
    assert got["public_access_block"] == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    assert got["ownership"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (deny,) = got["policy"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = {r["Filter"]["Prefix"]: r for r in got["lifecycle"]}
    assert set(rules) == {f"lake/{layer}/" for layer in LAYERS}
    for rule in rules.values():
        assert rule["Status"] == "Enabled"
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
        assert "Days" not in rule.get("Expiration", {}), rule  # current objects never expire
    assert got["logging"]["TargetBucket"] == terraform.outputs["access_log_bucket"]["value"]
    assert terraform.outputs["lakehouse_root"]["value"] == "s3://lake-under-test/lake"
    assert set(got["roles"]) == ROLES
    for role, facts in got["roles"].items():
        assert facts["attached"] == [terraform.outputs["policy_arns"]["value"][role]]


# A tiny IAM evaluator (Allow/Deny, wildcards, StringLike on s3:prefix): enough to ask the
# applied policies who may do what where.
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statement_matches(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(statement["Action"])):
        return False
    if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
        return False
    for test, conditions in statement.get("Condition", {}).items():
        for key, values in conditions.items():
            if key not in context:
                return False
            if test == "StringLike" and not any(fnmatch.fnmatchcase(context[key], v) for v in _as_list(values)):
                return False
            if test in ("StringEquals", "Bool") and context[key] not in _as_list(values):
                return False
    return True


def allowed(policy: dict[str, Any], action: str, resource: str, **context: str) -> bool:
    verdict = False
    for statement in _as_list(policy["Statement"]):
        if _statement_matches(statement, action, resource, context):
            if statement["Effect"] == "Deny":
                return False
            verdict = True
    return verdict


BUCKET = "arn:aws:s3:::lake-under-test"
OBJ = f"{BUCKET}/lake"


def _cases() -> Iterator[tuple[str, str, str, dict[str, str], bool]]:
    log = "lake/bronze/trades/_delta_log/"
    for layer in LAYERS:
        key = f"{OBJ}/{layer}/trades/part-1.parquet"
        writes = {"writer": layer == "bronze", "job": layer in ("silver", "gold"), "maintenance": True, "reader": False}
        reads = {"writer": layer == "bronze", "job": layer != "meta", "maintenance": True, "reader": True}
        for role in sorted(ROLES):
            yield role, "s3:PutObject", key, {}, writes[role]
            yield role, "s3:GetObject", key, {}, reads[role]
            yield role, "s3:DeleteObject", key, {}, role == "maintenance"
            yield role, "s3:DeleteObjectVersion", key, {}, False
            yield role, "s3:ListBucket", BUCKET, {"s3:prefix": f"lake/{layer}/trades/_delta_log/"}, reads[role]
    for role in sorted(ROLES):
        yield role, "s3:ListBucket", BUCKET, {"s3:prefix": log}, True
        yield role, "s3:ListBucket", BUCKET, {"s3:prefix": "other/"}, False
        yield role, "s3:GetObject", f"{BUCKET}/other/secret.txt", {}, False
        yield role, "s3:PutBucketPolicy", BUCKET, {}, False


CASES = list(_cases())


def test_applied_policies_grant_least_privilege(terraform: TerraformRun) -> None:
    assert terraform.step("apply").returncode == 0, terraform.step("apply").explain()
    policies = terraform.applied["policies"]
    wrong = [
        f"{role} {action} {resource} {context}: expected {'allow' if want else 'deny'}"
        for role, action, resource, context, want in CASES
        if allowed(policies[role], action, resource, **context) != want
    ]
    assert not wrong, "\n".join(wrong)
    key = terraform.outputs["kms_key_arn"]["value"]
    assert allowed(policies["writer"], "kms:GenerateDataKey", key)
    assert allowed(policies["reader"], "kms:Decrypt", key)
    assert not allowed(policies["reader"], "kms:GenerateDataKey", key)


def test_the_evaluator_is_not_vacuous() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": [f"{OBJ}/*"]},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{OBJ}/gold/*"},
        ]
    }
    assert allowed(policy, "s3:GetObject", f"{OBJ}/bronze/x")
    assert not allowed(policy, "s3:GetObject", f"{OBJ}/gold/x")
    assert not allowed(policy, "s3:PutObject", f"{OBJ}/bronze/x")
    assert len(CASES) > 80


def test_terraform_plan_shows_no_drift(terraform: TerraformRun) -> None:
    plan = terraform.step("plan")
    # -detailed-exitcode: 0 no changes, 1 error, 2 changes present
    assert plan.returncode == 0, plan.explain()
    assert "No changes." in plan.stdout
    print(
        f"terraform run: {terraform.seconds:.0f} s; "
        + ", ".join(f"{n} {s.seconds:.0f} s" for n, s in terraform.steps.items())
    )
