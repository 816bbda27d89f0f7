"""scripts/flicker_hd.py on a tiny teacher: clips are scored at call size, three streams."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import flicker_hd  # noqa: E402


def test_scores_the_default_output_against_the_teacher_at_call_size(tmp_path, synthetic_clip, models):
    out = tmp_path / "flicker.json"
    argv = ["--clips", str(synthetic_clip), "--teacher", str(models["tiny"]), "--frames", "4",
            "--teacher-cache", str(tmp_path / "teacher")]
    assert flicker_hd.main([*argv, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    kept = sorted((tmp_path / "teacher").rglob("*.png"))
    assert len(kept) == 4  # the teacher's frames, kept for the next run, which reads them back
    assert flicker_hd.main([*argv, "--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["rows"][0]["e_warp"] == result["rows"][0]["e_warp"]
    (row,) = result["rows"]
    assert row["size"] == "966x720" and row["frames"] == 4  # 161x120 brought to short side 720
    assert set(row["e_warp"]) == {"teacher480", "per_frame", "default"}
    assert all(np.isfinite(v) and v > 0 for v in row["e_warp"].values())
    assert row["ratio_default_to_teacher"] == pytest.approx(row["e_warp"]["default"] / row["e_warp"]["teacher480"])
    # smoothing can only calm the per-frame output, never add flicker to it
    assert row["e_warp"]["default"] <= row["e_warp"]["per_frame"]
    assert result["worst_ratio_default_to_teacher"] == row["ratio_default_to_teacher"]


def test_call_size_keeps_the_aspect_ratio_and_even_sides():
    frame = np.zeros((361, 643, 3), np.uint8)
    assert flicker_hd.to_call_size(frame).shape == (720, 1282, 3)
