"""Adaptive quality: the ladder, the controller under simulated load, and the live stage.

The controller is pure logic with the clock passed in: here a small event simulation stands in
for the live pipeline (frames captured at the source's rate, a queue that keeps only the newest
one, a server whose frame time is the rung's cost times the load), so "steps down, recovers,
never oscillates" is checked over minutes of simulated time without threads or wall-clock races.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from livefilter.errors import LivefilterError
from livefilter.frames import Frame
from livefilter.quality import (Controller, EnginePool, FreeCoresMeter, Level, LiveStages, build_ladder, busy_and_total,
                                free_cores_between, int8_sibling, key_styles, pick_level, rung_fits)

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(costs, load, seconds, fps=30.0, noise=0.05, seed=0, **kwargs):
    """Run a controller against a simulated live pipeline; returns (controller, levels over time).

    ``costs[i]`` is rung i's frame time on an idle machine, ``load(t)`` the factor the other
    programs multiply it by. The queue holds one frame: the server always takes the newest
    frame captured by the time it is free, the older ones are dropped.
    """
    clock = SimClock()
    ctl = Controller(len(costs), fps, clock=clock, **kwargs)
    rng = np.random.default_rng(seed)
    free, last = 0.0, -1
    timeline = []
    while free < seconds:
        idx = max(last + 1, math.floor(free * fps + 1e-9))
        start = max(free, idx / fps)
        proc = costs[ctl.level] * load(start) * (1 + noise * rng.standard_normal())
        finish = start + max(0.001, proc)
        clock.t = finish
        ctl.observe(finish - start, finish - idx / fps, idx - last - 1)
        timeline.append((finish, ctl.level))
        free, last = finish, idx
    return ctl, timeline


def spacing_ok(ctl, minimum=2.0):
    times = [c.t for c in ctl.changes]
    return all(b - a >= minimum for a, b in zip(times, times[1:]))


def test_idle_machine_keeps_the_top_level():
    ctl, _ = simulate([0.020, 0.014, 0.010], lambda t: 1.0, 120)
    assert ctl.changes == [] and ctl.level == 0


def test_steps_down_one_rung_at_a_time_and_stays_where_it_fits():
    # Rungs 0 and 1 cannot keep up with 30 fps; rung 2 can.
    ctl, timeline = simulate([0.060, 0.040, 0.025, 0.012], lambda t: 1.0, 60)
    assert [(c.old, c.new) for c in ctl.changes] == [(0, 1), (1, 2)]
    assert spacing_ok(ctl)
    assert ctl.level == 2
    assert all("ms" in c.reason or "dropped" in c.reason for c in ctl.changes)


def test_recovers_when_the_load_goes_away():
    load = lambda t: 1.8 if 10 <= t < 40 else 1.0  # noqa: E731
    ctl, timeline = simulate([0.022, 0.014, 0.010, 0.006], load, 90)
    levels_at = lambda t: [lv for ft, lv in timeline if ft <= t][-1]  # noqa: E731
    assert levels_at(9.5) == 0  # idle: top
    assert levels_at(39) >= 1  # under load: a cheaper rung
    assert ctl.level == 0  # load gone: back on top
    assert any(c.new < c.old and c.t > 40 for c in ctl.changes)
    assert spacing_ok(ctl)
    assert len(ctl.changes) <= 4


def test_never_flaps_on_a_load_between_two_rungs():
    # Rung 0 costs a bit more than a frame interval: it must be left, and not retried over and over.
    ctl, _ = simulate([0.036, 0.024, 0.016], lambda t: 1.0, 180, noise=0.15)
    assert ctl.level == 1
    assert len(ctl.changes) <= 3
    assert spacing_ok(ctl)


def test_back_off_grows_when_the_load_keeps_changing():
    # The load flips every 3 s: rung 0 fits only half the time. Tries must become rarer.
    load = lambda t: 1.0 if int(t / 3) % 2 == 0 else 2.0  # noqa: E731
    ctl, _ = simulate([0.025, 0.012, 0.008], load, 240)
    assert spacing_ok(ctl)
    ups = [c.t for c in ctl.changes if c.new < c.old]
    assert len(ctl.changes) <= 16  # 240 s: at most one change per 15 s on average
    gaps = np.diff(ups)
    assert len(gaps) >= 2 and gaps[-1] > gaps[0]  # the back-off doubled
    late = [c for c in ctl.changes if c.t > 60]
    assert len(late) <= 180 / 10  # after the start: at most one change per 10 s


def test_respects_the_latency_budget_itself():
    # Frames fit the interval but the latency budget is tight: latency is what decides.
    ctl, _ = simulate([0.030, 0.012], lambda t: 1.0, 20, budget=0.025)
    assert [(c.old, c.new) for c in ctl.changes] == [(0, 1)] and "latency" in ctl.changes[0].reason


def test_short_latency_bursts_cost_no_level_but_a_lasting_excess_does():
    """A call app's bursts: every 4 s, four frames arrive 95 ms late (p95 of a 2 s window over
    the 80 ms budget, but not for long): the level is kept. The same lateness on every frame
    for seconds steps down."""
    def feed(late_every: int, seconds: float) -> Controller:
        clock = SimClock()
        ctl = Controller(3, 30.0, clock=clock, budget=0.080)
        for i in range(int(seconds * 30)):
            clock.t = i / 30
            late = i % late_every < 4
            ctl.observe(0.020, 0.095 if late else 0.030)
        return ctl

    assert feed(120, 30).changes == []
    lasting = feed(1, 30).changes
    assert lasting and lasting[0].old == 0 and "latency" in lasting[0].reason


def test_after_the_start_changes_keep_ten_seconds_apart_unless_the_level_plainly_fails():
    """Frames a little late (90 ms against an 80 ms budget) on every rung: the first step down
    comes within the first 5 s, later ones only 10 s after the one before; frames that stop
    keeping up (here: slower than the source) still step down 2 s after a change."""
    def feed(processing, latency, seconds: float = 40) -> Controller:
        clock = SimClock()
        ctl = Controller(5, 30.0, clock=clock, budget=0.080)
        for i in range(int(seconds * 30)):
            clock.t = i / 30
            ctl.observe(processing(ctl.level), latency)
        return ctl

    late = feed(lambda level: 0.020, 0.090)
    times = [c.t for c in late.changes]
    assert times[0] < 5.0 and len(times) >= 3
    assert all(b - a >= 10.0 for a, b in zip(times, times[1:]))
    failing = feed(lambda level: 0.040 if level < 3 else 0.020, 0.060)
    gaps = [b.t - a.t for a, b in zip(failing.changes, failing.changes[1:])]
    assert [c.new for c in failing.changes] == [1, 2, 3] and all(2.0 <= g < 5.0 for g in gaps)


def test_comes_back_up_after_a_latency_only_load_goes_away():
    """Frames that fit the interval but arrive late (a call app taking the CPU at the wrong
    moments): the controller steps down; once latency is back to normal it climbs back to the
    top, although the frames never took longer than the interval."""
    clock = SimClock()
    ctl = Controller(3, 30.0, clock=clock, budget=0.080)
    for i in range(90 * 30):
        clock.t = i / 30
        ctl.observe(0.020, 0.095 if clock.t < 20 else 0.020)
    downs = [c for c in ctl.changes if c.new > c.old]
    assert downs and all(c.t < 20 for c in downs)
    assert ctl.level == 0 and ctl.changes[-1].new == 0 and spacing_ok(ctl)


def test_a_pessimistic_prediction_still_lets_it_climb_back_once_there_is_room():
    """Under a load the frames took longer than the interval on the top rung; afterwards the
    cheap rung's cost hardly changes, so the scaled prediction says the top rung still does
    not fit. After ``memory`` seconds that cost is forgotten, the top rung is tried, and it fits."""
    clock = SimClock()
    ctl = Controller(2, 30.0, clock=clock, budget=0.080)
    for i in range(120 * 30):
        clock.t = i / 30
        loaded = clock.t < 20
        cost = (0.045 if loaded else 0.020) if ctl.level == 0 else 0.012
        ctl.observe(cost, 0.070 if loaded else 0.025, 1 if loaded and ctl.level == 0 and i % 3 == 0 else 0)
    assert [(c.old, c.new) for c in ctl.changes][:1] == [(0, 1)] and ctl.changes[0].t < 20
    assert ctl.level == 0 and ctl.changes[-1].t < ctl.changes[0].t + ctl.memory + 10


def latency_load_run(free_readings: bool, seconds: float = 260.0) -> Controller:
    """A call's load that shows only as late frames on the top rung (its frames take as long as
    on an idle machine, as measured at 720p): on for 150 s, so the top rung is tried and left
    again and again and its back-off grows, then off. ``free_readings``: the machine's CPU
    counters are read every 0.5 s. The other programs get less than they want while the top
    rung runs: 1.8 cores left free then, 1.2 on the cheaper rung, 1.95 once the load is off."""
    clock = SimClock()
    ctl = Controller(3, 30.0, clock=clock, budget=0.080)
    for i in range(int(seconds * 30)):
        clock.t = i / 30
        loaded = clock.t < 150
        if free_readings and i % 15 == 0:
            ctl.note_free_cores((1.8 if ctl.level == 0 else 1.2) if loaded else 1.95)
        late = loaded and ctl.level == 0
        ctl.observe(0.020 if ctl.level == 0 else 0.012, 0.110 if late else 0.025)
    return ctl


def test_the_back_off_is_lifted_when_the_cpu_counters_show_the_load_has_gone():
    for ctl in (latency_load_run(False), latency_load_run(True)):
        under_load = [c for c in ctl.changes if c.t < 150]
        assert [c.new for c in under_load][:1] == [1] and sum(c.new == 0 for c in under_load) >= 2
        assert ctl.level == 0 and spacing_ok(ctl)
    without, with_counters = (next(c.t for c in ctl.changes if c.t >= 150 and c.new == 0)
                              for ctl in (latency_load_run(False), latency_load_run(True)))
    assert without > 150 + 20  # the back-off grown under load holds the cheap rung
    assert with_counters < 150 + 10  # the load has gone: back up after ``up_after`` seconds
    # No readings taken while the rung was left: the back-off runs its course as before.
    ctl = Controller(2, 30.0, clock=SimClock())
    assert ctl._load_went_away(0, 10.0) is False


def test_live_stages_read_the_cores_other_programs_leave():
    counters = iter([(0.0, 0.0), (120.0, 200.0), (300.0, 400.0)])  # (busy, total) jiffies, 2 cores
    own = iter([0.0, 0.5, 1.5])  # this process's CPU seconds
    meter = FreeCoresMeter(cpu_reader=lambda: next(counters), own_cpu=lambda: next(own), cores=2)
    assert meter(0.0) is None  # the first reading only marks the start
    assert meter(0.2) is None  # too soon: no reading taken
    assert meter(1.0) == pytest.approx(1.3)  # 1.2 cores busy, 0.5 of them ours: others use 0.7
    assert meter(2.0) == pytest.approx(1.2)  # 1.8 busy, 1.0 ours: others use 0.8
    stages = slow_stages([0.010, 0.004], cpu_reader=lambda: None)  # off Linux: no readings, no harm
    image = np.zeros((8, 8, 3), np.uint8)
    for i in range(3):
        stages.observe(stages.post(stages.process(Frame(image, capture_time=time.monotonic(), index=i))))
        time.sleep(0.3)
    assert not stages.controller._free
    read = slow_stages([0.010, 0.004], cpu_reader=fake_machine(1.5, 2), cores=2)  # others use 0.5 of 2
    for i in range(3):
        read.observe(read.post(read.process(Frame(image, capture_time=time.monotonic(), index=i))))
        time.sleep(0.3)
    assert read.controller._free and all(f >= 1.5 - 1e-9 for _t, f in read.controller._free)


def test_waits_for_the_next_engine_to_be_ready():
    ready = {1: False}
    clock = SimClock()
    ctl = Controller(2, 30, clock=clock, ready=lambda i: ready.get(i, True))
    for n in range(300):
        clock.t = n / 30
        assert ctl.observe(0.060, 0.120, 1) is None
    ready[1] = True
    clock.t += 1 / 30
    assert ctl.observe(0.060, 0.120, 1) is not None and ctl.level == 1


# -- ladder -------------------------------------------------------------------------------------
@pytest.mark.skipif(not (WEIGHTS / "hayao_int8.onnx").is_file(), reason="shipped weights absent")
def test_ladder_from_the_installed_files(plain_students):
    ladder = build_ladder(WEIGHTS / "hayao.onnx", None, "flow", 0.9)
    names = [lv.name for lv in ladder]
    # hayao_int8.onnx is an HD file too (quantised with its gain head), so it takes every rung,
    # from the size the file was trained for (320) down
    assert names == ["hd", "r256", "r192", "r160", "ema"]
    int8 = WEIGHTS / "hayao_int8.onnx"
    unguided = (("guided", False),)
    assert ladder == [Level("hd", int8, 320, "flow", 0.9), Level("r256", int8, 256, "flow", 0.9),
                      Level("r192", int8, 192, "flow", 0.9),
                      Level("r160", int8, 160, "flow", 0.9, engine_options=unguided),
                      Level("ema", int8, 128, "ema", 0.6, engine_options=unguided)]
    assert int8_sibling(int8) is None and build_ladder(int8) == ladder
    plain = build_ladder(plain_students["fp32"])  # a plain student: its int8 file is a rung below it
    assert [lv.name for lv in plain] == ["hd", "int8", "r192", "r160", "ema"]
    assert plain[0].model.name == "plain.onnx" and all(lv.model.name == "plain_int8.onnx" for lv in plain[1:])
    assert pick_level(ladder, "r192") == 2
    with pytest.raises(LivefilterError, match="choose auto, hd, r256, r192, r160, ema"):
        pick_level(ladder, "ultra")


def test_ladder_without_int8_and_without_smoothing(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    ladder = build_ladder(model, 192, "off", 0.9)
    assert [lv.name for lv in ladder] == ["hd", "r160"]
    assert all(lv.temporal == "off" and lv.model == model for lv in ladder)


def test_key_styles_put_full_precision_first():
    assert key_styles(["cute", "cute_int8", "hayao", "hayao_int8", "shinkai"]) == [
        "hayao", "cute", "shinkai", "cute_int8", "hayao_int8"]  # the default style on key 1


# -- the live stage with artificially slow engines ---------------------------------------------
class SlowEngine:
    """Stands in for a model: sleeps ``seconds`` per frame and tags the picture."""

    def __init__(self, seconds: float, tag: int) -> None:
        self.seconds, self.tag = seconds, tag

    def __call__(self, image):
        time.sleep(self.seconds)
        out = image.copy()
        out[0, 0, 0] = self.tag
        return out


def slow_stages(costs, quality="auto", clock=time.monotonic, fps=30.0, styles=(), **options):
    def ladder_for(model: Path):
        return [Level(f"l{i}", Path(model), 256 - 32 * i, "off", 0.0) for i in range(len(costs))]

    def factory(level: Level):
        return SlowEngine(costs[int(level.name[1:])], tag=int(level.name[1:]) + 10 * (level.model.name == "b"))

    return LiveStages(Path("a"), ladder_for=ladder_for, engine_factory=factory,
                      temporal_factory=lambda mode, strength: None, fps=fps, quality=quality,
                      styles=styles, clock=clock, **options)


def test_live_pipeline_with_a_slow_engine_steps_down(tmp_path, synthetic_clip):
    """The real pipeline, a paced clip and engines that sleep: 60 ms can't hold 30 fps, 4 ms can."""
    from livefilter.capture import PacedFileSource
    from livefilter.pipeline import run

    stages = slow_stages([0.060, 0.004])
    stop = threading.Event()
    timer = threading.Timer(6.0, stop.set)
    timer.start()
    try:
        stats = run(PacedFileSource(synthetic_clip, loop=True), stages.process, [stages.meter], live=True,
                    queue_size=1, stop_event=stop, post=stages.post)
    finally:
        timer.cancel()
    assert stats.frames_written > 0
    assert [name for _, name in stages.trace] == ["l0", "l1"]
    assert stages.controller.changes[0].t - stages.started >= 2.0
    assert stages.index == 1


