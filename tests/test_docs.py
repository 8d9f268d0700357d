"""The commands the docs show are commands the CLI accepts, and the ``make`` targets they name exist.

Every ``lakehouse ...`` command line in a fenced shell block (``bash``, ``sh``, ``shell``,
``console``) of README.md, docs/*.md and notebooks/README.md is resolved to its command in the
typer app and its arguments are parsed by that command's click parser
(``make_context(..., resilient_parsing=False)``: unknown options, missing required options and
values of the wrong type fail) without running the command. So a renamed command or option, or
an option made required, breaks this test until the docs follow. Inline code that starts with
``lakehouse`` (prose such as `lakehouse tag create NAME [--table T]`) must name an existing
command, and every ``--option`` it shows must be an option of that command.

How a shell line is read:

- a line ending in ``\\`` continues on the next; ``#`` starts a comment; ``&&``, ``||``, ``;``,
  ``|`` and ``&`` separate commands; leading ``NAME=value`` environment assignments are dropped;
  the command word is ``lakehouse`` or a path ending in ``/lakehouse`` (``.venv/bin/lakehouse``);
- ``$VAR`` and ``${VAR}`` stand for a value the reader supplies: each becomes ``1`` (a valid
  string, number or path);
- synopsis brackets around options, ``[--format table|csv]``, are read as if the option were
  given, with the first of the ``|`` alternatives;
- upper-case placeholders (``PORT``, ``NAME``, ``FILE``) are ordinary strings and parse as such;
  one in a number's place fails (write a number there).

Nothing else is skipped, and a doc file with a shell block but no command would still be read.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from crypto_lakehouse.cli import app

PROJECT = Path(__file__).resolve().parents[1]
DOCS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md")), PROJECT / "notebooks" / "README.md"]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_SEPARATORS = {"&&", "||", ";", "|", "&"}
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VAR = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_SYNOPSIS = re.compile(r"\[(--?[^\[\]]*)\]")

ROOT = typer.main.get_command(app)


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    argv: tuple[str, ...]  # after `lakehouse`

    def __str__(self) -> str:
        return f"{self.where}: lakehouse {shlex.join(self.argv)}"


def _without_fences(text: str) -> str:
    """``text`` with the fenced blocks blanked out (line numbers kept)."""
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _shell_lines(text: str) -> list[tuple[int, str]]:
    """The logical lines (continuations joined) of every fenced shell block, with line numbers."""
    lines: list[tuple[int, str]] = []
    for m in _FENCE.finditer(text):
        if m.group(1).lower() not in SHELL_LANGUAGES:
            continue
        first = text.count("\n", 0, m.start(2)) + 1
        pending, start = "", first
        for i, line in enumerate(m.group(2).splitlines()):
            if not pending:
                start = first + i
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append((start, pending + line))
            pending = ""
        if pending:
            lines.append((start, pending))
    return lines


def _synopsis(line: str) -> str:
    """``[--opt a|b]`` -> ``--opt a``: read a synopsis as if the option were given."""
    return _SYNOPSIS.sub(lambda m: re.sub(r"(\S+?)\|\S+", r"\1", m.group(1)), line)


def _commands(line: str) -> list[list[str]]:
    """The ``lakehouse`` invocations in one shell line, as argument lists after the command word."""
    lex = shlex.shlex(_VAR.sub("1", _synopsis(line)), posix=True, punctuation_chars="();<>|&")
    lex.whitespace_split = True
    lex.commenters = "#"
    found: list[list[str]] = []
    current: list[str] = []
    for token in [*lex, ";"]:
        if token not in _SEPARATORS:
            current.append(token)
            continue
        words = current
        while words and _ENV.match(words[0]):
            words = words[1:]
        if words and (words[0] == "lakehouse" or words[0].endswith("/lakehouse")):
            found.append(words[1:])
        current = []
    return found


def doc_commands() -> list[DocCommand]:
    """Every ``lakehouse`` command line of the fenced shell blocks of the docs."""
    found = []
    for path in DOCS:
        for number, line in _shell_lines(path.read_text()):
            for argv in _commands(line):
                found.append(DocCommand(f"{path.relative_to(PROJECT)}:{number}", tuple(argv)))
    return found


def inline_commands() -> list[DocCommand]:
    """Inline code spans of the docs' prose that start with ``lakehouse``."""
    found = []
    for path in DOCS:
        text = _without_fences(path.read_text())
        for m in _INLINE.finditer(text):
            span = m.group(1).strip()
            if span == "lakehouse" or not span.startswith("lakehouse "):
                continue
            number = text.count("\n", 0, m.start()) + 1
            found.append(DocCommand(f"{path.relative_to(PROJECT)}:{number}", tuple(shlex.split(span)[1:])))
    return found


