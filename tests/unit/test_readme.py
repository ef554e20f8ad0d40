"""The README is the front page, and it stays true to what is on disk.

It names every module of the packages in its package map, every `propensity`
command and every Makefile target in its command table, links only to docs/ pages
(and headings) that exist, and stays within 200 lines; the request example in
docs/api.md carries exactly the demo model's feature list. Everything is read from
the files and the CLI as they are, so the checks follow the code when modules or
commands are added, moved or removed: a failure names what to add to (or drop from)
the README.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from core.config import load_config
from features.definition import FeatureSpec, catalogue
from features.sources.load import load
from features.synthetic.demo import generate

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_LINES = 200
# the folders whose modules the package map names: the installed packages and the
# benchmarks
PACKAGES = ("core", "features", "model", "training", "serving", "cli", "benchmarks")
# where a click group may live once the CLI is a click package, besides the entry
# point itself
CLICK_CANDIDATES = (("cli.main", "cli"), ("cli.main", "app"), ("cli", "cli"))

CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """The text under `## heading` up to the next heading of level 1 or 2."""
    match = re.search(
        rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^#{{1,2}} |\Z)", text, re.M | re.S
    )
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The cells of each markdown table row in `text` (separator rows left out)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"[|\s:-]+", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


# -- (a) the package map names every module ------------------------------------


def modules_on_disk() -> set[str]:
    """Every module of PACKAGES as a path relative to the root, e.g.
    `serving/api/service.py`; `__init__.py` and `__main__.py` left out (a package
    is named by its folder)."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue
            found.add(path.relative_to(ROOT).as_posix())
    return found


def modules_in_map(text: str) -> set[str]:
    """The modules the package map names: a row's folder (`serving/api/`, its first
    cell) joined with each file name in the row (`service.py`), or a full path
    (`serving/api/service.py`) anywhere in the section."""
    named = set()
    for cells in table_rows(text):
        folders = CODE_SPAN.findall(cells[0])
        folder = folders[0].strip().rstrip("/") + "/" if folders else ""
        for span in CODE_SPAN.findall(" | ".join(cells[1:])):
            span = span.strip()
            if span.endswith(".py"):
                named.add(span if "/" in span else folder + span)
    for span in CODE_SPAN.findall(text):
        if "/" in span and span.strip().endswith(".py"):
            named.add(span.strip())
    return named


def test_package_map_names_every_module() -> None:
    text = section(README.read_text(), "Package map")
    on_disk, named = modules_on_disk(), modules_in_map(text)
    missing = sorted(on_disk - named)
    assert not missing, (
        "README.md's package map does not name these modules (add each with a "
        "one-line 'what it is'):\n  " + "\n  ".join(missing)
    )
    stale = sorted(named - on_disk)
    assert not stale, (
        "README.md's package map names modules that do not exist:\n  "
        + "\n  ".join(stale)
    )


# -- (b) the command table names every CLI command ------------------------------


