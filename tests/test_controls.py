"""The camera's controls in the real preview window under Xvfb: mirror, Space, style keys, h.

A child process runs the real pipeline with the camera's live stages (`LiveStages`) and the
real `PreviewSink` (mirrored, with the stages as its controls); the test looks at the window
with ImageMagick and presses keys with xdotool, as tests/test_preview.py does. Two tiny styles
with known output: "invert" (255 - input) and "grey" (flat mid-grey).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import encode_h264
from test_preview import Window, near, save_invert_model, xvfb  # noqa: F401  (xvfb is a fixture)

CLIP_BGR = (40, 200, 60)
INVERTED_BGR = tuple(255 - c for c in CLIP_BGR)
GREY = (128, 128, 128)

DRIVER = """
import json, sys, threading
from pathlib import Path
from livefilter.capture import PacedFileSource
from livefilter.engine import Engine
from livefilter.pipeline import run
from livefilter.quality import Level, LiveStages
from livefilter.sinks.preview import PreviewSink

clip, model, title = sys.argv[1:4]
styles = [("invert", Path(model)), ("grey", Path(model).with_name("grey.onnx"))]
stages = LiveStages(Path(model), ladder_for=lambda m: [Level("hd", Path(m), 120, "off", 0.0)],
                    engine_factory=lambda lv: Engine(lv.model, resolution=lv.resolution),
                    temporal_factory=lambda mode, strength: None, fps=30.0, quality="hd", styles=styles,
                    style_name="invert")
sink = PreviewSink(title=title, mirror=True, controls=stages)
stop = threading.Event()
timer = threading.Timer(90, stop.set)
timer.daemon = True
timer.start()
stats = run(PacedFileSource(clip, loop=True), stages.process, [sink, stages.meter], live=True,
            stop_event=stop, post=stages.post)
print(json.dumps({"frames_written": stats.frames_written, "stopped_by_user": stats.stopped_by_user,
                  "style": stages.style_name, "paused": stages.paused}))
"""


def save_grey_model(path: Path) -> Path:
    """Output 0 in [-1, 1] everywhere: a flat mid-grey picture whatever comes in."""
    weight = np.zeros((3, 3, 1, 1), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["out"])], "grey",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_marked_clip(path: Path, frames: int = 60, size: tuple[int, int] = (320, 240)) -> Path:
    """Flat green with a still white block in the lower LEFT: where it shows tells the mirroring."""
    w, h = size

    def draw(_i: int) -> np.ndarray:
        image = np.empty((h, w, 3), np.uint8)
        image[:] = CLIP_BGR
        image[int(h * 0.65):int(h * 0.9), int(w * 0.05):int(w * 0.25)] = 255
        return image
    return encode_h264(path, draw, frames)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("controls")
    save_grey_model(root / "grey.onnx")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    return {"clip": make_marked_clip(root / "clip.mp4"), "model": save_invert_model(root / "invert.onnx"),
            "driver": driver}


def middle(shot: np.ndarray) -> np.ndarray:
    h, w = shot.shape[:2]
    return shot[int(h * 0.3):int(h * 0.55), int(w * 0.3):int(w * 0.7)]


def block(shot: np.ndarray, side: str) -> np.ndarray:
    """Where the clip's still block is (left) or would be once mirrored (right)."""
    h, w = shot.shape[:2]
    rows = slice(int(h * 0.7), int(h * 0.85))
    return shot[rows, int(w * 0.08):int(w * 0.22)] if side == "left" else shot[rows, int(w * 0.78):int(w * 0.92)]


def has_help_box(shot: np.ndarray) -> bool:
    """The key help: a black box with white text in the top-right corner."""
    h, w = shot.shape[:2]
    corner = shot[2:int(h * 0.5), int(w * 0.55):w - 2]
    solid_rows = ((corner.max(axis=2) < 40).mean(axis=1) > 0.9).sum()
    return solid_rows >= 3 and (corner.min(axis=2) > 200).any()


def test_mirror_pause_style_keys_and_help_in_the_real_window(media, xvfb, tmp_path):  # noqa: F811
    win = Window(media, xvfb, tmp_path)
    try:
        # Mirrored and filtered: the inverted (black) block sits on the RIGHT, the left is background.
        def mirrored_filtered(s):
            return (near(middle(s), INVERTED_BGR) and block(s, "right").max() < 60
                    and near(block(s, "left"), INVERTED_BGR))
        win.wait_for("1-mirrored", mirrored_filtered)

        # Space: the original passes through (green, white block), still mirrored.
        win.key("space")
        win.wait_for("2-paused", lambda s: near(middle(s), CLIP_BGR) and block(s, "right").min() > 200)
        win.key("space")
        win.wait_for("3-resumed", lambda s: near(middle(s), INVERTED_BGR))

        # 2: the second style (flat grey) takes over while the stream keeps running.
        win.key("2")
        win.wait_for("4-style-2", lambda s: near(middle(s), GREY, tolerance=12))
        win.key("1")
        win.wait_for("5-style-1", lambda s: near(middle(s), INVERTED_BGR))

        # h: the key help appears top right; h again hides it.
        win.key("h")
        win.wait_for("6-help", has_help_box)
        win.key("h")
        win.wait_for("7-no-help", lambda s: not has_help_box(s) and near(middle(s), INVERTED_BGR))

        win.key("q")
        result = win.result()
    finally:
        win.kill()
    assert result["stopped_by_user"] and result["style"] == "invert" and not result["paused"]
    assert result["frames_written"] > 30
    json.dumps(result)


def test_camera_options_and_keys_in_help(capsys):
    from livefilter.cli import build_parser

    args = build_parser().parse_args(["camera"])
    assert args.quality == "auto" and args.latency_budget == 80 and not args.no_mirror
    assert build_parser().parse_args(["camera", "--no-mirror", "--quality", "r192"]).no_mirror
    with pytest.raises(SystemExit):
        build_parser().parse_args(["camera", "--help"])
    text = capsys.readouterr().out
    for needle in ("keys in the preview window", "1-9", "Space", "pause the filter", "--no-mirror",
                   "--quality", "--latency-budget", "never are"):
        assert needle in text
