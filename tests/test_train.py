"""Distillation pieces: the differentiable line map matches OpenCV's, the student exports to a
dynamic-size ONNX the runtime can read, and a tiny end-to-end distill run resumes and exports."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import require_module  # noqa: E402

torch = require_module("torch", "pip install torch==2.13.0, the CPU build; a looser pin pulls a CUDA build")
onnx = require_module("onnx")

from livefilter.train import fidelity  # noqa: E402
from livefilter.train.distill import PairPool, degrade, load_onnx_student, main as distill_main  # noqa: E402
from livefilter.train.losses import DistillLoss, LossWeights, black_hat, line_correlation, palette_de, rgb_to_lab  # noqa: E402,E501
from livefilter.train.model import Student, StudentConfig, export_onnx  # noqa: E402
from livefilter.train.teacher import OnnxGenerator  # noqa: E402

TINY = StudentConfig(c1=8, c2=16, n_enc=1, n_mid=1, n_dec=1)


def _picture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour field with a few dark strokes: something with line art in it."""
    img = cv2.resize(rng.integers(0, 255, (4, 5, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        p1 = tuple(int(v) for v in rng.integers(0, min(h, w), 2))
        p2 = tuple(int(v) for v in rng.integers(0, min(h, w), 2))
        cv2.line(img, p1, p2, (10, 10, 10), 1)
    return img


def _randomise(model: Student) -> Student:
    """Trained-like weights: no two tensors alike (the exporter merges equal ones) and no
    zero-initialised branch that would hide a wrong channel order."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


def _photo_folder(root: Path, count: int, h: int, w: int, seed: int) -> Path:
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(photos / f"p{i}.png"), _picture(rng, h, w))
    return photos


def test_black_hat_matches_opencv() -> None:
    rng = np.random.default_rng(1)
    img = _picture(rng, 40, 56)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    want = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    got = black_hat(torch.from_numpy(grey.astype(np.float32))[None, None])[0, 0].numpy()
    assert np.abs(got - want.astype(np.float32)).max() < 1e-3


def test_fidelity_identity_and_difference() -> None:
    rng = np.random.default_rng(2)
    a = _picture(rng, 48, 64)
    same = fidelity.score(a, a)
    assert same.psnr == 99.0 and same.ssim == pytest.approx(1.0) and same.line_corr == pytest.approx(1.0)
    b = cv2.GaussianBlur(a, (7, 7), 3)
    diff = fidelity.score(b, a)
    assert diff.psnr < 40 and diff.ssim < 1 and diff.line_ratio < 1  # blur weakens the strokes


def test_loss_is_zero_on_match_and_has_gradient() -> None:
    crit = DistillLoss()
    t = torch.rand(2, 3, 32, 32) * 2 - 1
    total, parts = crit(t.clone(), t)
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    s = torch.zeros_like(t, requires_grad=True)
    total, parts = crit(s, t)
    total.backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0
    assert set(parts) >= {"l1", "grad", "line", "ssim"}


def test_line_correlation_loss_scores_like_pearson() -> None:
    """1 for the same strokes, -1 for inverted ones, and numpy's Pearson on random maps."""
    a = torch.rand(3, 1, 16, 16)
    b = torch.rand(3, 1, 16, 16)
    assert torch.allclose(line_correlation(a, a), torch.ones(3), atol=1e-5)
    assert torch.allclose(line_correlation(a, -a), -torch.ones(3), atol=1e-5)
    want = [np.corrcoef(a[i].flatten().numpy(), b[i].flatten().numpy())[0, 1] for i in range(3)]
    assert np.allclose(line_correlation(a, b).numpy(), want, atol=1e-5)
    crit = DistillLoss(LossWeights(line_corr=1.0))
    t = torch.rand(2, 3, 32, 32) * 2 - 1
    assert crit(t.clone(), t)[1]["line_corr"] == pytest.approx(0.0, abs=1e-5)
    s = torch.zeros_like(t, requires_grad=True)
    crit(s + 0.1 * torch.rand_like(t), t)[0].backward()
    assert float(s.grad.abs().sum()) > 0


def test_palette_loss_scores_like_the_fidelity_check() -> None:
    """The differentiable Lab and dE match OpenCV's and the fidelity check's, and they train."""
    rng = np.random.default_rng(3)
    a = _picture(rng, 96, 128)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, (1, 1, 3)), 0, 255).astype(np.uint8)
    as_t = lambda z: torch.from_numpy(z.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]  # noqa: E731
    want_lab = cv2.cvtColor(a.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    got_lab = rgb_to_lab(as_t(a))[0].permute(1, 2, 0).numpy()
    assert np.abs(got_lab - want_lab).max() < 0.5  # OpenCV tabulates its curves
    assert float(palette_de(as_t(a), as_t(b))) == pytest.approx(fidelity.palette_de(a, b), abs=0.2)
    assert float(palette_de(as_t(a), as_t(a))) < 0.01
    s = torch.zeros(1, 3, 32, 32, requires_grad=True)
    DistillLoss(LossWeights(palette=1.0))(s, as_t(a)[..., :32, :32])[0].backward()
    assert float(s.grad.abs().sum()) > 0


@pytest.mark.parametrize("cfg", [TINY, replace(TINY, detail=8, detail_depth=2, refine=4)], ids=["plain", "detail+refine"])
def test_exported_student_loads_back_for_fine_tuning(tmp_path: Path, cfg: StudentConfig) -> None:
    """--init accepts a shipped .onnx: same architecture, same outputs (every space-to-depth reorder undone)."""
    torch.manual_seed(1)
    model = _randomise(Student(cfg).eval())
    path = tmp_path / "s.onnx"
    export_onnx(model, path)
    cfg, weights = load_onnx_student(path)
    assert cfg == model.cfg
    again = Student(cfg).eval()
    again.load_state_dict(weights)
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-6)


@pytest.mark.parametrize("cfg", [TINY, replace(TINY, detail=8, detail_depth=2, refine=4)], ids=["plain", "detail+refine"])
def test_student_export_dynamic_size(tmp_path: Path, cfg: StudentConfig) -> None:
    torch.manual_seed(2)
    model = _randomise(Student(cfg).eval())
    path = tmp_path / "s.onnx"
    export_onnx(model, path, {"livefilter.teacher": "x.onnx"})
    graph = onnx.load(str(path))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["livefilter.multiple"] == "8" and meta["livefilter.layout"] == "NCHW"
    # pixel-unshuffle goes out as SpaceToDepth, not the slow 6-D transpose
    ops = {n.op_type for n in graph.graph.node}
    assert "SpaceToDepth" in ops and "Transpose" not in ops
    gen = OnnxGenerator(path, threads=1)
    assert gen.layout == "NCHW" and gen.multiple == 8
    for h, w in ((64, 96), (40, 24)):
        x = torch.rand(1, 3, h, w) * 2 - 1
        with torch.no_grad():
            want = model(x)[0].permute(1, 2, 0).numpy()
        got = gen.run_float(x[0].permute(1, 2, 0).numpy())
        assert got.shape == (h, w, 3)
        assert np.abs(got - want).max() < 1e-4
    # any size through the padding wrapper comes back at the same size
    assert gen(np.zeros((37, 50, 3), np.uint8)).shape == (37, 50, 3)


def test_degrade_keeps_shape() -> None:
    import random

    img = _picture(np.random.default_rng(3), 32, 32)
    rng = random.Random(0)
    for _ in range(10):
        out = degrade(img, rng)
        assert out.shape == img.shape and out.dtype == np.uint8


def test_distill_end_to_end_resumes(tmp_path: Path) -> None:
    """A toy teacher (an untrained student) and synthetic photos: train, resume, export."""
    teacher = tmp_path / "teacher.onnx"
    torch.manual_seed(0)
    export_onnx(Student(TINY), teacher)
    photos = _photo_folder(tmp_path, 6, 60, 80, seed=4)
    out = tmp_path / "student.onnx"
    common = ["--teacher", str(teacher), "--photos", str(photos), "--out", str(out), "--work", str(tmp_path / "w"),
              "--batch", "2", "--crop", "32", "--threads", "1", "--min-pairs", "2", "--no-progress",
              "--c1", "8", "--c2", "16", "--n-enc", "1", "--n-mid", "1", "--n-dec", "1", "--eval-every", "2"]
    assert distill_main(common + ["--steps", "2"]) == 0
    assert out.is_file()
    assert distill_main(common + ["--steps", "4"]) == 0
    log = (tmp_path / "w" / "train.log").read_text()
    assert "resumed from" in log and "step 4" in log
    assert OnnxGenerator(out, threads=1)(np.zeros((48, 64, 3), np.uint8)).shape == (48, 64, 3)


def test_photo_share_draws_from_photos(tmp_path: Path) -> None:
    """--photo-share 1 trains on photos only; 0 draws every cached pair alike."""
    pool = PairPool(tmp_path, exclude=set())
    dark, light = np.full((40, 40, 3), 20, np.uint8), np.full((40, 40, 3), 230, np.uint8)
    pool.items = {f"p{i}_f-1_s256_j0": (dark, dark) for i in range(2)}
    pool.items |= {f"c{i}_f{i}_s256_j0": (light, light) for i in range(14)}
    rng = random.Random(0)
    _, only_photos = pool.sample(rng, 64, 32, photo_share=1.0)
    assert only_photos.max() == 20
    _, mixed = pool.sample(rng, 64, 32, photo_share=0.0)
    assert 0.7 < (mixed[:, 0, 0, 0] == 230).mean() < 0.99  # 14 of 16 pairs are clip frames


GROWTHS = {
    "detail": (["--detail", "8"], replace(TINY, detail=8)),
    "deeper": (["--n-mid", "2", "--n-dec", "3", "--detail", "8", "--detail-depth", "3"],
               replace(TINY, n_mid=2, n_dec=3, detail=8, detail_depth=3)),
}


@pytest.mark.parametrize("growth", GROWTHS.values(), ids=GROWTHS.keys())
def test_distill_grows_a_student(tmp_path: Path, growth: tuple[list[str], StudentConfig]) -> None:
    """--init FILE with a detail branch or more blocks adds them as no-ops: training starts from the same output."""
    grow_args, grown_cfg = growth
    torch.manual_seed(3)
    base = tmp_path / "base.onnx"
    export_onnx(_randomise(Student(TINY)), base)
    photos = _photo_folder(tmp_path, 4, 48, 64, seed=5)
    out = tmp_path / "grown.onnx"
    args = ["--teacher", str(base), "--photos", str(photos), "--out", str(out), "--work", str(tmp_path / "w"),
            "--batch", "2", "--crop", "32", "--threads", "1", "--min-pairs", "2", "--no-progress",
            "--init", str(base), *grow_args, "--steps", "1", "--lr", "1e-9", "--eval-every", "100"]
    assert distill_main(args) == 0
    cfg, _ = load_onnx_student(out)
    assert cfg == grown_cfg
    x = (np.random.default_rng(6).random((48, 64, 3)) * 255).astype(np.uint8)
    a, b = OnnxGenerator(base, threads=1)(x), OnnxGenerator(out, threads=1)(x)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_distill_bad_teacher_is_one_line_error(tmp_path: Path, capsys) -> None:
    rc = distill_main(["--teacher", str(tmp_path / "missing.onnx"), "--photos", str(tmp_path), "--out", str(tmp_path / "o.onnx")])
    assert rc == 2
    assert "teacher not found" in capsys.readouterr().err


def test_distill_missing_folder_is_one_line_error(tmp_path: Path, capsys) -> None:
    teacher = tmp_path / "t.onnx"
    export_onnx(Student(TINY), teacher)
    rc = distill_main(["--teacher", str(teacher), "--photos", str(tmp_path / "nope"), "--out", str(tmp_path / "o.onnx"),
                       "--work", str(tmp_path / "w")])
    assert rc == 2
    assert "no such folder" in capsys.readouterr().err


def test_grown_detail_layer_is_a_no_op_that_still_learns() -> None:
    """A zero residual layer in the patch MLP keeps the output and gets gradient (a zero ReLU layer would not)."""
    torch.manual_seed(4)
    shallow = _randomise(Student(replace(TINY, detail=8)))
    deep = Student(replace(TINY, detail=8, detail_depth=2))
    deep.load_state_dict(shallow.state_dict(), strict=False)
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    y = deep(x)
    assert torch.equal(y, shallow(x))
    y.square().mean().backward()
    assert deep.detail_mid[0].weight.grad.abs().sum() > 0


def test_aligned_crops_keep_the_pixel_grid_in_phase(tmp_path: Path) -> None:
    """--crop-step 8 --no-flip: every target crop starts on a multiple of 8 and is not mirrored."""
    h, w = 100, 120
    ys, xs = np.mgrid[0:h, 0:w]
    coords = np.stack([ys, xs, np.zeros_like(ys)], axis=2).astype(np.uint8)  # pixel (y, x) holds (y, x)
    pool = PairPool(tmp_path, exclude=set())
    pool.items = {"p0_f-1_s256_j0": (coords, coords)}
    _, aligned = pool.sample(random.Random(0), 64, 32, crop_step=8, flip=False)
    assert (aligned[:, 0, 0, 0] % 8 == 0).all() and (aligned[:, 0, 0, 1] % 8 == 0).all()
    assert (np.diff(aligned[:, 0, :, 1].astype(int), axis=1) == 1).all()  # left to right, never mirrored
    _, free = pool.sample(random.Random(0), 64, 32)
    assert (free[:, 0, 0, 1] % 8 != 0).any()  # the default still crops anywhere
    assert (np.diff(free[:, 0, :, 1].astype(int), axis=1) == -1).all(axis=1).any()  # and mirrors some


def test_distill_rejects_a_crop_step_that_does_not_divide_the_crop(tmp_path: Path, capsys) -> None:
    teacher = tmp_path / "t.onnx"
    teacher.write_bytes(b"x")
    code = distill_main(["--teacher", str(teacher), "--photos", str(tmp_path), "--out", str(tmp_path / "o.onnx"),
                         "--crop", "192", "--crop-step", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--crop-step" in err


def test_quantize_keeps_named_layers_in_float(tmp_path: Path) -> None:
    """`--keep-fp32 /stem /enc` leaves those convolutions float (no DequantizeLinear feeds their
    weights) while the rest is QDQ int8; histogram calibration needs one frame shape."""
    from livefilter.train.quantize import cover_crop, quantize

    assert cover_crop(np.zeros((300, 200, 3), np.uint8), 256, 448).shape == (256, 448, 3)
    torch.manual_seed(0)
    fp32, int8 = tmp_path / "s.onnx", tmp_path / "s.int8.onnx"
    export_onnx(_randomise(Student(TINY).eval()), fp32)
    photos = _photo_folder(tmp_path, 3, 180, 260, seed=3)
    quantize(fp32, int8, sorted(photos.iterdir()), "percentile", keep_fp32=("/stem", "/enc"))
    graph = onnx.load(str(int8)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    kept = [n for name, n in convs.items() if name.startswith(("/stem", "/enc"))]
    rest = [n for name, n in convs.items() if not name.startswith(("/stem", "/enc"))]
    assert kept and rest
    assert all(n.input[1] not in dequantized for n in kept)
    assert all(n.input[1] in dequantized for n in rest)
    session = OnnxGenerator(int8, threads=1)
    out = session(_picture(np.random.default_rng(4), 64, 96))
    assert out.shape == (64, 96, 3)


def test_quantize_refuses_a_keep_prefix_that_names_no_layer(tmp_path: Path) -> None:
    """An HD file's layers sit under /student: `/stem` there would keep nothing in float."""
    from livefilter.train.quantize import quantize

    fp32, int8 = tmp_path / "s.onnx", tmp_path / "s.int8.onnx"
    export_onnx(Student(TINY).eval(), fp32)
    photos = _photo_folder(tmp_path, 2, 180, 260, seed=5)
    with pytest.raises(ValueError, match="--keep-fp32 /student/stem names no node"):
        quantize(fp32, int8, sorted(photos.iterdir()), "percentile", keep_fp32=("/stem", "/student/stem"))
    assert not int8.exists()
