"""The HD path: the runtime's 8-bit full-resolution step computes what training optimised, an HD
file runs at every quality level through one engine, and the HD cache, trainer and output-size
evaluation run end to end on a tiny synthetic set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from livefilter import upsample
from livefilter.engine import Engine

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from livefilter.train import data as D  # noqa: E402
from livefilter.train import hdcache as H  # noqa: E402
from livefilter.train.hdmodel import (ColourConfig, ColourHead, GainHead, HDStudent, export_hd_onnx,  # noqa: E402
                                      guided_up, load_hd_onnx)
from livefilter.train.hdtrain import HDPool, low_side, main as hdtrain_main, overlap_l1  # noqa: E402
from livefilter.train.model import Student, StudentConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = StudentConfig(c1=8, c2=16, n_enc=1, n_mid=1, n_dec=1)


def _tensor(bgr: np.ndarray) -> "torch.Tensor":
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)[None].float() / 127.5 - 1


def _picture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = cv2.resize(rng.integers(0, 255, (5, 6, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        p1 = tuple(int(v) for v in rng.integers(0, min(h, w), 2))
        p2 = tuple(int(v) for v in rng.integers(0, min(h, w), 2))
        cv2.line(img, p1, p2, (12, 12, 12), 2)
    return img


def _hd_model(seed: int = 0, gains: bool = True) -> HDStudent:
    torch.manual_seed(seed)
    model = HDStudent(Student(TINY), GainHead())
    with torch.no_grad():
        for p in model.student.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
        if gains:  # trained-like gains: a in about [0.3, 1.5], k about [0, 1]
            model.head.out.weight.normal_(0, 0.02)
            model.head.out.bias.copy_(torch.tensor([0.9, 0.5]))
    return model.eval()


def test_runtime_step_matches_training_formula() -> None:
    rng = np.random.default_rng(0)
    frame = _picture(rng, 90, 150)
    small = cv2.resize(frame, (56, 32), interpolation=cv2.INTER_AREA)
    styled = cv2.GaussianBlur(small, (3, 3), 0)[..., ::-1].copy()
    gains = rng.uniform(0.0, 2.0, (2, 8, 14)).astype(np.float32)
    gains = np.round(gains * 64) / 64  # what the runtime can represent
    got = upsample.guided(frame, small, styled, gains).astype(np.float64)
    with torch.no_grad():
        want = guided_up(_tensor(small), _tensor(styled), torch.from_numpy(gains)[None], _tensor(frame))
    want = ((want[0].permute(1, 2, 0).numpy()[..., ::-1] + 1) * 127.5)
    diff = np.abs(got - want)
    assert diff.mean() < 0.7 and np.percentile(diff, 99) <= 3.0  # 8-bit rounding only


def test_zero_gains_are_plain_upsampling() -> None:
    rng = np.random.default_rng(1)
    frame = _picture(rng, 72, 128)
    small = cv2.resize(frame, (48, 24), interpolation=cv2.INTER_AREA)
    styled = 255 - small
    out = upsample.guided(frame, small, styled, np.zeros((2, 6, 12), np.float32))
    assert np.array_equal(out, cv2.resize(styled, (128, 72), interpolation=cv2.INTER_LINEAR))


@pytest.fixture(scope="module")
def hd_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hd") / "tiny_hd.onnx"
    export_hd_onnx(_hd_model(), path)
    return path


@pytest.mark.parametrize("size", [(720, 1280), (197, 333), (41, 23)])
def test_engine_runs_an_hd_file_at_the_frame_size(hd_file: Path, size: tuple[int, int]) -> None:
    engine = Engine(hd_file, resolution=64)
    assert engine.hd and engine.level == "hd@64"
    frame = _picture(np.random.default_rng(2), *size)
    out = engine(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    plain = engine.at(guided=False)
    assert plain.session is engine.session and plain.level == "plain@64"
    flat = plain(frame)
    assert flat.shape == frame.shape
    if min(size) >= 64:  # the guide adds the frame's own detail: crisper than plain upsampling
        sharp = lambda z: cv2.Laplacian(cv2.cvtColor(z, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()  # noqa: E731
        assert sharp(out) > 1.2 * sharp(flat)


def test_engine_hd_output_is_the_torch_model(hd_file: Path) -> None:
    """Export (channel reorders, two outputs) and runtime (sizes, colour order) change nothing."""
    model = _hd_model()
    engine = Engine(hd_file, resolution=64)
    frame = _picture(np.random.default_rng(3), 180, 320)
    iw, ih = engine.hd_size(320, 180)
    assert (iw, ih) == (112, 64)  # 113.8 rounded to the multiple of 8
    small = cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        want = model(_tensor(small), _tensor(frame))[0].permute(1, 2, 0).numpy()[..., ::-1]
    want = (want + 1) * 127.5
    diff = np.abs(engine(frame).astype(np.float64) - want)
    assert diff.mean() < 0.8 and np.percentile(diff, 99) <= 4.0


def test_level_changes_keep_a_plain_student_working(models: dict[str, Path]) -> None:
    engine = Engine(models["tiny"], resolution=32)
    assert not engine.hd and engine.level == "plain@32"
    lower = engine.at(resolution=16)
    frame = _picture(np.random.default_rng(4), 60, 90)
    assert lower(frame).shape == frame.shape and lower.resolution == 16 and engine.resolution == 32


def test_overlap_loss_is_zero_for_a_moved_copy() -> None:
    img = torch.rand(1, 3, 40, 40)
    dy, dx = 3, -5
    a = img[:, :, 5:35, 5:35]
    b = img[:, :, 5 + dy:35 + dy, 5 + dx:35 + dx]
    assert float(overlap_l1(torch.cat([a, b]), [(dy, dx)])) == 0.0
    assert float(overlap_l1(torch.cat([a, a]), [(dy, dx)])) > 0.01


def _hd_cache(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Photos, a teacher generator and the filled HD cache (tiny teacher: a colour mix)."""
    from conftest import build_generator

    rng = np.random.default_rng(5)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        cv2.imwrite(str(photos / f"p{i}.png"), _picture(rng, 300, 400))
    teacher = build_generator(tmp_path / "teacher.onnx", mix=np.array([[0.8, 0.1, 0], [0, 0.9, 0], [0.1, 0, 0.7]]),
                              bias=np.array([0.05, 0, -0.05]), multiple_meta=4)
    rc = H.main(["--teacher", str(teacher), "--photos", str(photos), "--cache", str(tmp_path / "cache"), "--threads", "1"])
    assert rc == 0
    return photos, teacher, tmp_path / "cache"


