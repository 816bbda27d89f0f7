"""The shipped students: small, readable by the runtime (metadata), any size in, same size out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import require_module  # noqa: E402

onnx = require_module("onnx")

from livefilter.train.teacher import OnnxGenerator  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
STYLES = ["hayao", "hayao_int8", "shinkai", "shinkai_int8", "cute", "cute_int8"]


@pytest.mark.parametrize("style", STYLES)
def test_student_file(style: str) -> None:
    path = WEIGHTS / f"{style}.onnx"
    if not path.exists():
        pytest.skip(f"{path.name} not trained yet")
    assert path.stat().st_size < 2_000_000  # the HD issue's bound for an fp32 style
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["livefilter.layout"] == "NCHW"
    assert int(meta["livefilter.multiple"]) in (4, 8, 16)
    gen = OnnxGenerator(path, threads=1)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    out = gen(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.std() > 0  # not a constant picture
