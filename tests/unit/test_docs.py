"""The documentation's commands work as pasted: every shell block of README.md, data/README.md
and docs/*.md names only ``btcusdt`` subcommands and options, ``python -m`` modules, ``make``
targets and repository files that exist; its inline Python compiles and imports what exists; it
writes no stray file at the repository root; links reach pages and sections that exist; and the
README stays short. No file refers to a folder outside the repository for the contract."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from cli import app
from devtools import REPO_ROOT

DOCS = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "data" / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
]
SHELL_LANGS = {"bash", "sh", "shell", "console", "crontab"}
README_MAX_BYTES = 10 * 1024
FILE_SUFFIXES = re.compile(r"\.(py|ya?ml|md|json|toml|txt|csv|gz|parquet|lock|in|zip|log)$")
OUTPUT_OPTIONS = {"--out", "--out-dir", "--report", "--output"}
"""Options whose value is a file or folder the command creates (it need not exist yet)."""


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.line}"


def code_blocks(doc: Path) -> list[Block]:
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and lang is None:
            lang, start, body = fence.group(1), number, []
        elif fence:
            blocks.append(Block(doc, start, lang, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def shell_blocks() -> list[Block]:
    return [b for doc in DOCS for b in code_blocks(doc) if b.lang in SHELL_LANGS]


def split_script(text: str) -> tuple[list[str], list[str]]:
    """The logical command lines of a shell block (continuations joined, comments and heredoc
    bodies removed) and the heredoc bodies fed to ``python -``."""
    commands, heredocs, lines = [], [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", line)
        if heredoc:
            end, body = heredoc.group(1), []
            while i < len(lines) and lines[i].strip() != end:
                body.append(lines[i])
                i += 1
            i += 1
            if re.search(r"python3?\s+-(\s|$)", line):
                heredocs.append("\n".join(body))
            line = line[: heredoc.start()]
        if line.strip():
            commands.append(line)
    return commands, heredocs


def words(command: str) -> list[list[str]]:
    """The simple commands of one command line, as shlex words (``&&``, ``;``, ``|`` split)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    simple, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            simple.append(current)
            current = []
        else:
            current.append(token)
    simple.append(current)
    return [c for c in simple if c]


def all_simple_commands() -> list[tuple[Block, list[str]]]:
    found = []
    for block in shell_blocks():
        commands, _ = split_script(block.text)
        for command in commands:
            for simple in words(command):
                while simple and re.match(r"^[A-Z_][A-Z0-9_]*=", simple[0]):  # VAR=value cmd
                    simple = simple[1:]
                if simple:
                    found.append((block, simple))
    return found


def click_problems(args: list[str]) -> list[str]:
    """Subcommands and options of a ``btcusdt`` command line that the command tree lacks."""
    command: click.Command = app
    ctx = click.Context(app, info_name="btcusdt")
    args = list(args)
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        sub = command.get_command(ctx, name)
        if sub is None:
            return [f"no subcommand {name!r} of {command.name!r}"]
        command, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    opts = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            opts.update(param.opts, param.secondary_opts)
    return [
        f"{command.name}: no option {arg.split('=')[0]!r}"
        for arg in args
        if arg.startswith("-") and arg != "-" and arg.split("=")[0] not in opts
    ]


def ignored(path: str) -> bool:
    return (
        subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT, check=False).returncode
        == 0
    )


def path_problem(token: str, previous: str | None) -> str | None:
    """A token that names a file or folder of the repository that does not exist, or a file
    the command would write at the root of the repository."""
    if previous in OUTPUT_OPTIONS or previous == ">" or previous == ">>":
        return f"writes {token!r} at the repository root" if "/" not in token else None
    token = token.removeprefix("@")  # curl -d @FILE
    if re.match(r"^(/|~|\$|-|\w+://|\.venv/)", token) or "=" in token or "*" in token:
        return None
    head = token.split("/")[0]
    looks_like_file = FILE_SUFFIXES.search(token) is not None
    if "/" in token and not (REPO_ROOT / head).exists():
        return None  # not a repository path (a URL path, a kubectl resource, ...)
    if "/" not in token and not looks_like_file:
        return None
    if (REPO_ROOT / token).exists() or ignored(token):
        return None
    return f"no file {token!r} in the repository"


def test_every_code_block_says_its_language():
    """A block without a language would hide its commands from these tests."""
    unlabelled = [b.where() for doc in DOCS for b in code_blocks(doc) if not b.lang]
    assert not unlabelled, unlabelled


def test_docs_have_shell_blocks():
    blocks = shell_blocks()
    assert any(b.doc.name == "README.md" for b in blocks)
    assert len(all_simple_commands()) > 30


def program(simple: list[str]) -> tuple[str, list[str]] | None:
    """``("btcusdt", args)`` or ``("python -m MODULE", args)`` for a simple command that runs one
    (behind a wrapper such as ``/usr/bin/time -f ...`` too), else None."""
    for i, word in enumerate(simple):
        name = Path(word).name
        if name == "btcusdt":
            return "btcusdt", simple[i + 1 :]
        if re.fullmatch(r"python(3(\.\d+)?)?", name) and simple[i + 1 : i + 2] == ["-m"]:
            if len(simple) > i + 2:
                return f"python -m {simple[i + 2]}", simple[i + 3 :]
    return None


def runs() -> list[tuple[Block, str, list[str]]]:
    found = []
    for block, simple in all_simple_commands():
        ran = program(simple)
        if ran:
            found.append((block, *ran))
    return found


def test_every_btcusdt_subcommand_and_option_exists():
    problems, checked = [], 0
    for block, name, args in runs():
        if name in ("btcusdt", "python -m cli"):
            checked += 1
            problems += [f"{block.where()}: {p}" for p in click_problems(args)]
    assert checked > 20
    assert not problems, "\n".join(problems)