def test_pinned_quality_never_changes_and_pause_passes_the_original():
    clock = SimClock()
    stages = slow_stages([0.0, 0.0, 0.0], quality="l2", clock=clock)
    assert stages.controller is None and stages.level.name == "l2"
    image = np.zeros((8, 8, 3), np.uint8)
    for n in range(200):
        clock.t = n / 30
        frame = stages.post(stages.process(Frame(image, capture_time=clock.t - 1.0, index=n)))
        stages.observe(frame)
        assert frame.image[0, 0, 0] == 2
    assert stages.level.name == "l2" and stages.trace == [(0.0, "l2")]
    assert stages.key(ord(" ")) and stages.paused and "PAUSED" in stages.status()
    frame = stages.post(stages.process(Frame(image, capture_time=0.0, index=201)))
    assert frame.image is image  # the original passes through untouched
    assert stages.key(ord(" ")) and not stages.paused
    assert not stages.key(ord("x"))


def test_style_key_switches_once_the_engine_is_ready():
    stages = slow_stages([0.0], quality="l0", styles=[("a", Path("a")), ("b", Path("b"))])
    image = np.zeros((8, 8, 3), np.uint8)
    assert stages.key(ord("2"))
    deadline = time.monotonic() + 20
    tags = []
    while time.monotonic() < deadline:
        frame = stages.post(stages.process(Frame(image, capture_time=0.0)))
        tags.append(int(frame.image[0, 0, 0]))  # a frame for every call: the stream never stops
        if tags[-1] == 10:
            break
        time.sleep(0.01)
    assert tags[-1] == 10 and stages.style_name == "b"
    assert set(tags) <= {0, 10}
    assert stages.key(ord("9"))  # no ninth style: ignored but ours
    assert stages.help_lines()[1:] == ["1  style a", "2  style b"]


