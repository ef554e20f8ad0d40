"""The house rules: which package may import which, read from the source.

Every import statement counts, at module level or inside a function (a lazy import
is still a dependency the Bento or the API worker carries). A failure names the
file, the line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("core", "features", "model", "training", "serving", "cli", "benchmarks")
INSTALLED = ("core", "features", "model", "training", "serving", "cli")
# package -> the project packages it must never import
FORBIDDEN = {
    "core": ("features", "model", "training", "serving", "cli", "benchmarks"),
    "features": ("model", "training", "serving", "cli", "benchmarks"),
    "model": ("training", "serving", "cli", "benchmarks"),
    "training": ("serving", "cli", "benchmarks"),
    "serving": ("training", "cli", "benchmarks"),
    "cli": ("benchmarks",),
}


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`, relative ones made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from serving import api` imports serving.api
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported(path):
            top = module.split(".")[0]
            if top in forbidden:
                where = path.relative_to(ROOT)
                out.append(f"{where}:{line} imports {module}")
    return sorted(set(out))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_rules(package: str) -> None:
    found = violations(package, FORBIDDEN[package])
    assert not found, (
        f"{package} must not import {', '.join(FORBIDDEN[package])}:\n"
        + "\n".join(found)
    )


def test_the_rule_check_finds_a_forbidden_import(tmp_path: Path) -> None:
    """The walk sees lazy and relative imports (a check that finds nothing could
    be blind)."""
    source = tmp_path / "serving" / "batch" / "m.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "def f():\n    from training.train import train_all\n"
        "from ..model import registry\nimport benchmarks.api as b\n"
    )
    modules = [m for _, m in imported(source, tmp_path)]
    assert "training.train" in modules
    assert "serving.model" in modules
    assert "benchmarks.api" in modules


def test_installed_packages_are_exactly_the_product() -> None:
    """pyproject installs the product's packages, never benchmarks or tests."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in include) == sorted(INSTALLED)


def test_the_bento_carries_no_training_benchmark_or_cli_code() -> None:
    import yaml

    bento = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    packages = {pattern.split("/")[0] for pattern in bento["include"]}
    assert not packages & {"training", "benchmarks", "cli", "tests"}, packages
    assert {"serving", "model", "features", "core"} <= packages


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.split("[")[0].lower().replace("_", "-")] = version
    return pins


def test_the_runtime_set_is_pinned_as_the_tests_ran_it() -> None:
    """serving/requirements.txt (the Bento's) pins what constraints.txt pins, and
    holds no training or test tool."""
    runtime = _pins(ROOT / "serving" / "requirements.txt")
    pinned = _pins(ROOT / "constraints.txt")
    differ = {n: (v, pinned.get(n)) for n, v in runtime.items() if pinned.get(n) != v}
    assert not differ, f"runtime pins differ from constraints.txt: {differ}"
    tools = {"pytest", "hypothesis", "ruff", "schemathesis", "optuna", "pyspark"}
    assert not tools & set(runtime), tools & set(runtime)
    assert "scikit-learn" not in runtime and "mlflow" not in runtime