def _walk_click(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every command path under a click group, subcommands included (through
    `list_commands`/`get_command`, so lazily loaded groups are walked too)."""
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or getattr(command, "hidden", False):
            continue
        path = (*prefix, name)
        yield " ".join(path)
        if isinstance(command, click.Group):
            yield from _walk_click(command, path)


def _walk_argparse(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[str]:
    """Every command path of an argparse parser's subparsers, nested ones too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = (*prefix, name)
                yield " ".join(path)
                yield from _walk_argparse(sub, path)


def _click_groups(module: ModuleType, attr: str | None) -> list[Any]:
    """`module.attr` when it is a click group, or with no attr every click group
    the module holds; empty without click."""
    try:
        import click
    except ImportError:
        return []
    objs = [getattr(module, attr, None)] if attr else list(vars(module).values())
    return [obj for obj in objs if isinstance(obj, click.Group)]


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def cli_commands() -> set[str]:
    """The `propensity` commands, read from the CLI on disk. A click group wins:
    the entry point's (`[project.scripts]`), else one of CLICK_CANDIDATES, else the
    largest group in the entry point's module or `cli.main`. Without click groups,
    the argparse parser of `build_parser()` in the entry point's module or
    `cli.app`."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module_name, _, attr = scripts["propensity"].partition(":")
    for name, candidate in [(module_name, attr), *CLICK_CANDIDATES]:
        if (module := _import(name)) and (groups := _click_groups(module, candidate)):
            return set(_walk_click(groups[0]))
    walks = [
        set(_walk_click(group))
        for name in dict.fromkeys((module_name, "cli.main"))
        if (module := _import(name))
        for group in _click_groups(module, None)
    ]
    if walks:
        return max(walks, key=len)
    for name in dict.fromkeys((module_name, "cli.app")):
        module = _import(name)
        if module is not None and hasattr(module, "build_parser"):
            return set(_walk_argparse(module.build_parser()))
    raise AssertionError(
        f"no click group at {scripts['propensity']}, {CLICK_CANDIDATES} or in "
        f"{module_name}, and no build_parser(): teach tests/unit/test_readme.py "
        "where the CLI's commands are"
    )


def _command_path(span: str, commands: set[str]) -> str | None:
    """The command a code span such as `propensity runs compare A B` names
    (`runs compare`), or None when it names none. Lower-case words extend the path
    while the path has subcommands; anything else (an option, a placeholder such as
    `T` or `ID`) ends it."""
    words = span.split()
    if len(words) < 2 or words[0] != "propensity":
        return None
    path: list[str] = []
    for word in words[1:]:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        groups = {c.rsplit(" ", 1)[0] for c in commands if " " in c}
        if path and " ".join(path) not in groups:
            break  # a positional argument of a command without subcommands
        path.append(word)
    return " ".join(path) or None


def test_command_table_names_every_cli_command() -> None:
    text = section(README.read_text(), "Commands")
    commands = cli_commands()
    assert commands, "found no command in the CLI"
    spans = [s.strip() for s in CODE_SPAN.findall(text)]
    named = {p for s in spans if (p := _command_path(s, commands)) is not None}
    # a command is named by its own path or by a subcommand's
    covered = {
        " ".join(n.split()[:k]) for n in named for k in range(1, 1 + len(n.split()))
    }
    missing = sorted(commands - covered)
    assert not missing, (
        "README.md's command table does not name these `propensity` commands "
        "(add `propensity <command>` and its Makefile target):\n  "
        + "\n  ".join(missing)
    )
    stale = sorted(n for n in named if n not in commands)
    assert not stale, (
        "README.md's command table names commands the CLI does not have:\n  "
        + "\n  ".join(repr(n) for n in stale)
    )


def makefile_targets() -> tuple[set[str], set[str]]:
    """The Makefile's documented targets (`target: ... ## help`, what `make help`
    lists) and all its targets."""
    text = (ROOT / "Makefile").read_text()
    documented = set(re.findall(r"^([a-z][a-z0-9-]*):[^=\n]*## ", text, re.M))
    every = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.M))
    return documented, every


def test_command_table_names_every_makefile_target() -> None:
    text = section(README.read_text(), "Commands")
    documented, every = makefile_targets()
    named = {
        m.group(1)
        for s in CODE_SPAN.findall(text)
        if (m := re.fullmatch(r"make ([a-z][a-z0-9-]*)(?:\s.*)?", s.strip()))
    }
    missing = sorted(documented - named)
    assert not missing, (
        "README.md's command table does not name these Makefile targets:\n  "
        + "\n  ".join(f"make {t}" for t in missing)
    )
    stale = sorted(named - every)
    assert not stale, (
        "README.md's command table names Makefile targets that do not exist:\n  "
        + "\n  ".join(f"make {t}" for t in stale)
    )


# -- (c) links into docs/ resolve ------------------------------------------------


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    anchors = set()
    for title in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def broken_links(page: Path) -> list[str]:
    """The relative links of a page to a file that is missing, or to a heading
    that file lacks."""
    broken = []
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked)
        ):
            broken.append(f"{target}: no heading '#{anchor}' in {linked.name}")
    return broken


def test_readme_links_into_docs_resolve() -> None:
    text = README.read_text()
    links = [t for t in LINK.findall(text) if t.startswith("docs/")]
    assert links, "README.md links to no docs/ page"
    broken = broken_links(README)
    assert not broken, "README.md has broken links:\n  " + "\n  ".join(broken)


def test_docs_links_resolve() -> None:
    broken = [
        f"{p.name}: {b}" for p in sorted(DOCS.glob("*.md")) for b in broken_links(p)
    ]
    assert not broken, "docs/ has broken links:\n  " + "\n  ".join(broken)


# -- (d) the front page stays short ---------------------------------------------


def test_readme_is_at_most_200_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"README.md has {lines} lines, more than {MAX_LINES}: move the depth to docs/"
    )


# -- the request example ---------------------------------------------------------


def test_curl_example_matches_the_demo_catalogue(tmp_path: Path) -> None:
    """docs/api.md's predict example (moved there from the README) carries exactly
    the demo model's feature list."""
    page = (DOCS / "api.md").read_text()
    body = re.search(r"-d @- <<'EOF'\n(.*?)\nEOF", page, re.S).group(1)
    features = json.loads(body)["customers"][0]["features"]
    summary = generate(tmp_path, customers=50, seed=1, days=60)
    ds = load(summary.events_path, summary.customers_path, as_of=datetime(2030, 1, 1))
    spec = FeatureSpec.from_config(load_config(ROOT / "propensity.yaml"))
    assert list(features) == catalogue(spec, ds.customers).names


def test_the_exit_code_table_is_the_enum() -> None:
    """docs/nightly.md's exit code table lists ExitCode, number, name and meaning."""
    from core.exitcodes import describe

    text = (ROOT / "docs" / "nightly.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", text, flags=re.M)
    documented = [(int(n), name, meaning) for n, name, meaning in rows]
    expected = [(int(c), c.name, d) for c, d in describe().items()]
    assert documented == expected
