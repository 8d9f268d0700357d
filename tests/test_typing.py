"""Type-checker escapes in ``src/`` and ``flows/`` say what they silence and why: every
``# type: ignore`` names its error code(s) and is followed, on the same line, by a comment giving
the reason (``# type: ignore[attr-defined]  # cryptofeed has no stubs``). mypy itself (``make
lint``) rejects an ignore without a code and one that silences nothing; the reason is checked here."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [ROOT / "src", ROOT / "flows"]

# `type: ignore`, optionally `[code, code]`, then what follows on that comment line
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")
_CODES = re.compile(r"\[\s*[a-z][a-z0-9-]*(\s*,\s*[a-z][a-z0-9-]*)*\s*\]")
_REASON = re.compile(r"^\s*#\s*\S.{2,}")  # another comment with a few characters of text


def problems(source: str) -> list[tuple[int, str]]:
    """(line, what is wrong) for each ``type: ignore`` comment in ``source`` lacking an error code
    or a reason. Only real comments count (tokenized), not strings that mention the phrase."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        m = _IGNORE.search(tok.string)
        if m is None:
            continue
        line = tok.start[0]
        if m["codes"] is None or not _CODES.fullmatch(m["codes"]):
            found.append((line, "no error code: write # type: ignore[code]"))
        elif not _REASON.match(m["rest"]):
            found.append((line, "no reason: add '  # why' after it"))
    return found


def _files() -> list[Path]:
    return sorted(p for base in CHECKED for p in base.rglob("*.py"))


def test_every_type_ignore_names_its_code_and_gives_a_reason() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {why}"
        for path in _files()
        for line, why in problems(path.read_text(encoding="utf-8"))
    ]
    assert not bad, "type: ignore without a code or a reason:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ("x = f()  # type: ignore[attr-defined]  # cryptofeed has no stubs", True),
        ("x = f()  # type: ignore[arg-type, union-attr]  # polars types it as any scalar", True),
        ("x = f()  # type: ignore", False),
        ("x = f()  # type: ignore  # a reason but no code", False),
        ("x = f()  # type: ignore[]  # empty codes", False),
        ("x = f()  # type: ignore[attr-defined]", False),
        ("x = f()  # type: ignore[attr-defined]  #", False),
        ("x = f()  #type:ignore[misc]#why not", True),
        ('x = "# type: ignore"  # a string, not a comment', True),
    ],
)
def test_the_check_itself(line: str, ok: bool) -> None:
    assert (problems(line + "\n") == []) == ok
