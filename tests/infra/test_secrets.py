"""No secret-looking literal in any file under infra/: cloud keys, private keys, tokens,
credentials in URLs, and no value assigned to a secret-named key (password, secret, token,
access key...) unless it is a reference (``${VAR}``, ``$(VAR)``, ``var.x``, a secretKeyRef) or
the .env.example placeholder ``change-me``. The scanner is shown to catch planted examples."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .helpers import INFRA, PROJECT

PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub/GitLab/Slack token": re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,}|xox[abpr]-[A-Za-z0-9-]{10,})"
    ),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."),
    "credentials in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?!\$\{|\$\()[^/\s@'\"]+@"),
    "Prefect Cloud API key": re.compile(r"\bpnu_[A-Za-z0-9]{20,}"),
}
# KEY = value / KEY: value / KEY=value where KEY names a secret
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<key>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key(?:[_-]?id)?|private[_-]?key)[A-Za-z0-9_.-]*)
    ["']?\s*[:=]\s*
    (?P<value>"[^"\n]*"|'[^'\n]*'|[^\s#,}\]]+)
    """
)
# a value that is a reference, not a literal: ${VAR}, $(VAR), "$VAR", terraform references,
# a function call, a <PLACEHOLDER>, "..."; or a version pin (name==1.2.3)
_REFERENCE = re.compile(
    r"""^["']?(\$\{|\$\(|\$[A-Z_]|var\.|local\.|data\.|aws_|\{\{|<[A-Z_-]+>|\.\.\.["']?$|[A-Za-z_][\w.]*\(|=|[&*\[])"""
)
# keys that name or locate a secret rather than hold one
_NOT_HOLDING = re.compile(r"(?i)(_?ref|_?name|_file|_dir|^secrets|^x-[\w-]+)$")
_COMMENT = re.compile(r"(^|\s)(#|//).*$")
_ALLOWED_VALUES = {"", '""', "''", "change-me", "null", "true", "false", "{}", "[]"}


def infra_files() -> list[Path]:
    """Every file under infra/ that git tracks or would track (ignored ones, e.g. .env, aside)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "infra"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [PROJECT / p for p in listed if (PROJECT / p).is_file()]


def findings(path: Path, text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append(f"{path}:{number}: {what}")
        code = _COMMENT.sub("", line)  # prose in comments is not an assignment (the patterns above still apply)
        for m in _ASSIGNMENT.finditer(code):
            value = m.group("value")
            if value in _ALLOWED_VALUES or _REFERENCE.match(value) or _NOT_HOLDING.search(m.group("key")):
                continue
            found.append(f"{path}:{number}: {m.group('key')} = {value}")
    return found


def test_infra_files_are_listed() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in infra_files()}
    assert {"compose/compose.yaml", "compose/.env.example", "Dockerfile", "terraform/s3.tf"} <= names
    assert "compose/.env" not in names  # git-ignored: a real .env is never committed


def test_no_secret_looking_literal_in_infra() -> None:
    found = [f for path in infra_files() for f in findings(path.relative_to(PROJECT), path.read_text())]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "planted",
    [
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        'secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        "POSTGRES_PASSWORD: hunter2",
        "LAKEHOUSE_STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY=abc123",
        "storage_options__aws_secret_access_key: abc123",
        '  aws_secret_access_key = "abc123" # a comment after it',
        "url: postgresql+asyncpg://prefect:hunter2@postgres:5432/prefect",
        "-----BEGIN RSA PRIVATE KEY-----",
        "PREFECT_API_KEY: pnu_0123456789abcdefghijABCDEFGHIJ",
        "token: ghp_0123456789abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_the_scanner_catches_planted_secrets(planted: str) -> None:
    assert findings(Path("planted"), planted), planted


@pytest.mark.parametrize(
    "fine",
    [
        "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}",
        "LAKEHOUSE_STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY=change-me",
        "--from-literal=LAKEHOUSE_STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY=...",
        "url: postgresql+asyncpg://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/db",
        "kms_master_key_id = aws_kms_key.lake.arn",
        "    secrets: [storage_options__aws_secret_access_key]",
        "  LAKEHOUSE_SECRETS_DIR: /run/secrets",
        "# No secret: a task arrives with its options",
        "x-lakehouse-secret-env: &lakehouse-secret-env",
    ],
)
def test_the_scanner_lets_references_through(fine: str) -> None:
    assert not findings(Path("fine"), fine), fine
