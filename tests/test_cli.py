"""CLI happy paths: image (file and folder), styles, version, camera on a paced file with --record."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np

from conftest import draw_frame, make_clip, probe
from livefilter import __version__
from livefilter.cli import main


def test_version():
    result = subprocess.run([sys.executable, "-m", "livefilter", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"livefilter {__version__}"


def test_image_file_keeps_size(models, tmp_path):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), draw_frame(2, 75, 41))
    out = tmp_path / "out.jpg"
    assert main(["image", str(src), str(out), "--model", str(models["tiny"]), "--resolution", "32"]) == 0
    result = cv2.imread(str(out))
    assert result.shape == (41, 75, 3)


def test_image_folder_to_folder(models, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i, (w, h) in enumerate([(40, 30), (31, 57)]):
        cv2.imwrite(str(folder / f"p{i}.png"), draw_frame(i, w, h))
    (folder / "notes.txt").write_text("not a picture")
    out = tmp_path / "styled"
    assert main(["image", str(folder), str(out), "--model", str(models["tiny"]), "--resolution", "32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    assert cv2.imread(str(out / "p1.png")).shape == (57, 31, 3)


def test_image_refuses_to_overwrite(models, tmp_path, capsys):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.zeros((8, 8, 3), np.uint8))
    assert main(["image", str(src), str(src), "--model", str(models["tiny"]), "--overwrite"]) == 2
    assert "same file" in capsys.readouterr().err


def test_styles_lists_shipped_weights_or_says_none(capsys):
    code = main(["styles"])
    out = capsys.readouterr().out
    assert (code == 0 and "(default)" in out) or (code == 1 and "no styles" in out)


def test_camera_on_a_paced_file_records_what_it_showed(models, tmp_path, capsys):
    clip = make_clip(tmp_path / "cam.mp4", frames=20, width=64, height=48, rate=Fraction(40), audio=False)
    record = tmp_path / "rec.mkv"
    code = main(["camera", "--source", str(clip), "--no-preview", "--record", str(record),
                 "--model", str(models["tiny"]), "--resolution", "32"])
    assert code == 0
    err = capsys.readouterr().err
    assert "frames shown" in err and "latency p50" in err
    shown = int(err.split(" frames shown")[0].split()[-1])
    dropped = int(err.split(" dropped")[0].split()[-1])
    assert shown + dropped == 20  # every frame read is either shown or counted as dropped
    result = probe(record)
    assert result["frames"] == shown and result["size"] == (64, 48)
    assert result["seconds"] == sorted(result["seconds"])


def test_temporal_default_is_the_same_for_every_stream_command():
    from livefilter.cli import build_parser
    from livefilter.temporal import DEFAULT_MODE, DEFAULT_STRENGTH

    parser = build_parser()
    # The image subcommand is parsed first on purpose: nothing it does may leak into the others.
    image = parser.parse_args(["image", "a.png", "b.png"])
    assert image.func.__name__ == "cmd_image"
    for argv in (["camera"], ["video", "a.mp4", "b.mp4"], ["bench"]):
        args = parser.parse_args(argv)
        assert (args.temporal, args.strength) == (DEFAULT_MODE, DEFAULT_STRENGTH), argv
    assert parser.parse_args(["video", "a.mp4", "b.mp4", "--temporal", "off"]).temporal == "off"


def test_image_is_the_engine_alone_without_smoothing(models, tmp_path):
    from livefilter.engine import Engine

    src = tmp_path / "in.png"
    picture = draw_frame(5, 64, 48)
    cv2.imwrite(str(src), picture)
    out = tmp_path / "out.png"
    assert main(["image", str(src), str(out), "--model", str(models["tiny"]), "--resolution", "32",
                 "--temporal", "ema", "--strength", "0.5"]) == 0
    expected = Engine(models["tiny"], resolution=32)(cv2.imread(str(src)))
    np.testing.assert_array_equal(cv2.imread(str(out)), expected)
