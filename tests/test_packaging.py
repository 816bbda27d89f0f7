"""`pip install .` ships the styles: the wheel holds weights/*.onnx as livefilter/weights and the
installed package finds them outside the source tree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import build_generator, require_tool

REPO = Path(__file__).resolve().parents[1]


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


def test_wheel_ships_weights_and_console_script(tmp_path):
    require_tool(_setuptools_ok(), "setuptools>=68 (to build without isolation)",
                 'pip install "setuptools>=68"')
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "livefilter", src / "livefilter", ignore=ignore)
    shutil.copytree(REPO / "weights", src / "weights", ignore=ignore)
    styles = sorted(p.stem for p in (REPO / "weights").glob("*.onnx"))
    if not styles:  # the build needs weights/ to exist; give it a stand-in style
        build_generator(src / "weights" / "demo.onnx")
        styles = ["demo"]
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("livefilter-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for style in styles:
        assert f"livefilter/weights/{style}.onnx" in names
    assert "livefilter/samples/grid_lrwp9a.mp4" in names  # `livefilter demo` needs it
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "livefilter = livefilter.cli:main" in entry_points

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = subprocess.run([sys.executable, "-c", "import json; from livefilter.engine import list_styles, "
                            "resolve_model; print(json.dumps(list_styles())); print(resolve_model(list_styles()[0]))"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert probe.returncode == 0, probe.stderr
    listed, path = probe.stdout.splitlines()
    assert json.loads(listed) == styles
    assert Path(path).resolve().is_relative_to(target.resolve())
