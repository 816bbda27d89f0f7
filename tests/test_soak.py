"""Long runs: scripts/soak.py in its short mode (a few seconds), and its verdict logic.

The 30-minute run is done by hand (`python scripts/soak.py --minutes 30 ...`); here the
script must run end to end on the real live path, sample RSS and latency every interval,
and keep memory within the bound it enforces.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

from faultkit import REPO, cli_env

SCRIPT = REPO / "scripts" / "soak.py"


def load_script():
    spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_soak_runs_the_live_path_and_keeps_memory_flat(models, tmp_path):
    report = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "5", "--interval", "1",
                             "--model", str(models["tiny"]), "--resolution", "64", "--json", str(report)],
                            capture_output=True, text=True, timeout=120, env=cli_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "soak: OK" in result.stderr
    summary = json.loads(report.read_text())
    samples = summary["samples"]
    assert len(samples) >= 4  # one per interval
    assert all(s["rss_mb"] > 0 for s in samples)
    assert summary["frames_shown"] > 0
    assert any(s["latency_p50_ms"] is not None for s in samples)
    assert summary["rss_growth_mb"] < 20
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert not list(tmp_path.glob("*.mp4"))  # the generated camera clip lives in a temp dir


def test_verdict_fails_on_growth_over_the_limit():
    soak = load_script()
    stats = SimpleNamespace(elapsed=3.0, frames_written=90, frames_dropped=0)
    samples = [{"t": float(i), "rss_mb": rss, "latency_p50_ms": 30.0} for i, rss in
               enumerate([200.0, 205.0, 230.5])]
    leaky = soak.summarise(samples, stats, 20.0, "m")
    assert not leaky["ok"] and leaky["rss_growth_mb"] == 30.5
    flat = soak.summarise(samples[:2], stats, 20.0, "m")
    assert flat["ok"] and flat["rss_growth_mb"] == 5.0


def test_back_to_top_counts_from_each_quiet_spell():
    soak = load_script()
    trace = [(0.0, "r192"), (5.0, "hd"), (12.0, "r256"), (40.0, "r192"), (75.0, "hd"), (130.0, "r256")]
    spells = [(30.5, 60.5), (90.5, 120.5), (150.5, float("inf"))]
    assert soak.back_to_top(trace, spells, "hd") == [None, 0.0, None]
    assert soak.back_to_top(trace + [(160.0, "hd")], spells, "hd") == [None, 0.0, 9.5]
    switcher = soak.LoadSwitcher(2, 30.0)
    switcher.switches = [(100.0, True), (130.5, False), (160.0, True), (190.0, False)]
    assert switcher.quiet_spells(since=100.0) == [(30.5, 60.0), (90.0, float("inf"))]


def test_rss_is_read():
    assert load_script().rss_mb() > 1


def test_short_soak_with_auto_quality_and_a_load_that_comes_and_goes(models, tmp_path):
    """The load is on for 3 s, off for 3 s, on again: levels and load are sampled, the verdict
    includes the 2 s spacing of level changes."""
    report = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "8", "--interval", "1",
                             "--model", str(models["tiny"]), "--resolution", "64", "--load", "1",
                             "--load-period", "3", "--warmup", "2", "--json", str(report)],
                            capture_output=True, text=True, timeout=180, env=cli_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())
    assert summary["quality"] == "auto"
    assert all("level" in s and "load" in s for s in summary["samples"])
    assert any(s["load"] for s in summary["samples"]) and not all(s["load"] for s in summary["samples"])
    assert len(summary["loads"]) >= 2  # switched on twice: two measured stand-in periods
    assert all(ld["per_process"] and ld["per_process"][0]["frames"] > 0 for ld in summary["loads"])
    assert summary["level_trace"][0][1] == "hd"
    assert summary["min_change_gap_s"] is None or summary["min_change_gap_s"] >= 2.0
    assert "level changes" in result.stderr