def test_crops_land_on_the_student_grid_at_each_resolution() -> None:
    assert low_side(225, 256) == 80 and low_side(270, 256) == 96
    assert low_side(270, 320) == 120 and low_side(225, 320) is None  # 100 px: not a multiple of 8
    assert low_side(180, 320) == 80 and low_side(100, 256) is None


def test_hd_cache_train_export_and_evaluate(tmp_path: Path) -> None:
    photos, teacher, cache = _hd_cache(tmp_path)
    cdir = H.hd_cache_dir(cache, teacher)
    pairs = H.cached_pairs(cdir)
    train, held = D.split_photos([photos])
    assert len(pairs) == len(held) + 2 * len(train) == 10 + len(train)  # training photos also jittered
    x, t = D.read_rgb(pairs[0][1]), D.read_rgb(pairs[0][2])
    assert min(x.shape[:2]) == 720 and x.shape[0] % 45 == 0 and x.shape[1] % 45 == 0
    assert t.shape[:2] == (x.shape[0] * 2 // 3, x.shape[1] * 2 // 3)
    init = tmp_path / "plain.onnx"
    from livefilter.train.model import export_onnx

    export_onnx(_hd_model().student, init)
    out = tmp_path / "tiny_hd.onnx"
    argv = ["--teacher", str(teacher), "--photos", str(photos), "--cache", str(cache), "--init", str(init),
            "--out", str(out), "--work", str(tmp_path / "work"), "--steps", "4", "--minutes", "0",
            "--batch", "2", "--crop", "90", "--min-pairs", "1", "--threads", "1", "--ckpt-every", "2"]
    assert hdtrain_main(argv) == 0
    resumed = [*argv]
    resumed[resumed.index("--steps") + 1] = "6"
    assert hdtrain_main(resumed) == 0  # resumes from step 4
    log = (tmp_path / "work" / "train.log").read_text()
    assert "resumed" in log and "at step 4" in log
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["steps"] == 6
    engine = Engine(out, resolution=64)
    assert engine.hd
    report = tmp_path / "eval.json"
    sheet = tmp_path / "sheet.png"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "eval_fidelity.py"), "--output-size",
                          "--student", str(out), "--teacher", str(teacher), "--photos", str(photos), "--limit", "2",
                          "--cache", str(cache), "--json", str(report), "--sheet", str(sheet), "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(report.read_text())
    assert len(result["pictures"]) == 2
    assert set(result["mean"]) == {"psnr", "ssim", "line_corr", "sharpness", "palette_de"}
    assert 5 < result["mean"]["psnr"] < 99 and result["mean"]["sharpness"] > 0
    assert cv2.imread(str(sheet)).shape[0] == 2 * 364  # two rows of full-resolution 360 px crops