def test_every_python_module_exists():
    missing = []
    for block, name, _ in runs():
        module = name.removeprefix("python -m ")
        if name.startswith("python -m ") and importlib.util.find_spec(module) is None:
            missing.append(f"{block.where()}: {name}")
    assert not missing, "\n".join(missing)


def test_every_option_of_a_python_module_is_in_its_help():
    """``python -m MODULE --opt``: ``--opt`` appears in ``python -m MODULE --help`` (one run
    per module, argparse and click alike)."""
    wanted: dict[str, set[str]] = {}
    where: dict[str, str] = {}
    for block, name, args in runs():
        if name.startswith("python -m ") and name != "python -m cli":
            module = name.removeprefix("python -m ")
            opts = {a.split("=")[0] for a in args if re.match(r"^--\w", a)}
            if args and not args[0].startswith("-") and module.endswith(".cli"):
                continue  # a click group (python -m ingest.cli data update): see the btcusdt test
            wanted.setdefault(module, set()).update(opts)
            where.setdefault(module, block.where())
    problems = []
    for module, opts in sorted(wanted.items()):
        if not opts:
            continue
        shown = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shown.returncode == 0, f"{where[module]}: python -m {module} --help: {shown.stderr}"
        help_opts = set(re.findall(r"--[\w-]+", shown.stdout))
        problems += [f"{where[module]}: python -m {module}: no {o}" for o in opts - help_opts]
    assert not problems, "\n".join(problems)


def test_commands_are_pasteable():
    """No bare ``bentoml`` or ``btcusdt`` (the venv is not on PATH), no literal ``[--option]``
    brackets, no ``<placeholder>`` (a shell redirect), no ``~/bentoml`` that ignores
    ``BENTOML_HOME``."""
    problems = []
    for block in shell_blocks():
        commands, _ = split_script(block.text)
        for command in commands:
            code = command.split(" #")[0]
            if re.search(r"\[--?\w", code):
                problems.append(f"{block.where()}: literal brackets in {command!r}")
            if re.search(r"<[a-z][\w ]*>", code):
                problems.append(f"{block.where()}: placeholder in {command!r}")
            if re.search(r"(?<!:-)~/bentoml", code):
                problems.append(f"{block.where()}: ~/bentoml instead of $BENTOML_HOME")
        for _, simple in ((b, s) for b, s in all_simple_commands() if b == block):
            if simple[0] in ("bentoml", "btcusdt", "python", "locust"):
                problems.append(f"{block.where()}: bare {simple[0]} (not on PATH: use .venv/bin/)")
    assert not problems, "\n".join(problems)


def make_targets() -> set[str]:
    targets = set()
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([a-z][\w-]*):", line)
        if match:
            targets.add(match.group(1))
    return targets


def test_every_make_target_exists():
    targets, problems = make_targets(), []
    for block, simple in all_simple_commands():
        if simple[0] != "make":
            continue
        named = [w for w in simple[1:] if not w.startswith("-") and "=" not in w]
        for target in named:
            if target not in targets:
                problems.append(f"{block.where()}: no make target {target!r}")
                continue
            dry = subprocess.run(
                ["make", "-n", target, *[w for w in simple[1:] if "=" in w]],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if dry.returncode != 0:
                problems.append(f"{block.where()}: make -n {target}: {dry.stderr.strip()}")
    assert not problems, "\n".join(problems)


def test_every_named_repository_file_exists_and_nothing_is_written_at_the_root():
    problems = []
    for block, simple in all_simple_commands():
        for previous, token in zip([None, *simple], simple, strict=False):
            problem = path_problem(token, previous)
            if problem:
                problems.append(f"{block.where()}: {problem}")
    for block in shell_blocks():
        for source in split_script(block.text)[1]:
            for name in re.findall(r"open\(\s*[\"']([^\"'/]+)[\"']\s*,\s*[\"']w", source):
                problems.append(f"{block.where()}: writes {name!r} at the repository root")
    assert not problems, "\n".join(problems)


def inline_python() -> list[tuple[Block, str]]:
    found = [(b, s) for b in shell_blocks() for s in split_script(b.text)[1]]
    found += [(b, b.text) for doc in DOCS for b in code_blocks(doc) if b.lang == "python"]
    return found


@pytest.mark.parametrize("block, source", inline_python(), ids=lambda v: getattr(v, "line", ""))
def test_inline_python_compiles_and_imports_what_exists(block, source):
    tree = ast.parse(source, filename=block.where())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert importlib.util.find_spec(alias.name), f"{block.where()}: {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{block.where()}: from {node.module} import {alias.name}"


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    titles = re.findall(r"^#+\s+(.+?)\s*$", doc.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}


def test_readme_is_short_and_links_to_pages_and_sections_that_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.encode()) <= README_MAX_BYTES
    broken = []
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", doc.read_text()):
            if re.match(r"^\w+://", target):
                continue
            path = doc.parent / target if target else doc
            if not path.exists():
                broken.append(f"{doc.name}: no file {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc.name}: no section #{anchor} in {path.name}")
    assert not broken, "\n".join(broken)


def test_one_section_per_title_in_the_readme():
    titles = re.findall(r"^#+\s+(.+)$", (REPO_ROOT / "README.md").read_text(), re.M)
    assert len(titles) == len(set(titles)), titles


def test_no_file_refers_to_a_shared_folder():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = REPO_ROOT / name
        if not path.is_file() or path.suffix in {".gz", ".zip", ".parquet", ".png", ".onnx"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if re.search(r"(?<![\w/.])" + "shared" + "/", text):
            offenders.append(name)
    assert not offenders, offenders
