"""`livefilter bench --quick` runs end to end and reports sane, complete JSON (no timing asserts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import require_module  # noqa: E402

onnx = require_module("onnx")


def _tiny_generator(path: Path) -> Path:
    """A 1x1 convolution + tanh generator, NCHW with dynamic height and width."""
    from onnx import TensorProto, helper, numpy_helper

    weight = (np.eye(3, dtype=np.float32) * 1.2).reshape(3, 3, 1, 1)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Tanh", ["c"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _args(parser_args: list[str]) -> argparse.Namespace:
    from livefilter.bench import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(parser_args)


def test_quick_bench_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livefilter.bench import run

    model = _tiny_generator(tmp_path / "tiny.onnx")
    plot = tmp_path / "bench.png"
    args = _args(["--model", str(model), "--teacher", str(model), "--quick", "--json",
                  "--plot", str(plot), "--temporal", "flow", "--strength", "0.8"])
    assert run(args) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["machine"]["cpus"] >= 1
    rows = result["model"]
    assert {r["role"] for r in rows} == {"student", "teacher"}
    for r in rows:
        assert r["ms_median"] > 0 and r["fps"] > 0 and r["runs"] >= 3
        assert r["resolution"] == result["settings"]["resolution"]
    teacher = next(r for r in rows if r["role"] == "teacher")
    assert teacher["ratio"] > 0

    live = result["live"]
    assert live["frames_read"] >= live["frames_written"] > 0
    assert 0.0 <= live["drop_rate"] <= 1.0
    lat = live["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"]
    assert live["size"] == "640x360" and live["temporal"] == "flow"
    assert len(live["trace"]) == live["frames_written"]

    conv = result["convert"]
    assert conv["frames"] > 0 and conv["x_realtime"] > 0

    flick = result["flicker"]
    modes = {r["mode"] for r in flick["rows"]}
    assert modes == {"off", "ema", "motion", "flow"}
    off = next(r for r in flick["rows"] if r["mode"] == "off")
    assert off["psnr"] == 100.0 and off["reduction"] == 0.0
    for r in flick["rows"]:
        assert r["e_warp"] >= 0 and r["e_warp_per_frame"] > 0 and r["e_warp_input"] > 0
        assert 0 < r["worst_psnr"] <= r["psnr"] <= 100.0
        assert r["ms_per_frame"] >= 0 and r["cpu_ms_per_frame"] >= 0

    assert plot.is_file() and plot.stat().st_size > 1000


def test_table_output_and_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livefilter.bench import run

    model = _tiny_generator(tmp_path / "tiny.onnx")
    out = tmp_path / "bench.json"
    args = _args(["--model", str(model), "--quick", "--skip", "live", "--skip", "convert",
                  "--skip", "flicker", "--json", str(out)])
    assert run(args) == 0
    text = capsys.readouterr().out
    assert "model" in text and "ms p50" in text
    saved = json.loads(out.read_text())
    assert "model" in saved and "live" not in saved and "flicker" not in saved


def test_missing_clip_is_a_user_error(tmp_path: Path) -> None:
    from livefilter.bench import run
    from livefilter.errors import LivefilterError

    model = _tiny_generator(tmp_path / "tiny.onnx")
    args = _args(["--model", str(model), "--quick", "--clip", str(tmp_path / "nope.mp4")])
    with pytest.raises(LivefilterError):
        run(args)


@pytest.mark.parametrize("extra", [["--plot", "out.txt"], ["--plot", "/nonexistent-dir/p.png"],
                                   ["--strength", "1.5"], ["--json", "/nonexistent-dir/b.json"],
                                   ["--queue-size", "0"], ["--load", "-1"], ["--latency-budget", "0"]])
def test_bad_options_fail_before_measuring(tmp_path: Path, extra: list[str]) -> None:
    from livefilter.bench import run
    from livefilter.errors import LivefilterError

    model = _tiny_generator(tmp_path / "tiny.onnx")
    args = _args(["--model", str(model), "--quick", *extra])
    with pytest.raises(LivefilterError):
        run(args)


def test_cli_bench_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = require_module("livefilter.cli")
    model = _tiny_generator(tmp_path / "tiny.onnx")
    code = cli.main(["bench", "--model", str(model), "--quick", "--skip", "live", "--skip", "convert",
                     "--skip", "flicker", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["model"][0]["model"] == "tiny.onnx"


def test_live_with_call_load_records_levels_and_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--load 1: the stand-in ran (frames, CPU) while the live part measured; the level trace is there."""
    from livefilter.bench import run

    model = _tiny_generator(tmp_path / "tiny.onnx")
    args = _args(["--model", str(model), "--quick", "--skip", "model", "--skip", "convert", "--skip", "flicker",
                  "--load", "1", "--latency-budget", "90", "--json", "--plot", str(tmp_path / "p.png")])
    assert run(args) == 0
    live = json.loads(capsys.readouterr().out)["live"]
    load = live["load"]
    assert load["processes"] == 1 and load["size"] == "1280x720" and load["fps"] == 30
    (proc,) = load["per_process"]
    assert proc["frames"] > 0 and proc["decoded"] > 0 and proc["cpu_seconds"] > 0
    assert 0 < proc["cpu_percent"] == load["cpu_percent_total"]
    assert live["quality"] == "auto" and live["latency_budget_ms"] == 90
    # A model without an int8 sibling: the ladder is internal sizes and cheaper temporal stages.
    assert [lv.split(":")[0] for lv in live["levels"]][0] == "hd"
    # The first frame was timed from the top down; the run starts where that probe stopped.
    probe = live["start_probe"]
    assert probe and probe[0]["level"] == "hd" and probe[0]["model_ms"] > 0
    names = [lv.split(":")[0] for lv in live["levels"]]
    start = live["level_trace"][0]
    assert start[0] == 0.0 and names.index(start[1]) >= names.index(probe[-1]["level"])
    assert live["level_changes"] == len(live["level_trace"]) - 1 >= live["level_changes_after_5s"]
    assert sum(live["level_seconds"].values()) == pytest.approx(live["seconds"], abs=0.5)