def test_hd_file_loads_back_with_its_student(hd_file: Path) -> None:
    from livefilter.train.hdmodel import hd_from_student_onnx, load_hd_onnx

    model = _hd_model()
    back = load_hd_onnx(hd_file)
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.allclose(a, b), k
    fresh = hd_from_student_onnx(hd_file)  # the recipe's start: same student, new head
    assert all(torch.equal(a, b) for a, b in zip(model.student.state_dict().values(), fresh.student.state_dict().values()))
    assert float(fresh.head.out.weight.detach().abs().sum()) == 0.0


def test_quality_ladder_keeps_the_guide_down_to_192_then_drops_it(hd_file: Path) -> None:
    from livefilter.quality import build_ladder

    hd = build_ladder(hd_file, resolution=256)
    assert [(lv.name, dict(lv.engine_options).get("guided", True)) for lv in hd] == [
        ("hd", True), ("r192", True), ("r160", False), ("ema", False)]


def test_a_file_trained_at_another_size_runs_there_unless_told_otherwise(tmp_path: Path) -> None:
    from argparse import Namespace

    from livefilter.cli import load_engine
    from livefilter.engine import model_resolution
    from livefilter.quality import build_ladder

    path = tmp_path / "hd320.onnx"
    export_hd_onnx(_hd_model(), path, {"livefilter.resolution": "320"})
    assert model_resolution(path) == 320
    args = Namespace(model=str(path), style=None, resolution=None, threads=1, provider="cpu")
    assert load_engine(args).resolution == 320
    assert load_engine(Namespace(**{**vars(args), "resolution": 200})).resolution == 200
    ladder = build_ladder(path)
    assert [(lv.name, lv.resolution) for lv in ladder] == [("hd", 320), ("r256", 256), ("r192", 192),
                                                           ("r160", 160), ("ema", 128)]
    plain = tmp_path / "plain.onnx"
    export_hd_onnx(_hd_model(), plain)  # no recorded size: the default
    assert model_resolution(plain) == 256


def _colour_model() -> HDStudent:
    model = _hd_model()
    model.colour = ColourHead(ColourConfig(8))
    return model.eval()


def test_a_fresh_colour_head_changes_nothing() -> None:
    """It grows on a trained file as the identity map, so training starts from that file's look."""
    model = _colour_model()
    x = _tensor(_picture(np.random.default_rng(6), 64, 112))
    with torch.no_grad():
        want, _ = HDStudent(model.student, model.head).low(x)
        got, _ = model.low(x)
    assert torch.equal(got, want)


