"""A style's recipe runs its stages in order from the teacher and the data folders to the weights
files, resumes after a stop without redoing finished stages, and refuses a recipe it cannot run
with a one-line error. The shipped recipes name only the teachers, the data and the weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import require_module  # noqa: E402

torch = require_module("torch", "pip install torch==2.13.0, the CPU build; a looser pin pulls a CUDA build")
onnx = require_module("onnx")

from livefilter.engine import Engine, model_resolution  # noqa: E402
from livefilter.train import recipe as R  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TINY_RECIPE = """
style = "toy"
teacher = "toy_teacher.onnx"
photos = ["data/photos"]
work = "{work}"
cache = "{cache}"
weights = "{weights}"

[[stage]]
name = "base"
run = "distill"
args = ["--teacher", "{{teacher}}", "--photos", "{{shared}}/data/photos", "--cache", "{{cache}}",
        "--work", "{{work}}/base", "--out", "{{work}}/base.onnx", "--batch", "2", "--crop", "32", "--steps", "2",
        "--threads", "1", "--min-pairs", "2", "--no-progress", "--c1", "8", "--c2", "16", "--n-enc", "1",
        "--n-mid", "1", "--n-dec", "1", "--eval-every", "100", "--cache-passes", "1"]

[[stage]]
name = "hdcache"
run = "hdcache"
args = ["--teacher", "{{teacher}}", "@data", "--cache", "{{cache}}", "--no-jitter", "--threads", "1"]

[[stage]]
name = "hd"
run = "hdtrain"
args = ["--teacher", "{{teacher}}", "@data", "--cache", "{{cache}}", "--faces", "{{faces_model}}",
        "--init", "{{work}}/base.onnx", "--out", "{{weights}}/{{style}}.onnx", "--work", "{{work}}/hd",
        "--resolution", "64", "--crop", "90", "--steps", "2", "--minutes", "0", "--batch", "2",
        "--min-pairs", "1", "--threads", "1"]

[[stage]]
name = "int8"
run = "quantize"
args = ["--model", "{{weights}}/{{style}}.onnx", "--teacher", "{{teacher}}", "--photos", "{{shared}}/data/photos",
        "--out", "{{weights}}/{{style}}_int8.onnx", "--calib", "2", "--threads", "1",
        "--keep-fp32", "/student/stem"]
"""


def _shared(tmp_path: Path) -> Path:
    """A ../shared stand-in: a toy teacher (an untrained student) and a few synthetic photos."""
    from livefilter.train.model import Student, StudentConfig, export_onnx

    shared = tmp_path / "shared"
    (shared / "teachers").mkdir(parents=True)
    (shared / "data" / "photos").mkdir(parents=True)
    torch.manual_seed(0)
    export_onnx(Student(StudentConfig(c1=8, c2=16, n_enc=1, n_mid=1, n_dec=1)), shared / "teachers" / "toy_teacher.onnx")
    rng = np.random.default_rng(3)
    for i in range(8):
        img = cv2.resize(rng.integers(0, 255, (4, 5, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
        cv2.line(img, (10, 10 + 10 * i), (150, 100 - 5 * i), (10, 10, 10), 2)
        cv2.imwrite(str(shared / "data" / "photos" / f"p{i}.png"), img)
    return shared


def test_recipe_runs_every_stage_then_resumes_without_redoing_them(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    weights = tmp_path / "weights"
    weights.mkdir()
    recipe = tmp_path / "toy.toml"
    recipe.write_text(TINY_RECIPE.format(work=tmp_path / "work", cache=tmp_path / "cache", weights=weights))
    assert R.main([str(recipe), "--shared", str(shared)]) == 0
    for stage in ("base", "hdcache", "hd", "int8"):
        assert (tmp_path / "work" / f"{stage}.done").is_file()
    from livefilter.train import data as D
    from livefilter.train import hdcache as H

    train, held = D.split_photos([shared / "data" / "photos"])
    hd_pairs = H.cached_pairs(H.hd_cache_dir(tmp_path / "cache", shared / "teachers" / "toy_teacher.onnx"))
    assert len(hd_pairs) == len(train) + len(held) == 8  # --no-jitter: no colour-jittered copies
    out, int8 = weights / "toy.onnx", weights / "toy_int8.onnx"
    assert model_resolution(out) == 64 and Engine(out).hd and Engine(int8).hd
    before = out.stat().st_mtime_ns
    run = subprocess.run([sys.executable, "-m", "livefilter.train.recipe", str(recipe), "--shared", str(shared)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("done before") == 4
    assert out.stat().st_mtime_ns == before  # nothing trained twice


@pytest.mark.parametrize("text, message", [
    ('style = "x"\nteacher = "t.onnx"\n[[stage]]\nname = "a"\nrun = "distill"\nargs = ["{nowhere}"]\n',
     "unknown placeholder"),
    ('style = "x"\nteacher = "t.onnx"\n[[stage]]\nname = "a"\nrun = "rm"\n', "run = one of"),
    ('style = "x"\n[[stage]]\nname = "a"\nrun = "distill"\n', "has no 'teacher'"),
    ('style = "x"\nteacher = "t.onnx"\n[[stage]]\nname = "a"\nrun = "hdcache"\n'
     '[[stage]]\nname = "a"\nrun = "hdcache"\n', "names must differ"),
    ('style = [', "cannot read recipe"),
])
def test_a_recipe_that_cannot_run_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    run = subprocess.run([sys.executable, "-m", "livefilter.train.recipe", str(recipe), "--shared", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("style", ["hayao", "cute", "shinkai"])
def test_shipped_recipes_go_from_the_teacher_and_data_to_the_weights(style: str, capsys) -> None:
    assert R.main([str(REPO / "recipes" / f"{style}.toml"), "--dry-run"]) == 0
    commands = capsys.readouterr().out
    assert "../shared/teachers/" in commands and "--init runs/recipe/" in commands
    assert f"--out weights/{style}.onnx" in commands and f"--out weights/{style}_int8.onnx" in commands
    assert "git show" not in commands and "--minutes 0" in commands  # step budgets, not the CPU's speed
