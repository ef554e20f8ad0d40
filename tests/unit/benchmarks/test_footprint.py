"""The footprint benchmark's pure helpers: folder sizes, counts, memory fields.

No process is started here: `make bench-footprint` runs the benchmark itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.footprint import (
    PROBED,
    bento_parts,
    count_distributions,
    digest,
    extra_packages,
    folder_mb,
    maxrss_mb,
    median_probe,
    requirement_count,
    status_kb,
)

MB = 1024 * 1024


def test_folder_mb_sums_files_below_and_counts_links_as_links(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big").write_bytes(b"x" * MB)
    (tmp_path / "small").write_bytes(b"x" * (MB // 2))
    (tmp_path / "link").symlink_to(tmp_path / "a" / "big")
    size = folder_mb(tmp_path)
    assert 1.5 <= size < 1.5 + 0.001  # the link adds its own few bytes, not 1 MB
    assert folder_mb(tmp_path / "missing") == 0.0


def test_count_distributions_counts_dist_info_folders(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for name in ("numpy-2.4.6.dist-info", "pandas-3.1.1.dist-info", "numpy"):
        (site / name).mkdir(parents=True)
    assert count_distributions(tmp_path) == 2


def test_requirement_count_leaves_out_comments_blanks_and_options() -> None:
    text = (
        "# header\n\nbentoml==1.4.40\nlightgbm==4.7.0  # the model\n"
        "-c constraints.txt\n   \nibis-framework[duckdb]==12.0.0\n"
    )
    assert requirement_count(text) == 3


def test_status_kb_reads_a_field_of_proc_status() -> None:
    status = (
        "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100 kB\n"
    )
    assert status_kb(status) == 123456
    assert status_kb(status, "VmRSS") == 100
    with pytest.raises(ValueError, match="VmSwap"):
        status_kb(status, "VmSwap")


def test_maxrss_is_kilobytes_on_linux_and_bytes_on_macos() -> None:
    assert maxrss_mb(204800, "linux") == 200.0
    assert maxrss_mb(200 * MB, "darwin") == 200.0


def test_digest_changes_with_any_text() -> None:
    assert digest("a", "b") == digest("a", "b")
    assert digest("a", "b") != digest("a", "c")
    assert digest("ab", "") != digest("a", "b")


def test_extra_packages_names_code_outside_the_serving_packages(
    tmp_path: Path,
) -> None:
    for package in ("core", "serving", "training"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "docs").mkdir()  # no Python in it: not a package
    (tmp_path / "docs" / "x.md").write_text("")
    (tmp_path / "propensity.yaml").write_text("")
    (tmp_path / "loose.py").write_text("")
    assert extra_packages(tmp_path) == ["loose", "training"]


def test_median_probe_takes_medians_and_any_import() -> None:
    def run(seconds: float, hwm_kb: int, sklearn: bool) -> dict:
        modules = dict.fromkeys(PROBED, False) | {"sklearn": sklearn}
        return {
            "seconds": seconds,
            "ru_maxrss": hwm_kb * 2,
            "status": f"VmHWM:\t{hwm_kb} kB\n",
            "modules": modules,
            "file": "/x/service.py",
        }

    got = median_probe(
        [
            run(3.0, 1024 * 300, False),
            run(1.0, 1024 * 100, False),
            run(2.0, 1024 * 200, True),
        ]
    )
    assert got["seconds"] == 2.0
    assert got["hwm_mb"] == 200.0
    assert got["maxrss_mb"] == 400.0
    assert got["modules"]["sklearn"] is True
    assert got["modules"]["pyspark"] is False


def test_bento_parts_splits_a_bento_and_counts_the_models_it_names(
    tmp_path: Path,
) -> None:
    bento, home = tmp_path / "bento", tmp_path / "home"
    (bento / "src" / "serving").mkdir(parents=True)
    (bento / "src" / "serving" / "api.py").write_bytes(b"x" * 1000)
    (bento / "env" / "python").mkdir(parents=True)
    (bento / "env" / "python" / "requirements.txt").write_text("a==1\n# c\nb==2\n")
    (bento / "bento.yaml").write_text("models:\n- tag: m:v1\n  module: ''\n")
    for version in ("v1", "v2"):  # v2 is not the Bento's
        (home / "models" / "m" / version).mkdir(parents=True)
        (home / "models" / "m" / version / "model.txt").write_bytes(b"x" * MB)
    parts = bento_parts(bento, home)
    assert parts["bento_models_mb"] == 1.0
    assert parts["bento_py_files"] == 1.0
    assert parts["bento_requirements"] == 2.0
    assert parts["bento_folder_mb"] > parts["bento_src_mb"] + parts["bento_env_mb"]
    assert parts["bento_size_mb"] == parts["bento_folder_mb"] + 1.0