def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "list_commands")


def _context() -> Any:
    return ROOT.make_context("lakehouse", ["--help"], resilient_parsing=True)


def _resolve(argv: tuple[str, ...]) -> tuple[Any, list[str], list[str]]:
    """The command ``argv`` names, its path and the arguments left for it."""
    cmd, path, rest = ROOT, ["lakehouse"], list(argv)
    while _is_group(cmd) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(_context(), rest[0])
        if sub is None:
            raise AssertionError(f"`{' '.join(path)}` has no command {rest[0]!r}: {cmd.list_commands(_context())}")
        cmd, path, rest = sub, [*path, rest.pop(0)], rest
    return cmd, path, rest


def _leaves(cmd: Any = ROOT, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if not _is_group(cmd):
        return [(path, cmd)]
    ctx = _context()
    return [leaf for name in cmd.list_commands(ctx) for leaf in _leaves(cmd.get_command(ctx, name), (*path, name))]


COMMANDS = doc_commands()


@pytest.mark.parametrize("doc", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(doc: DocCommand) -> None:
    cmd, path, rest = _resolve(doc.argv)
    if "--help" in rest:  # valid on every command and group; the rest of the line must still parse
        rest.remove("--help")
        if _is_group(cmd):
            assert not rest, f"{doc}: arguments after a group"
            return
    assert not _is_group(cmd), f"{doc}: `{' '.join(path)}` needs a subcommand"
    try:
        cmd.make_context(" ".join(path), rest, resilient_parsing=False)
    except Exception as exc:  # click's (typer's vendored click's) UsageError and friends
        pytest.fail(f"{doc}\n  rejected by the CLI: {type(exc).__name__}: {exc}")


def test_the_docs_show_commands() -> None:
    """The extraction works (a regression here would silently check nothing)."""
    files = {c.where.split(":")[0] for c in COMMANDS}
    assert len(COMMANDS) >= 30, [str(c) for c in COMMANDS]
    assert {"README.md", "docs/bronze.md", "docs/reading.md"} <= files, files
    readme = [c.argv for c in COMMANDS if c.where.startswith("README.md")]
    assert ("promote", "silver") in readme and ("promote", "gold") in readme  # both sides of `&&`


def test_inline_commands_name_real_commands_and_options() -> None:
    spans = inline_commands()
    assert spans, "no inline `lakehouse ...` in the docs"
    bad = []
    for doc in spans:
        try:
            cmd, _, rest = _resolve(doc.argv)
        except AssertionError as exc:
            bad.append(f"{doc}: {exc}")
            continue
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for token in rest:
            option = token.strip("[]").split("=")[0]
            if option.startswith("--") and option not in known:
                bad.append(f"{doc}: no option {option}")
    assert not bad, "\n".join(bad)


def test_every_command_accepts_config_and_root() -> None:
    """README: every command accepts --config FILE and --root PATH_OR_S3_URL, except that the
    loopback exchange's commands (which read no storage root) do not offer --root."""
    leaves = _leaves()
    assert len(leaves) >= 20
    for path, cmd in leaves:
        options = {o for p in cmd.params for o in p.opts}
        wanted = {"--config"} if path[0] == "exchange" else {"--config", "--root"}
        assert wanted <= options, f"lakehouse {' '.join(path)}"
        if path[0] == "exchange":
            assert "--root" not in options, f"lakehouse {' '.join(path)} offers a --root it ignores"


def test_make_targets_the_docs_name_exist() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))
    named = []
    for path in DOCS:
        text = path.read_text()
        code = [m.group(0) for m in _FENCE.finditer(text) if m.group(1).lower() in SHELL_LANGUAGES]
        code += _INLINE.findall(_without_fences(text))
        for snippet in code:
            for target in re.findall(r"(?:^|[\s`;&(])make\s+(?:-\S+\s+)*([A-Za-z][\w-]*)", snippet, re.M):
                named.append((path.relative_to(PROJECT), target))
    assert {t for p, t in named if str(p) == "README.md"} >= {"demo", "test", "serve", "stop", "bench"}, named
    missing = [f"{p}: make {t}" for p, t in named if t not in targets]
    assert not missing, f"not targets of the Makefile ({sorted(targets)}): {missing}"