def test_live_with_a_pinned_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livefilter.bench import run
    from livefilter.errors import LivefilterError

    model = _tiny_generator(tmp_path / "tiny.onnx")
    args = _args(["--model", str(model), "--quick", "--skip", "model", "--skip", "convert", "--skip", "flicker",
                  "--quality", "r160", "--json"])
    assert run(args) == 0
    live = json.loads(capsys.readouterr().out)["live"]
    assert live["quality"] == "r160" and live["level_trace"] == [[0.0, "r160"]] and live["load"] is None
    args = _args(["--model", str(model), "--quick", "--skip", "model", "--skip", "convert", "--skip", "flicker",
                  "--quality", "ultra"])
    with pytest.raises(LivefilterError, match="unknown quality level"):
        run(args)


def test_bench_styles_times_files_in_turn_and_pairs_int8_siblings(tmp_path: Path) -> None:
    """scripts/bench_styles.py: every file in every round, the int8 verdict for a sibling pair,
    and a one-line error for a bad size or a missing file."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    plain, int8 = _tiny_generator(tmp_path / "toy.onnx"), _tiny_generator(tmp_path / "toy_int8.onnx")
    report = tmp_path / "styles.json"
    script = [sys.executable, str(repo / "scripts" / "bench_styles.py")]
    run = subprocess.run([*script, str(plain), str(int8), "--rounds", "3", "--calls", "1", "--size", "96x64",
                          "--json", str(report)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    files = json.loads(report.read_text())["files"]
    assert set(files) == {"toy", "toy_int8"} and all(f["ms_median"] > 0 for f in files.values())
    assert 0 <= files["toy_int8"]["int8_faster_rounds"] <= 3 and "int8_faster_rounds" not in files["toy"]
    for bad, message in ((["--size", "big"], "--size must be WIDTHxHEIGHT"), ([str(tmp_path / "nope.onnx")], "no such model")):
        run = subprocess.run([*script, *bad], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