def test_pool_reports_a_broken_rung_and_keeps_going():
    def factory(level):
        raise LivefilterError("broken file")

    pool = EnginePool(factory)
    level = Level("x", Path("x.onnx"), 256, "off", 0.0)
    assert pool.get(level) is None
    deadline = time.monotonic() + 10
    while not pool.failed(level) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.failed(level) and not pool.ready(level)
    with pytest.raises(LivefilterError, match="quality level"):
        pool.load(Level("y", Path("y.onnx"), 256, "off", 0.0))
    pool.close()


def test_steps_down_even_when_almost_no_frame_gets_through():
    # 800 ms a frame: about two frames per window, nearly all dropped; it must still act.
    ctl, _ = simulate([0.800, 0.400, 0.200, 0.010], lambda t: 1.0, 30)
    assert [c.new for c in ctl.changes] == [1, 2, 3]
    assert spacing_ok(ctl)
    assert ctl.floor_overloaded is None  # the cheapest level fits


def test_says_when_even_the_cheapest_level_is_too_slow():
    ctl, _ = simulate([0.060, 0.045], lambda t: 1.0, 20)
    assert ctl.level == 1 and ctl.floor_overloaded and ("dropped" in ctl.floor_overloaded or "ms" in ctl.floor_overloaded)


@pytest.mark.skipif(not (WEIGHTS / "hayao_int8.onnx").is_file(), reason="shipped weights absent")
def test_rungs_of_one_file_share_a_session_and_keep_their_sizes():
    from livefilter.quality import make_live_stages

    stages = make_live_stages(WEIGHTS / "hayao.onnx", resolution=256, temporal="flow", strength=0.9, fps=30,
                              quality="r192", with_styles=False)
    image = np.zeros((360, 640, 3), np.uint8)
    engines = {lv.name: stages.pool.load(lv) for lv in stages.ladder}
    assert len({id(e.session) for e in engines.values()}) == 1  # one file, one session
    assert engines["hd"].guided and engines["r192"].guided and not engines["r160"].guided
    assert [engines[lv.name].resolution for lv in stages.ladder] == [256, 192, 160, 128]
    assert engines["r160"].internal_size(640, 360) == (284, 160)
    assert engines["r160"](image).shape == image.shape
    stages.close()


