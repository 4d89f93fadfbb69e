"""The documentation agrees with the code: every relative link in the Markdown pages points to a file (and a heading)
that exists, every Python example's imports run, every ``pdeflow`` command in a shell example parses, and every
``python -m`` module named exists."""

import ast
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from pdeflow import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "CHANGELOG.md", "benchmarks/README.md"]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation but hyphens and underscores dropped, spaces as
    hyphens."""
    text = heading.strip().lower()
    return re.sub(r"[^\w\- ]", "", text, flags=re.ASCII).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """Every heading's anchor on ``page`` (a repeated heading's with GitHub's -1, -2, … suffixes)."""
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in page.read_text().splitlines():
        in_code ^= line.startswith("```")
        match = None if in_code else re.match(r"#{1,6} (.+)", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _code_blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def test_slugs_follow_github():
    assert _slug("The default fit's step against the issue's 0.67 s") == \
        "the-default-fits-step-against-the-issues-067-s"
    assert _slug("Maps × values with the values head-major") == "maps--values-with-the-values-head-major"
    assert _slug("A faithful fit: `pdeflow fit --preset faithful`") == "a-faithful-fit-pdeflow-fit---preset-faithful"
    assert _slug("**Bold** `pdeflow.machine.fast_bfloat16`") == "bold-pdeflowmachinefast_bfloat16"


@pytest.mark.parametrize("name", PAGES)
def test_every_relative_link_resolves_to_a_file_and_heading(name):
    page = ROOT / name
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, f"{name} has no relative links to check"
    broken = []
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no heading with that anchor in {target.relative_to(ROOT)}")
    assert not broken, f"{name}: " + "; ".join(broken)


def test_every_import_in_the_readme_examples_runs():
    blocks = _code_blocks(ROOT / "README.md", "python")
    imports = [node for block in blocks for node in ast.walk(ast.parse(block))
               if isinstance(node, ast.ImportFrom | ast.Import)]
    assert len(imports) >= 10, imports
    for node in imports:
        exec(compile(ast.Module([node], type_ignores=[]), "README.md", "exec"), {})  # noqa: S102


def _shell_commands(page: Path) -> list[str]:
    """Each shell example's lines (continuations joined, comments dropped)."""
    commands = []
    for block in _code_blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_every_pdeflow_command_in_the_readme_parses():
    commands = [shlex.split(c) for c in _shell_commands(ROOT / "README.md")]
    pdeflow = [c[1:] for c in commands if Path(c[0]).name == "pdeflow"]
    assert len(pdeflow) >= 10, pdeflow
    parser = cli.build_parser()
    for argv in pdeflow:  # the first pass of `cli.parse_args`: commands, options and their values, no files read
        try:
            parser.parse_args(argv)
        except SystemExit as exit:
            raise AssertionError(f"`pdeflow {shlex.join(argv)}` in the README does not parse") from exit


@pytest.mark.parametrize("name", ["README.md", "benchmarks/README.md"])
def test_every_python_module_named_exists(name):
    text = (ROOT / name).read_text()
    modules = set(re.findall(r"python -m ([\w.]+)", text))
    assert modules, name
    missing = sorted(m for m in modules if m not in ("pytest", "pip") and importlib.util.find_spec(m) is None)
    assert not missing, f"{name} names modules that do not exist: {missing}"