def test_a_colour_head_file_runs_as_the_torch_model_and_loads_back(tmp_path: Path) -> None:
    model = _colour_model()
    with torch.no_grad():
        for p in model.colour.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    path = tmp_path / "colour.onnx"
    export_hd_onnx(model, path)
    back = load_hd_onnx(path)
    assert back.colour is not None and back.colour.cfg == model.colour.cfg
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.allclose(a, b), k
    frame = _picture(np.random.default_rng(7), 180, 320)
    engine = Engine(path, resolution=64)
    small = cv2.resize(frame, engine.hd_size(320, 180), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        want = model(_tensor(small), _tensor(frame))[0].permute(1, 2, 0).numpy()[..., ::-1]
        plain = HDStudent(model.student, model.head)(_tensor(small), _tensor(frame))[0].permute(1, 2, 0).numpy()[..., ::-1]
    want, plain = (want + 1) * 127.5, (plain + 1) * 127.5
    diff = np.abs(engine(frame).astype(np.float64) - want)
    assert diff.mean() < 0.8 and np.percentile(diff, 99) <= 4.0
    assert np.abs(plain - want).mean() > 4 * diff.mean()  # the head did change the colours


def test_training_crops_see_their_whole_frame(tmp_path: Path) -> None:
    """The colour head reads the frame a crop came from, as the exported file reads the whole
    input: the same thumbnail as 8x8 block means of the student's input."""
    photos, teacher, cache = _hd_cache(tmp_path)
    pool = HDPool(H.hd_cache_dir(cache, teacher), set(), None, resolution=320)
    pool.refresh()
    key = next(iter(pool.items))
    x = pool.items[key][0]
    thumb = pool.thumbs[key]
    assert thumb.shape[0] == 40 and abs(thumb.shape[1] / 40 - x.shape[1] / x.shape[0]) < 0.05
    *_, thumbs = pool.sample(__import__("random").Random(0), 3, 270, 0.0, 16, 120)
    assert len(thumbs) == 6 and all(a is b for a, b in zip(thumbs[::2], thumbs[1::2]))  # twins share one


def test_hdtrain_grows_a_colour_head_on_a_trained_file(tmp_path: Path, hd_file: Path) -> None:
    photos, teacher, cache = _hd_cache(tmp_path)
    out = tmp_path / "colour.onnx"
    argv = ["--teacher", str(teacher), "--photos", str(photos), "--cache", str(cache), "--init", str(hd_file),
            "--keep-heads", "--colour", "8", "--freeze-student", "--out", str(out), "--work", str(tmp_path / "work"),
            "--steps", "3", "--minutes", "0", "--batch", "2", "--crop", "90", "--min-pairs", "1", "--threads", "1",
            "--resolution", "64"]
    assert hdtrain_main(argv) == 0
    trained = load_hd_onnx(out)
    start = _hd_model()
    assert trained.colour is not None and trained.colour.cfg.width == 8
    assert all(torch.equal(a, b) for a, b in zip(start.student.state_dict().values(), trained.student.state_dict().values()))
    assert torch.allclose(trained.head.out.bias, start.head.out.bias, atol=0.05)  # kept, not a fresh 0.05 head
    assert Engine(out, resolution=64).hd


def test_int8_keeps_the_colour_head_float_and_the_look(tmp_path: Path) -> None:
    """Quantising the colour step would wrap the full-size picture in quantise/dequantise nodes
    for no gain; the int8 file keeps it float and paints what the float file paints."""
    from livefilter.train.quantize import quantize

    model = _colour_model()
    with torch.no_grad():
        for p in model.colour.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    fp32, int8 = tmp_path / "c.onnx", tmp_path / "c_int8.onnx"
    export_hd_onnx(model, fp32)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f"p{i}.png"), _picture(np.random.default_rng(10 + i), 180, 260))
    quantize(fp32, int8, sorted(photos.iterdir()), "percentile", short=64)
    nodes = onnx.load(str(int8)).graph.node
    quantised = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
    colour = [n for n in nodes if n.name.startswith("/colour/")]
    assert any(n.op_type == "Conv" for n in colour)
    assert all(i not in quantised for n in colour for i in n.input)
    assert any(n.op_type == "DequantizeLinear" for n in nodes)  # the rest is int8
    frame = _picture(np.random.default_rng(8), 180, 320)
    a, b = Engine(fp32, resolution=64)(frame), Engine(int8, resolution=64)(frame)
    assert np.abs(a.astype(np.float64) - b).mean() < 6.0