def test_changes_keep_the_minimum_spacing_even_when_the_window_would_allow_sooner():
    # Four rungs that are all too slow: the controller wants to step down as fast as its
    # measuring window lets it (about every 2.5 s); a 6 s minimum spacing must hold it back.
    costs = [0.080, 0.070, 0.060, 0.050, 0.010]
    free_run, _ = simulate(costs, lambda t: 1.0, 40)
    natural = [b.t - a.t for a, b in zip(free_run.changes, free_run.changes[1:])]
    assert natural and min(natural) < 6.0  # the window alone would change sooner
    ctl, _ = simulate(costs, lambda t: 1.0, 40, min_interval=6.0)
    assert len(ctl.changes) >= 3 and spacing_ok(ctl, minimum=6.0)


def test_a_rung_fits_when_each_thread_and_the_free_cores_can_hold_the_frame_rate():
    interval = 1 / 30
    assert rung_fits(0.020, 0.010, interval, free_cores=1.6)
    assert not rung_fits(0.030, 0.010, interval, free_cores=2.0)  # the model thread alone is too slow
    assert not rung_fits(0.020, 0.010, interval, free_cores=0.6)  # a call app holds the other cores
    assert rung_fits(0.020, 0.010, interval, free_cores=None)  # unknown (not Linux): threads only
    # 2 cores, half of the machine busy, of which our own thread was a full core: others use none
    assert free_cores_between((0, 0), (100, 200), own_cpu=1.0, wall=1.0, cores=2) == 2.0
    assert free_cores_between((0, 0), (150, 200), own_cpu=0.5, wall=1.0, cores=2) == pytest.approx(1.0)
    assert free_cores_between(None, (1, 2), own_cpu=0.0, wall=1.0, cores=2) is None


