"""Engine: layout and range detection, colour order, aspect ratio, odd sizes, bad models."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import TEACHERS, build_generator, draw_frame, require_module
from livefilter.engine import Engine, resolve_model
from livefilter.errors import LivefilterError


@pytest.mark.parametrize("name,layout", [("identity_nchw", "NCHW"), ("identity_nhwc", "NHWC")])
def test_layout_detected_and_identity_round_trip(models, name, layout):
    engine = Engine(models[name], resolution=120)
    assert engine.layout == layout
    image = draw_frame(3, 161, 120)
    out = engine(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    # No resize at this resolution; only padding (cropped back) and [-1, 1] conversion.
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_model_sees_rgb_and_output_is_read_as_rgb(tmp_path, layout):
    # Every output channel = the model's input channel 0, which must be the picture's red.
    red_only = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0]], float)
    engine = Engine(build_generator(tmp_path / "r.onnx", layout, mix=red_only), resolution=32)
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :, 2] = 200  # red in BGR
    image[:, :, 0] = 30   # some blue that must not leak in
    out = engine(image)
    assert np.all(np.abs(out.astype(int) - 200) <= 1)


def test_range_is_minus_one_to_one(tmp_path):
    # Output = -input in [-1, 1] means 255 - pixel in [0, 255].
    engine = Engine(build_generator(tmp_path / "neg.onnx", mix=-np.eye(3)), resolution=40)
    image = draw_frame(5, 64, 40)
    out = engine(image)
    assert np.abs(out.astype(int) - (255 - image.astype(int))).max() <= 1


def test_bias_saturates_instead_of_wrapping(tmp_path):
    engine = Engine(build_generator(tmp_path / "bright.onnx", bias=np.full(3, 3.0)), resolution=16)
    out = engine(np.full((16, 16, 3), 250, np.uint8))
    assert out.min() == 255


def test_aspect_ratio_kept_at_internal_size(models):
    engine = Engine(models["tiny"], resolution=256)
    assert engine.internal_size(640, 360) == (455, 256)
    assert engine.internal_size(360, 640) == (256, 455)
    assert engine.internal_size(1280, 720) == (455, 256)


def test_shapes_stay_where_they_were(models):
    # A red disc on the left must still be on the left, round, after a non-square trip.
    import cv2

    engine = Engine(models["identity_nchw"], resolution=64)
    image = np.zeros((90, 300, 3), np.uint8)
    cv2.circle(image, (50, 45), 30, (0, 0, 255), -1)
    out = engine(image)
    mask = out[:, :, 2] > 128
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 50) < 3 and abs(ys.mean() - 45) < 3
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 4  # still round, not squashed


@pytest.mark.parametrize("size", [(17, 33), (33, 17), (1, 1), (5, 301), (121, 161)])
def test_odd_sizes_with_a_multiple_of_four_model(models, size):
    engine = Engine(models["tiny"], resolution=37)
    assert engine.multiple == 4  # probed: two stride-2 stages
    height, width = size
    out = engine(np.full((height, width, 3), 90, np.uint8))
    assert out.shape == (height, width, 3)


def test_multiple_probed_for_nhwc_and_taken_from_metadata(models):
    assert Engine(models["tiny_nhwc"]).multiple == 8
    assert Engine(models["meta16"]).multiple == 16
    out = Engine(models["meta16"], resolution=50)(np.zeros((50, 70, 3), np.uint8))
    assert out.shape == (50, 70, 3)


def test_grey_and_alpha_pictures_accepted(models):
    engine = Engine(models["identity_nchw"], resolution=20)
    assert engine(np.zeros((20, 30), np.uint8)).shape == (20, 30, 3)
    assert engine(np.zeros((20, 30, 4), np.uint8)).shape == (20, 30, 3)


def test_wrong_io_model_names_file_and_expectation(models):
    with pytest.raises(LivefilterError) as info:
        Engine(models["wrong"])
    message = str(info.value)
    assert str(models["wrong"]) in message and "(1, 3, H, W) or (1, H, W, 3)" in message


def test_truncated_and_missing_models(models, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(models["tiny"].read_bytes()[:200])
    with pytest.raises(LivefilterError, match="cannot load model"):
        Engine(broken)
    with pytest.raises(LivefilterError, match="model file not found"):
        Engine(tmp_path / "nope.onnx")


def test_unknown_provider_falls_back_to_cpu_with_warning(models, caplog):
    logger = logging.getLogger("livefilter")
    logger.addHandler(caplog.handler)  # the CLI may have turned propagation off
    try:
        engine = Engine(models["identity_nchw"], provider="cuda")
    finally:
        logger.removeHandler(caplog.handler)
    assert engine.providers == ["CPUExecutionProvider"]
    assert "not available" in caplog.text


def test_resolve_model_paths_and_styles(models):
    assert resolve_model(str(models["tiny"])) == models["tiny"]
    with pytest.raises(LivefilterError, match="unknown style 'nosuchstyle'"):
        resolve_model("nosuchstyle")
    with pytest.raises(LivefilterError, match="model file not found"):
        resolve_model("missing/model.onnx")


@pytest.mark.skipif(not TEACHERS.is_dir(), reason="teachers not present (../shared)")
@pytest.mark.parametrize("name,layout,multiple", [("animeganv2_hayao.onnx", "NCHW", 4),
                                                   ("animeganv3_shinkai.onnx", "NHWC", 8),
                                                   ("animeganv3_tiny_cute.onnx", "NHWC", 16)])
def test_teachers_load_with_their_layout_and_multiple(name, layout, multiple):
    engine = Engine(TEACHERS / name, resolution=64)
    assert (engine.layout, engine.multiple) == (layout, multiple)
    image = draw_frame(0, 90, 70)
    out = engine(image)
    assert out.shape == image.shape
    assert out.std() > 5  # a real picture came back, not a flat fill


@pytest.mark.parametrize("name", ["tiny", "tiny_nhwc"])
def test_conversions_are_bit_exact_with_the_plain_formulas(models, name):
    """The engine converts to and from the model's range in place, channel by channel: the
    result must equal, bit for bit, the plain ``x / 127.5 - 1`` and ``(y + 1) * 127.5`` maths."""
    engine = Engine(models[name], resolution=None)  # 64x48 needs no resize and no padding
    picture = draw_frame(4, 64, 48)
    rgb = picture[:, :, ::-1].astype(np.float32) * (1 / 127.5) - 1.0
    y = engine._run(rgb).astype(np.float32)
    expected = np.clip((y + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)[:, :, ::-1]
    result = engine(picture)
    assert result.flags.c_contiguous
    np.testing.assert_array_equal(result, expected)


def test_student_runs_in_the_grid_phase_it_was_trained_and_scored_in(plain_students):
    """A size that needs padding gives the same picture as the training/evaluation runner,
    which pads at the bottom and right: the students' strokes depend on the 4x4 grid's phase.
    (A plain student: the HD path resizes to the grid instead of padding.)"""
    require_module("onnxruntime")
    from livefilter.train.teacher import OnnxGenerator

    student = plain_students["int8"]
    picture = draw_frame(5, 83, 61)  # 83x61: padded to 88x64
    out = Engine(student, resolution=None, threads=1)(picture)
    reference = OnnxGenerator(student, threads=1)(np.ascontiguousarray(picture[:, :, ::-1]))[:, :, ::-1]
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1


def test_model_is_fed_the_picture_at_its_own_aspect_ratio(models):
    """What the model sees, not just what comes back: squashing 300x90 into a square and
    stretching the result back would look fine for an identity model, not for a style."""
    engine = Engine(models["identity_nchw"], resolution=64)
    seen = []
    infer = engine._infer

    def spy(x, *args):
        seen.append(x.shape)
        return infer(x, *args)

    engine._infer = spy
    engine(np.zeros((90, 300, 3), np.uint8))
    # NCHW, short side 64, 300/90 kept (213 wide), padded up to the model's multiple only.
    assert seen and seen[-1][2] == 64 and 213 <= seen[-1][3] < 213 + engine.multiple


@pytest.mark.parametrize("size, target", [((1280, 720), (568, 320)), ((1920, 1080), (688, 384)),
                                          ((1280, 720), (400, 224)), ((640, 480), (320, 240))])
def test_shrink_paints_what_the_area_filter_paints(size, target):
    """The fast shrink must feed the model the picture it was trained on (INTER_AREA's)."""
    import cv2

    from livefilter.engine import shrink

    picture = cv2.resize(draw_frame(0, 320, 180), size, interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(1).integers(-20, 21, picture.shape)
    picture = np.clip(picture.astype(int) + noise, 0, 255).astype(np.uint8)
    exact = cv2.resize(picture, target, interpolation=cv2.INTER_AREA)
    fast = shrink(picture, target)
    assert fast.shape == exact.shape
    if size[0] % target[0] == 0 and size[1] % target[1] == 0:
        assert np.array_equal(fast, exact)  # whole factors take the area filter itself
    else:
        assert cv2.PSNR(fast, exact) > 40
