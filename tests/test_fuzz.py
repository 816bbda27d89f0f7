"""Fuzz: mutated copies of small clips (MP4, MKV, MOV, MPEG-TS) must give a playable output
or one clean error line.

Each case is damaged in a seeded, reproducible way (bit flips, zeroed or random blocks,
truncation, duplicated or deleted ranges, header damage; see faultkit.mutate). To keep ~24
cases fast, one driver subprocess runs them all through the real CLI entry point
(`livefilter.cli.main`), one after the other, reporting each result as a JSON line; the test
reads those lines with a per-case deadline, so a hang fails naming the case instead of
blocking the suite. Run one case by hand with the command printed in a failure message.
"""

from __future__ import annotations

import contextlib
import io
import json
import selectors
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from faultkit import cli_env, decodable, mutate

CASES = 24
# Seeds that once broke a conversion (found by a longer run of the same mutations), kept as
# regression cases: damaged audio packets the muxer refused; an audio stream with no codec.
# An MPEG-TS cut short, whose audio header lost its sample rate: the muxer refused the file.
REGRESSIONS = [(5109, ".mkv"), (5153, ".mkv"), (9104, ".mp4"), (9323, ".mkv"), (20228, ".ts")]
CONTAINERS = [".mp4", ".mkv", ".mov", ".ts"]
PER_CASE_SECONDS = 30.0  # generous: two shared cores, and the suite runs other things too


def drive(spec_path: str) -> None:
    """Driver (runs in the subprocess): convert every case, print one JSON line per case."""
    from livefilter.cli import main

    spec = json.loads(Path(spec_path).read_text())
    for case in spec["cases"]:
        print(json.dumps({"start": case["name"]}), flush=True)
        err = io.StringIO()
        started = time.monotonic()
        crash = None
        with contextlib.redirect_stderr(err):
            try:
                code = main(["video", case["input"], case["output"], "--model", spec["model"],
                             "--resolution", "32", "--temporal", "off"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - exactly what the fuzz is looking for
                import traceback

                code, crash = -1, traceback.format_exc()
        print(json.dumps({"done": case["name"], "code": code, "stderr": err.getvalue(), "crash": crash,
                          "seconds": round(time.monotonic() - started, 2)}), flush=True)


@pytest.fixture(scope="module")
def fuzz_cases(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("fuzz")
    seeds = {ext: make_clip(root / f"seed{ext}", frames=30, width=64, height=48, codec="libx264")
             for ext in CONTAINERS}
    cases = []
    plan = [(1000 + i, CONTAINERS[i % len(CONTAINERS)]) for i in range(CASES)] + REGRESSIONS
    for seed, ext in plan:
        data, kind = mutate(seeds[ext].read_bytes(), np.random.default_rng(seed))
        name = f"seed{seed}_{kind}{ext}"
        (root / name).write_bytes(data)
        cases.append({"name": name, "kind": kind, "input": str(root / name),
                      "output": str(root / f"out_{name}.mp4")})
    return root, cases


def _run_driver(root: Path, model: Path, cases: list[dict]) -> dict[str, dict]:
    spec = root / "spec.json"
    spec.write_text(json.dumps({"model": str(model), "cases": cases}))
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import test_fuzz; test_fuzz.drive({str(spec)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env(), cwd=root)
    results: dict[str, dict] = {}
    current, deadline = None, time.monotonic() + 60  # import time before the first case
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while len(results) < len(cases):
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                proc.kill()
                pytest.fail(f"fuzz case {current} did not finish within {PER_CASE_SECONDS:.0f} s (hang)")
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read()
                pytest.fail(f"fuzz driver died during {current} (exit {proc.wait()}): {err[-2000:]}")
            message = json.loads(line)
            if "start" in message:
                current, deadline = message["start"], time.monotonic() + PER_CASE_SECONDS
            else:
                results[message["done"]] = message
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        selector.close()
    return results


def test_mutated_clips_give_playable_output_or_one_clean_error(models, fuzz_cases):
    root, cases = fuzz_cases
    results = _run_driver(root, models["tiny"], cases)
    outcomes = {"converted": 0, "refused": 0}
    problems = []
    for case in cases:
        got = results[case["name"]]
        out = Path(case["output"])
        stderr = got["stderr"]
        how = (f"{case['name']}: exit {got['code']}, stderr {stderr!r}; reproduce: "
               f"livefilter video {case['input']} out.mp4 --model tiny.onnx --resolution 32 --temporal off")
        if got["crash"] or "Traceback" in stderr or "LIVEFILTER_DEBUG" in stderr:
            problems.append(f"{how}\n{got['crash'] or ''}")
        elif got["code"] == 0:
            frames = decodable(out)["frames"]
            if frames < 1:
                problems.append(f"{how}: exit 0 but output has {frames} playable frames")
            outcomes["converted"] += 1
        elif got["code"] == 2:
            lines = stderr.strip().splitlines()
            errors = [l for l in lines if l.startswith("livefilter: error:")]
            if len(errors) != 1 or lines[-1] != errors[0]:
                problems.append(f"{how}: expected exactly one final error line")
            if out.exists():
                problems.append(f"{how}: refused but left {out.name} behind")
            outcomes["refused"] += 1
        else:
            problems.append(f"{how}: unexpected exit code")
        partial = out.with_name(f".{out.name}.livefilter-partial")
        if partial.exists():
            problems.append(f"{how}: temporary file left behind")
    assert not problems, "\n\n".join(problems)
    # The mutations must exercise both paths, or the fuzz has gone blind.
    assert outcomes["converted"] > 0 and outcomes["refused"] > 0, outcomes