def test_niced_programs_leave_their_cores_to_the_filter():
    # user nice system idle iowait irq softirq steal: a niced trainer's 300 jiffies count as free
    assert busy_and_total("cpu  100 300 50 500 50 0 0 0 0 0") == (150.0, 1000.0)
    assert busy_and_total("cpu0 1 2 3 4 5 6 7 8") is None
    assert busy_and_total("cpu 1 2") is None


def fake_machine(free: float, cores: int):
    """A /proc/stat reader for a machine whose other programs leave ``free`` cores."""
    calls = [0]

    def read():
        calls[0] += 1
        return calls[0] * 100.0 * (cores - free) / cores, calls[0] * 100.0
    return read


def test_first_frame_picks_the_dearest_rung_that_fits_and_that_is_no_change():
    import os

    image = np.zeros((8, 8, 3), np.uint8)
    stages = slow_stages([0.060, 0.004, 0.001], calibrate=True, cpu_reader=lambda: None)
    stages.observe(stages.post(stages.process(Frame(image, capture_time=time.monotonic(), index=0))))
    assert stages.level.name == "l1" and stages.trace == [(0.0, "l1")]
    assert stages.controller.level == 1 and stages.controller.changes == []
    assert [p["level"] for p in stages.start_probe] == ["l0", "l1"]  # stops at the first that fits
    assert stages.start_probe[0]["model_ms"] >= 60

    cores = os.cpu_count() or 1
    loaded = slow_stages([0.010, 0.008, 0.001], calibrate=True, cpu_reader=fake_machine(0.2, cores))
    frame = loaded.post(loaded.process(Frame(image, capture_time=time.monotonic(), index=0)))
    assert frame.image[0, 0, 0] == 2  # 0.2 cores free: only the cheapest rung fits
    assert loaded.level.name == "l2" and loaded.start_probe[-1]["free_cores"] == pytest.approx(0.2, abs=0.1)
    assert [p["level"] for p in loaded.start_probe] == ["l0", "l1"]  # the floor is the fallback, never timed

    # rungs predicted (by their pixels) at far over what fits are not timed: each costs frames
    far = slow_stages([0.300, 0.200, 0.004, 0.001], calibrate=True, cpu_reader=lambda: None)
    far.process(Frame(image, capture_time=time.monotonic(), index=0))
    assert far.level.name == "l3" and [p["level"] for p in far.start_probe] == ["l0"]
    deadline = time.monotonic() + 5
    while not far.pool.ready(far.ladder[2]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert far.pool.ready(far.ladder[2])  # the rung above is built, or the level could never climb

    idle = slow_stages([0.010, 0.004], calibrate=True, cpu_reader=fake_machine(cores, cores))
    idle.process(Frame(image, capture_time=time.monotonic(), index=0))
    assert idle.level.name == "l0" and len(idle.start_probe) == 1

    pinned = slow_stages([0.060, 0.004], quality="l0", calibrate=True, cpu_reader=lambda: None)
    pinned.process(Frame(image, capture_time=time.monotonic(), index=0))
    assert pinned.level.name == "l0" and pinned.start_probe == []  # a pinned level is never probed


def test_the_start_probe_ratio_predicts_a_rung_never_run_live():
    """An idle run that started under load (on rung 2) must climb when there is room. At 720p
    the step after the model costs the same on every guided rung, so rung 1 costs 1.4x rung 2,
    not the 1.6x guess: with the probe's ratio it climbs one rung, and no further, since the
    probe says rung 0 would not fit."""
    probe = {0: 0.034, 1: 0.0217, 2: 0.0154}
    live = {0: 0.036, 1: 0.0245, 2: 0.0180}

    def run(seeded: bool) -> Controller:
        clock = SimClock()
        ctl = Controller(3, 30.0, clock=clock, budget=0.080, level=2)
        if seeded:
            ctl.seed_costs(probe)
        for i in range(120 * 30):
            clock.t = i / 30
            ctl.observe(live[ctl.level], 0.025)
        return ctl

    guessed, seeded = run(False), run(True)
    assert guessed.level == 2 and guessed.changes == []  # 1.6 x 18 ms: over 0.85 of 33 ms
    assert seeded.level == 1 and [(c.old, c.new) for c in seeded.changes] == [(2, 1)]
    noisy = Controller(4, 30.0, clock=SimClock(), level=3)
    noisy.seed_costs({0: 0.028, 1: 0.0165, 2: 0.0192, 3: 0.0081})  # r192 caught a burst
    assert noisy._probe_cost == {0: 0.028, 1: 0.0165, 2: 0.0165, 3: 0.0081}
    probed = slow_stages([0.060, 0.004, 0.001], calibrate=True, cpu_reader=lambda: None)
    probed.process(Frame(np.zeros((8, 8, 3), np.uint8), capture_time=time.monotonic(), index=0))
    assert sorted(probed.controller._probe_cost) == [0, 1]  # the rungs it timed seed the controller
    assert probed.controller._probe_cost[0] >= 0.060
