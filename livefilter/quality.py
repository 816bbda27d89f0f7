"""Adaptive quality for live runs: a ladder of engine settings and a controller that picks a rung.

A video call runs its own encoder and decoder on the same cores as the filter, so the cost the
filter can afford changes during a call. The ladder lists what is installed, dearest first
(the full model at the default internal size with flow smoothing, then the int8 file, a
cheaper temporal stage, smaller internal sizes); the controller watches the time each frame
takes, the capture-to-sink latency and the frames the live queue dropped, and moves one rung
down under load and one rung up when there is room. It is pure logic with the clock passed in,
so tests drive it with simulated time.

Changing rungs must not stall the stream: engines are built once, on a background thread, and
kept; until the wanted engine is ready the current one keeps running.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from livefilter.engine import model_resolution, preferred_file
from livefilter.errors import LivefilterError
from livefilter.frames import Frame
from livefilter.pipeline import smooth_painting
from livefilter.upsample import GuideBuffers

log = logging.getLogger("livefilter")

AUTO = "auto"
DEFAULT_BUDGET_MS = 80.0
MIN_CHANGE_SECONDS = 2.0  # never two changes closer than this
EMA_STRENGTH_CAP = 0.6  # plain EMA ghosts on motion: the cheap rungs blend less
FLOOR_RESOLUTION = 128  # the cheapest rung: under a call's load at 720p, 160 still dropped 13-15% of frames


@dataclass(frozen=True)
class Level:
    """One rung: which model file at which internal size, and which temporal stage.

    ``engine_options`` are extra keyword arguments for `Engine` (e.g. a guided upsampler for
    the HD path), kept as sorted (key, value) pairs so a Level stays hashable.
    """

    name: str
    model: Path
    resolution: int
    temporal: str
    strength: float
    engine_options: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        return f"{self.name}: {self.model.name} at {self.resolution}, temporal {self.temporal}"

    @property
    def engine_key(self) -> tuple:
        """Levels with equal keys share one engine."""
        return (str(self.model), self.resolution, self.engine_options)


def int8_sibling(model: Path) -> Path | None:
    """``<stem>_int8.onnx`` next to a model, when it exists and is not the model itself."""
    if model.stem.endswith("_int8"):
        return None
    candidate = model.with_name(f"{model.stem}_int8{model.suffix}")
    return candidate if candidate.is_file() else None


def build_ladder(model: Path, resolution: int | None = None, temporal: str = "flow",
                 strength: float = 0.9) -> list[Level]:
    """The rungs for one model, dearest first; ``resolution`` None is the file's own.

    An int8 sibling that is itself an HD file replaces the model on every rung: it ships only
    because it paints the same look (720p fidelity within 0.1 dB) faster,
    so live runs get the HD look where the fp32 file would drop frames. A plain int8 sibling
    is a rung of its own below the model's. Below come smaller internal sizes: 256 for a file
    trained at more, 192 (both still guided to full size), 160 without the full-size guide, and
    128 with plain EMA smoothing: the floor, since at 720p under two call stand-ins on 2 Zen 3
    cores a 160 floor still dropped 13-15% of frames and 128 dropped 2.4%.
    The temporal stage works at the model's size, so a cheaper one (motion) saves next to
    nothing and has no rung.
    """
    cheap = int8_sibling(Path(model)) or Path(model)
    model = preferred_file(model)
    resolution = resolution or model_resolution(model)
    unguided = (("guided", False),)
    rungs = [Level("hd", model, resolution, temporal, strength)]
    if cheap != model:
        rungs.append(Level("int8", cheap, resolution, temporal, strength))
    if 256 < resolution:
        rungs.append(Level("r256", cheap, 256, temporal, strength))
    if 192 < resolution:
        rungs.append(Level("r192", cheap, 192, temporal, strength))
    if 160 < resolution:
        rungs.append(Level("r160", cheap, 160, temporal, strength, engine_options=unguided))
    if temporal not in ("off", "ema"):
        rungs.append(Level("ema", cheap, min(FLOOR_RESOLUTION, resolution), "ema", min(strength, EMA_STRENGTH_CAP),
                           engine_options=unguided))
    return rungs


def cpu_jiffies() -> tuple[float, float] | None:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as f:
            return busy_and_total(f.readline())
    except OSError:
        return None


def busy_and_total(cpu_line: str) -> tuple[float, float] | None:
    """(busy, total) from /proc/stat's first line. Time of niced programs (a backup, an indexer,
    a training run) counts as free: they give their share up to a live filter at nice 0."""
    fields = cpu_line.split()
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (float(v) for v in fields[1:9])
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total - idle - iowait - nice, total


def rung_fits(model: float, post: float, interval: float, free_cores: float | None, share: float = 0.85) -> bool:
    """Whether a rung whose frame costs ``model`` s on the model thread and ``post`` s after it
    can hold the source's frame rate: each thread within ``share`` of the frame interval, and
    both together within that share of the cores the other programs leave free."""
    if model > share * interval or post > share * interval:
        return False
    return free_cores is None or model + post <= share * free_cores * interval


def free_cores_between(before: tuple[float, float] | None, after: tuple[float, float] | None,
                       own_cpu: float, wall: float, cores: int) -> float | None:
    """Cores not used by other programs over ``wall`` s in which ours used ``own_cpu`` s of CPU."""
    if before is None or after is None or wall <= 0:
        return None
    total = after[1] - before[1]
    if total <= 0:
        return None
    busy = (after[0] - before[0]) / total * cores
    return max(0.0, cores - max(0.0, busy - own_cpu / wall))


class FreeCoresMeter:
    """Every ``every`` s, the cores other programs left free since the last reading: the
    machine's CPU time (``cpu_reader``, /proc/stat) less this process's (``own_cpu``)."""

    def __init__(self, cpu_reader: Callable[[], tuple[float, float] | None] = cpu_jiffies,
                 own_cpu: Callable[[], float] = time.process_time, cores: int | None = None,
                 every: float = 0.5) -> None:
        self.cpu_reader, self.own_cpu, self.every = cpu_reader, own_cpu, every
        self.cores = cores or os.cpu_count() or 1
        self._mark: tuple[float, tuple[float, float] | None, float] | None = None

    def __call__(self, now: float) -> float | None:
        """A new reading at ``now`` (seconds, any clock), or None if too soon or unknown."""
        if self._mark is not None and now - self._mark[0] < self.every:
            return None
        mark = (now, self.cpu_reader(), self.own_cpu())
        previous, self._mark = self._mark, mark
        if previous is None:
            return None
        then, before, own = previous
        return free_cores_between(before, mark[1], mark[2] - own, now - then, self.cores)


def run_engine(engine: Callable, frame: Frame) -> Frame:
    """The model step of one frame: a `Painting` when the engine has one (finished, and
    smoothed, at the model's size by `run_post`), else the engine's full-size picture."""
    paint = getattr(engine, "paint", None)
    if paint is not None:
        return replace(frame, painting=paint(frame.image), original=frame.image)
    return replace(frame, image=engine(frame.image), original=frame.image)


def run_post(frame: Frame, temporal: Callable | None, work: GuideBuffers) -> Frame:
    """The step after the model: temporal smoothing (None: none) and the full-size finish."""
    if frame.painting is not None:
        return smooth_painting(frame, temporal, work)
    if temporal is None or frame.original is None or frame.image is frame.original:
        return frame
    return replace(frame, image=temporal(frame.original, frame.image))


def pick_level(ladder: Sequence[Level], name: str) -> int:
    """Index of the rung called ``name``, or a one-line error listing the choices."""
    for i, level in enumerate(ladder):
        if level.name == name:
            return i
    choices = ", ".join([AUTO, *(lv.name for lv in ladder)])
    raise LivefilterError(f"unknown quality level {name!r} (choose {choices})")


def key_styles(styles: Sequence[str], first: str = "hayao") -> list[str]:
    """Styles in key order (1-9): the default style on 1, full-precision files next, then int8."""
    full = sorted((s for s in styles if not s.endswith("_int8")), key=lambda s: s != first)
    return (full + [s for s in styles if s.endswith("_int8")])[:9]


# --- engines ----------------------------------------------------------------------------------
class EnginePool:
    """Engines built once, on one background thread, and kept for the run.

    ``get`` never blocks: it returns the engine if it is ready, else asks for it and returns
    None. A rung whose engine fails to build is logged once and reported as unavailable.
    ``warm`` (a picture) is run once through each new engine so its first live frame is not
    the slow first ONNX Runtime call.
    """

    def __init__(self, factory: Callable[[Level], Callable]) -> None:
        self.factory = factory
        self._lock = threading.Lock()
        self._engines: dict[tuple, Callable] = {}
        self._failed: set[tuple] = set()
        self._asked: set[tuple] = set()
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self.warm: np.ndarray | None = None

    def _build(self, level: Level) -> Callable | None:
        key = level.engine_key
        try:
            engine = self.factory(level)
            if self.warm is not None:
                engine(self.warm)
        except Exception as exc:  # a broken rung must not end the stream
            log.warning("quality level %s unavailable: %s", level.name, exc)
            with self._lock:
                self._failed.add(key)
            return None
        with self._lock:
            self._engines[key] = engine
        return engine

    def _work(self) -> None:
        while True:
            level = self._jobs.get()
            if level is None:
                return
            if not self.ready(level):
                self._build(level)

    def load(self, level: Level) -> Callable:
        """Build (or return) the engine now, on the calling thread: for the first rung."""
        with self._lock:
            engine = self._engines.get(level.engine_key)
        if engine is not None:
            return engine
        engine = self._build(level)
        if engine is None:
            raise LivefilterError(f"cannot load the engine for quality level {level.describe()}")
        return engine

    def request(self, level: Level) -> None:
        """Start building in the background if not built or asked for yet."""
        key = level.engine_key
        with self._lock:
            if key in self._engines or key in self._failed or key in self._asked:
                return
            self._asked.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="livefilter-engines", daemon=True)
                self._thread.start()
        self._jobs.put(level)

    def get(self, level: Level) -> Callable | None:
        with self._lock:
            engine = self._engines.get(level.engine_key)
        if engine is None:
            self.request(level)
        return engine

    def ready(self, level: Level) -> bool:
        with self._lock:
            return level.engine_key in self._engines

    def failed(self, level: Level) -> bool:
        with self._lock:
            return level.engine_key in self._failed

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)


# --- controller -------------------------------------------------------------------------------
@dataclass
class Change:
    """One level change: when (controller clock), from and to which index, and why."""

    t: float
    old: int
    new: int
    reason: str


@dataclass
class Controller:
    """Chooses the rung (0 = dearest) from per-frame measurements; one step at a time.

    Down: over the last ``window`` seconds (only frames measured since the last change has
    settled) more than 3% of frames were dropped, or the median frame takes longer than the
    source's frame interval, or p95 capture-to-sink latency exceeds ``severe`` times the
    budget; or over the last ``latency_window`` seconds p95 latency exceeds the budget. The
    longer window for a mild excess keeps a call app's short bursts (a few late frames in a
    second) from costing a level, which would then be tried again and again.
    After the first ``startup`` seconds, changes keep ``steady_interval`` seconds apart unless
    the level is plainly failing (frames dropped, frames slower than the source, or the severe
    latency excess): a call's load comes and goes, and a picture that changes every few
    seconds is worse than a level that is a little too cheap or a little late for a while.
    Up: for ``up_after`` seconds every one of those is comfortably met (p95 latency under 0.7
    of the budget, 0.5 for a rung that was left before); the rung above is predicted to fit
    (its cost when it last ran, scaled by how the current rung's cost has changed since; a
    cost older than ``memory`` seconds is forgotten, as the load it was measured under has
    likely changed; then this rung's cost times the start probe's ratio of the two rungs stands
    in (`seed_costs`), or 1.6 times it for a rung the probe did not time); and it is not in its
    back-off: each time a rung is left
    for being too slow shortly after it was entered, its back-off doubles (from
    ``backoff_start`` up to ``backoff_max``), so a load just between two rungs causes rarer
    and rarer tries instead of flapping. At least ``min_interval`` seconds between changes.
    The back-off is lifted early when the machine's CPU counters show the load has gone
    (`note_free_cores`): for ``up_after`` seconds the other programs have left at least
    ``load_gone`` more cores free than when the rung was left. The frame cost alone cannot
    tell: at 720p under a call's load the top rung's frames took as long as on an idle machine
    (the load shows as late and dropped frames), and a 30-minute run reached the top 15-105 s
    after each load had stopped.
    """

    count: int
    fps: float
    clock: Callable[[], float] = time.monotonic
    budget: float = DEFAULT_BUDGET_MS / 1000
    level: int = 0
    min_interval: float = MIN_CHANGE_SECONDS
    window: float = 2.0
    latency_window: float = 4.0
    severe: float = 1.5
    startup: float = 5.0
    steady_interval: float = 10.0
    settle: float = 0.5
    up_after: float = 4.0
    memory: float = 60.0
    backoff_start: float = 10.0
    backoff_max: float = 120.0
    drop_limit: float = 0.03
    load_gone: float = 0.4
    ready: Callable[[int], bool] = lambda _i: True
    changes: list[Change] = field(default_factory=list)
    floor_overloaded: str | None = None  # set when the cheapest level is too slow as well

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a controller needs at least one level")
        self.level = min(max(0, self.level), self.count - 1)
        self.interval = 1.0 / self.fps if self.fps and self.fps > 0 else 1.0 / 30
        self._samples: deque[tuple[float, float, float, int]] = deque()
        self._since: float | None = None  # when the current level started (first frame seen)
        self._last_change = -float("inf")
        self._cost: dict[int, float] = {}  # median frame time when a level last ran
        self._cost_ref: dict[int, float] = {}  # the current level's cost at that moment
        self._cost_time: dict[int, float] = {}  # when each of those costs was measured
        self._backoff: dict[int, float] = {}
        self._blocked_until: dict[int, float] = {}
        self._ref_pending: int | None = None
        self._first: float | None = None  # the first frame seen
        self._probe_cost: dict[int, float] = {}  # the start probe's frame cost per rung timed
        self._free: deque[tuple[float, float]] = deque()  # (when, cores the other programs leave)
        self._free_at_leave: dict[int, float] = {}  # those cores when a rung was left as too slow

    def retarget(self, count: int, level: int) -> None:
        """A new ladder (another style): forget what was learnt about the old one."""
        last_change = self._last_change
        self.count, self.level = count, level
        self.__post_init__()
        self._last_change = last_change  # the 2 s spacing holds across a style switch too

    def seed_costs(self, costs: dict[int, float]) -> None:
        """What the start probe measured per rung (seconds a frame), all at one moment.

        Until a rung has run live, its cost is predicted from these: the probe's ratio of that
        rung to the current one, times the current rung's live cost. The ratio holds when the
        load changes, where a fixed 1.6x guess does not: at 720p the step after the model costs
        the same on every guided rung, so r192 to r256 costs 1.4x, and an idle run that had
        started under load stayed on r192 for good.

        A cheaper rung never counts as dearer than one above it: under load one timing can
        catch a burst (a 720p probe timed r192 at 19 ms after the model, r256 at 16), and then
        the controller held the cheap rung for 30 s for nothing.
        """
        self._probe_cost = {}
        dearest = float("inf")
        for i in sorted(costs):  # rung 0 is the dearest
            if costs[i] > 0:
                dearest = min(dearest, costs[i])
                self._probe_cost[i] = dearest

    def note_free_cores(self, free: float) -> None:
        """The cores other programs left free since the last reading (from the CPU counters)."""
        now = self.clock()
        self._free.append((now, free))
        while self._free and now - self._free[0][0] > max(self.window, self.up_after):
            self._free.popleft()
        # The reference for a rung left under load is the least free the load has left since:
        # on the dear rung the other programs got less than they wanted, on the cheaper one all.
        recent = self._free_over(now, self.window)
        if recent:
            level = float(np.median(recent))
            for rung, before in self._free_at_leave.items():
                self._free_at_leave[rung] = min(before, level)

    def _free_over(self, now: float, seconds: float) -> list[float]:
        """Readings of the last ``seconds``, or none if they do not span most of it."""
        span = [(t, f) for t, f in self._free if now - t <= seconds]  # oldest first
        if len(span) < 2 or now - span[0][0] < 0.75 * seconds:
            return []
        return [f for _t, f in span]

    def _load_went_away(self, rung: int, now: float) -> bool:
        """Whether the load that pushed ``rung`` off has gone: ``load_gone`` more cores free
        throughout the last ``up_after`` seconds than when it was left (or since, if fewer)."""
        before = self._free_at_leave.get(rung)
        span = self._free_over(now, self.up_after)
        return before is not None and bool(span) and min(span) >= before + self.load_gone

    def observe(self, processing: float, latency: float, dropped: int = 0) -> Change | None:
        """One written frame: its processing time, capture-to-sink latency (seconds) and the
        frames dropped just before it. Returns the change made, if any."""
        now = self.clock()
        if self._since is None:
            self._since = now
        if self._first is None:
            self._first = now
        self._samples.append((now, processing, latency, max(0, int(dropped))))
        horizon = max(self.window, self.up_after, self.latency_window)
        while self._samples and now - self._samples[0][0] > horizon:
            self._samples.popleft()
        if now - self._last_change < self.min_interval:
            return None
        start = self._since + self.settle
        recent = [s for s in self._samples if s[0] >= start and now - s[0] <= self.window]
        # Two frames are enough when they span the window: so few frames is itself overload.
        if len(recent) < 2 or now - max(start, now - self.window) < 0.75 * self.window:
            return None
        proc = np.array([s[1] for s in recent])
        lat = np.array([s[2] for s in recent])
        drops = sum(s[3] for s in recent)
        p95 = float(np.percentile(lat, 95))
        median = float(np.median(proc))
        drop_rate = drops / (drops + len(recent))
        self._cost[self.level] = median
        self._cost_time[self.level] = now
        if self._ref_pending is not None and self._ref_pending == self.level - 1:
            self._cost_ref[self._ref_pending] = median
            self._ref_pending = None
        steady = now - self._first > self.startup and now - self._last_change < self.steady_interval
        over = None
        longer = [s[2] for s in self._samples if s[0] >= start and now - s[0] <= self.latency_window]
        long_p95 = None
        if len(longer) >= 2 and now - max(start, now - self.latency_window) >= 0.75 * self.latency_window:
            long_p95 = float(np.percentile(longer, 95))
        if p95 > self.severe * self.budget:
            over = f"p95 latency {p95 * 1000:.0f} ms, far over the {self.budget * 1000:.0f} ms budget"
        elif long_p95 is not None and long_p95 > self.budget and not steady:
            over = f"p95 latency {long_p95 * 1000:.0f} ms over the {self.budget * 1000:.0f} ms budget"
        elif drop_rate > self.drop_limit:
            over = f"{drop_rate * 100:.0f}% of frames dropped"
        elif median > self.interval:
            over = f"a frame takes {median * 1000:.0f} ms, more than the {self.interval * 1000:.0f} ms between frames"
        if over is not None:
            if self.level + 1 == self.count:
                self.floor_overloaded = over  # nothing cheaper to go to: the caller may say so
            elif self.ready(self.level + 1):
                # The cost to remember for the way back up (the newest half of the window is
                # the most telling). Frames slower than the source: at least a frame interval.
                # Left for latency or drops: what the frames took, since with the model and the
                # sinks on two threads a rung can be late while its frames fit; the stricter
                # latency test for a rung that failed before (`_maybe_up`) guards the return.
                late = float(np.median(proc[len(proc) // 2:]))
                floor = self.interval if median > self.interval else 0.0
                return self._change(now, self.level + 1, over, max(median, late, floor))
        if self.level > 0 and not steady:
            return self._maybe_up(now, median)
        return None

    def _maybe_up(self, now: float, median: float) -> Change | None:
        up = self.level - 1
        if not self.ready(up):
            return None
        if now < self._blocked_until.get(up, -float("inf")):
            if not self._load_went_away(up, now):
                return None
            del self._blocked_until[up]  # its back-off was for a load that has gone
            self._free_at_leave.pop(up, None)
        start = self._since + self.settle
        span = [s for s in self._samples if s[0] >= start and now - s[0] <= self.up_after]
        if not span or now - span[0][0] < 0.9 * self.up_after:
            return None
        proc = np.array([s[1] for s in span])
        lat = np.array([s[2] for s in span])
        drops = sum(s[3] for s in span)
        p95 = float(np.percentile(lat, 95))
        # A rung that was left before must find more room: latency well under the budget.
        room = 0.5 if up in self._backoff else 0.7
        if drops > 0.005 * len(span) or p95 > room * self.budget:
            return None
        if up in self._cost and now - self._cost_time.get(up, now) <= self.memory:
            ref = self._cost_ref.get(up) or median
            predicted = self._cost[up] * (median / ref if ref > 0 else 1.0)
        elif up in self._probe_cost and self.level in self._probe_cost:
            predicted = self._probe_cost[up] * float(np.percentile(proc, 90)) / self._probe_cost[self.level]
        else:
            predicted = 1.6 * float(np.percentile(proc, 90))
        fits = predicted <= 0.85 * self.interval and p95 + (predicted - median) <= 0.85 * self.budget
        if not fits:
            return None
        reason = (f"room: p95 latency {p95 * 1000:.0f} ms, a frame takes {median * 1000:.0f} ms, "
                  f"{self.interval * 1000:.0f} ms between frames")
        return self._change(now, up, reason, median)

    def _change(self, now: float, new: int, reason: str, median: float) -> Change:
        old = self.level
        if new > old:  # leaving ``old`` because it was too slow
            quick_fail = now - self._since < 4 * self.up_after
            previous = self._backoff.get(old)
            backoff = min(self.backoff_max, previous * 2) if (previous and quick_fail) else self.backoff_start
            self._backoff[old] = backoff
            self._blocked_until[old] = now + backoff
            free = self._free_over(now, self.window)
            if free:
                self._free_at_leave[old] = float(np.median(free))
            else:
                self._free_at_leave.pop(old, None)
        self._cost[old] = median
        self._cost_time[old] = now
        # The dear rung's cost is judged later against the cheap rung's cost measured now-ish:
        # the first window at the new rung fills it in (see `observe`).
        self._ref_pending = old if new > old else None
        change = Change(now, old, new, reason)
        self.changes.append(change)
        self.level = new
        self._since = now
        self._last_change = now
        return change


# --- the live stage ---------------------------------------------------------------------------
class LiveStages:
    """``process``/``post`` for the live pipeline, choosing a rung per frame; and its keys.

    ``ladder_for(model)`` gives the rungs for a model file; ``styles`` are the models keys
    1-9 switch to. ``quality`` is "auto" (a `Controller` decides) or a rung name (pinned).
    Add `meter` as the last sink: it measures capture-to-sink latency for the controller.
    Space pauses the filter (the original passes through), 1-9 switch style; a switch waits,
    with the current style still running, until the new engine is ready.
    """

    def __init__(self, model: Path, *, ladder_for: Callable[[Path], list[Level]],
                 engine_factory: Callable[[Level], Callable],
                 temporal_factory: Callable[[str, float], Callable | None],
                 fps: float, quality: str = AUTO, budget: float = DEFAULT_BUDGET_MS / 1000,
                 styles: Sequence[tuple[str, Path]] = (), style_name: str | None = None,
                 clock: Callable[[], float] = time.monotonic, calibrate: bool = False,
                 cpu_reader: Callable[[], tuple[float, float] | None] = cpu_jiffies,
                 own_cpu: Callable[[], float] = time.process_time, cores: int | None = None) -> None:
        self.ladder_for, self.temporal_factory, self.clock = ladder_for, temporal_factory, clock
        self.cpu_reader, self.cores = cpu_reader, cores or os.cpu_count() or 1
        self._free_cores = FreeCoresMeter(cpu_reader, own_cpu, self.cores)
        self.pool = EnginePool(engine_factory)
        self.styles = list(styles)
        self.style_name = style_name or Path(model).stem
        self.ladder = ladder_for(Path(model))
        self.quality = quality
        start = 0 if quality == AUTO else pick_level(self.ladder, quality)
        self.controller: Controller | None = None
        if quality == AUTO:
            self.controller = Controller(len(self.ladder), fps, clock=clock, budget=budget, level=start,
                                         ready=lambda i: self.pool.ready(self.ladder[i]))
        self.index = start
        self.engine = self.pool.load(self.ladder[start])
        self._temporals: dict[tuple[str, float], Callable | None] = {}
        self.temporal = self._temporal_for(self.ladder[start])
        self._pending: tuple[str, list[Level]] | None = None  # a style switch waiting for its engine
        self.paused = False
        self.started = clock()
        self.trace: list[tuple[float, str]] = [(0.0, self.ladder[start].name)]
        # Per frame index: [model time, when post started]. With the live pipeline's two
        # threads (model one frame ahead of smoothing and sinks) a frame's cost is its slower
        # stage, since the two overlap; without them the stages run back to back.
        self._timing: dict[int, list] = {}
        # Style switches (model thread) and level changes (sink thread) change the same fields.
        self._switching = threading.RLock()
        self._work = GuideBuffers()
        self._last_index: int | None = None
        self._dropped = 0
        self._floor_warned = False
        self._calibrate = calibrate and self.controller is not None and len(self.ladder) > 1
        self.start_probe: list[dict] = []  # what the first frame measured on each rung tried
        if self.controller is not None and start + 1 < len(self.ladder) and not self._calibrate:
            self.pool.request(self.ladder[start + 1])

    # -- state shown to the user ------------------------------------------------------------
    @property
    def level(self) -> Level:
        return self.ladder[self.index]

    def status(self) -> str:
        """Overlay text: style, rung (and whether it is chosen automatically), pause."""
        mode = "auto" if self.controller is not None else "fixed"
        text = f"{self.style_name}  {self.level.name} ({mode})"
        if self._pending is not None:
            text += f"  loading {self._pending[0]}"
        return text + ("  PAUSED" if self.paused else "")

    def help_lines(self) -> list[str]:
        lines = ["space  pause the filter (original passes through)"]
        for n, (name, _path) in enumerate(self.styles, start=1):
            lines.append(f"{n}  style {name}")
        return lines

    # -- keys ---------------------------------------------------------------------------------
    def key(self, key: int) -> bool:
        """Handle a key from the preview; True if it was one of ours."""
        if key == ord(" "):
            self.paused = not self.paused
            log.info("filter %s", "paused: the original picture passes through" if self.paused else "resumed")
            if not self.paused and self.temporal is not None:
                self.temporal.reset()
            return True
        if ord("1") <= key <= ord("9"):
            n = key - ord("1")
            if n < len(self.styles):
                self.switch_style(*self.styles[n])
            return True
        return False

    def switch_style(self, name: str, model: Path) -> None:
        """Ask for another style; it takes over once its engine (same rung) is built."""
        if name == self.style_name and self._pending is None:
            return
        ladder = self.ladder_for(Path(model))
        self._pending = (name, ladder)
        self.pool.request(ladder[min(self.index, len(ladder) - 1)])
        log.info("style %s: loading", name)

    def _apply_pending_style(self) -> None:
        name, ladder = self._pending
        index = min(self.index, len(ladder) - 1)
        if self.quality != AUTO:
            try:
                index = pick_level(ladder, self.quality)
            except LivefilterError:
                pass
        engine = self.pool.get(ladder[index])
        if engine is None:
            if self.pool.failed(ladder[index]):
                log.warning("style %s could not be loaded; keeping %s", name, self.style_name)
                self._pending = None
            return
        self._pending = None
        self.style_name, self.ladder, self.index, self.engine = name, ladder, index, engine
        self._set_temporal(ladder[index])
        if self.controller is not None:
            self.controller.retarget(len(ladder), index)
            if index + 1 < len(ladder):
                self.pool.request(ladder[index + 1])
        log.info("style %s (quality %s)", name, ladder[index].name)

    # -- stages -------------------------------------------------------------------------------
    def _temporal_for(self, level: Level):
        key = (level.temporal, level.strength)
        if key not in self._temporals:
            self._temporals[key] = self.temporal_factory(level.temporal, level.strength)
        return self._temporals[key]

    def _set_temporal(self, level: Level) -> None:
        stage = self._temporal_for(level)
        if stage is not self.temporal and stage is not None:
            stage.reset()  # its history is from long ago
        self.temporal = stage

    def _set_level(self, index: int, at: float | None = None) -> None:
        old = self.level
        self.index = index
        engine = self.pool.get(self.level)
        if engine is not None:
            self.engine = engine
        self._set_temporal(self.level)
        self.trace.append((round((self.clock() if at is None else at) - self.started, 3), self.level.name))
        if index + 1 < len(self.ladder):
            self.pool.request(self.ladder[index + 1])
        log.debug("quality %s -> %s", old.describe(), self.level.describe())

    def _probe_start(self, image: np.ndarray) -> None:
        """Time the first frame on each rung, dearest first, and start on the first that fits.

        Walking down one rung per 2 s from the top costs a loaded machine seconds of dropped
        frames (at 720p under a call's load, 8 s and 8% of a minute's frames). The probe's wall
        times include today's contention; the machine's CPU counters (Linux) say how many cores
        the other programs leave. The controller still corrects a wrong guess, one step at a time.
        """
        interval = self.controller.interval
        cores = self.cores
        before, wall0, cpu0 = self.cpu_reader(), time.perf_counter(), time.thread_time()
        chosen = len(self.ladder) - 1
        last: tuple[float, int] | None = None  # (model + post seconds, resolution) of the last rung timed
        free: float | None = None
        costs: dict[int, float] = {}  # each timed rung's frame cost, for the controller
        for i, level in enumerate(self.ladder[:-1]):  # the floor needs no timing: it is the fallback
            if last is not None:
                # a rung predicted (by its pixels) at over twice what fits is skipped untimed:
                # under load each timing is a fraction of a second of frames not shown. What fits
                # (`rung_fits`) is two threads' share of the interval, or less with few cores free.
                predicted = last[0] * (level.resolution / last[1]) ** 2
                allowed = 0.85 * interval * (2.0 if free is None else min(2.0, free))
                if predicted > 2 * allowed:
                    continue
            try:
                engine = self.pool.load(level)
            except LivefilterError:
                continue
            temporal = self.temporal_factory(level.temporal, level.strength)
            work = GuideBuffers()
            probe = Frame(image, capture_time=0.0, index=0)
            timings = []
            # The first run warms the session's shape and the buffers, the second computes the
            # temporal stage's first flow (half as dear again as later ones): the next two are
            # timed, and the faster of each step kept (the capture thread's decoding lands on
            # one or the other; what other programs take is counted apart, as free cores).
            for _ in range(4):
                t0 = time.perf_counter()
                done = run_engine(engine, probe)
                t1 = time.perf_counter()
                run_post(done, temporal, work)
                timings.append((t1 - t0, time.perf_counter() - t1))
            model, post = min(t[0] for t in timings[2:]), min(t[1] for t in timings[2:])
            last = (model + post, level.resolution)
            costs[i] = max(model, post)
            free = free_cores_between(before, self.cpu_reader(), time.thread_time() - cpu0,
                                      time.perf_counter() - wall0, cores)
            self.start_probe.append({"level": level.name, "model_ms": round(model * 1000, 1),
                                     "post_ms": round(post * 1000, 1),
                                     "free_cores": None if free is None else round(free, 2)})
            if rung_fits(model, post, interval, free):
                chosen = i
                break
        level = self.ladder[chosen]
        self.index = chosen
        self.engine = self.pool.load(level)
        self._set_temporal(level)
        self.controller.level = chosen
        self.controller.seed_costs(costs)
        self.trace = [(0.0, level.name)]
        timed = self.start_probe[-1] if self.start_probe else {}
        log.info("quality: starting at %s (last rung timed: %s, model %s ms, after it %s ms; %s cores free)",
                 level.name, timed.get("level"), timed.get("model_ms"), timed.get("post_ms"), timed.get("free_cores"))
        for near in (chosen - 1, chosen + 1):  # the rungs it may move to next: a rung never built can't be climbed to
            if 0 <= near < len(self.ladder):
                self.pool.request(self.ladder[near])

    def process(self, frame: Frame) -> Frame:
        if self.pool.warm is None:
            self.pool.warm = frame.image
        if self._calibrate:
            self._calibrate = False
            with self._switching:
                self._probe_start(frame.image)
        if self._pending is not None:
            with self._switching:
                self._apply_pending_style()
        if self._last_index is not None and frame.index > self._last_index:
            self._dropped += frame.index - self._last_index - 1
        self._last_index = frame.index
        if self.paused:
            return replace(frame, original=frame.image)
        started = self.clock()
        out = run_engine(self.engine, frame)
        if len(self._timing) > 8:  # frames processed but never posted (a run that stopped)
            self._timing.clear()
        self._timing[frame.index] = [self.clock() - started, None]
        return out

    def post(self, frame: Frame) -> Frame:
        started = self.clock()
        out = run_post(frame, None if self.paused else self.temporal, self._work)
        timing = self._timing.get(frame.index)
        if timing is not None:
            timing[1] = started
        return out

    def observe(self, frame: Frame) -> None:
        """After every sink wrote ``frame``: feed the controller, switch rung if it says so."""
        timing = self._timing.pop(frame.index, None)
        if self.controller is None or timing is None or self._pending is not None:
            self._dropped = 0
            return
        now = self.clock()
        free = self._free_cores(now)
        if free is not None:  # lets the controller see a load come and go
            self.controller.note_free_cores(free)
        latency = now - frame.capture_time
        cost = timing[0] if timing[1] is None else max(timing[0], now - timing[1])
        change = self.controller.observe(cost, latency, self._dropped)
        self._dropped = 0
        if self.controller.floor_overloaded and not self._floor_warned:
            self._floor_warned = True
            log.warning("quality %s is the cheapest level and still too slow here (%s); other programs "
                        "need the CPU: expect dropped frames", self.level.name, self.controller.floor_overloaded)
        if change is not None:
            with self._switching:
                if self._pending is not None:  # a style switch came first
                    return
                old, new = self.ladder[change.old], self.ladder[change.new]
                log.info("quality %s -> %s (%s)", old.name, new.name, change.reason)
                self._set_level(change.new, at=change.t)

    @property
    def meter(self) -> "LevelMeter":
        return LevelMeter(self)

    def close(self) -> None:
        self.pool.close()


class LevelMeter:
    """A sink that only tells the stage when a frame has reached every sink before it."""

    def __init__(self, stages: LiveStages) -> None:
        self.stages = stages

    def write(self, frame: Frame) -> None:
        self.stages.observe(frame)

    def close(self) -> None:
        self.stages.close()


def live_model_threads(cores: int | None = None) -> int:
    """Model threads for live runs: half the cores. The live pipeline already runs the model
    beside the smoothing and the sinks; on 2 cores with a call app's load, one model thread
    kept p95 latency at 61 ms where two gave 75 ms (and idle was the same, 30 fps)."""
    cores = cores or os.cpu_count() or 2
    return max(1, cores // 2)


def make_live_stages(model: Path, *, resolution: int | None, temporal: str, strength: float, fps: float,
                     quality: str = AUTO, budget_ms: float = DEFAULT_BUDGET_MS, threads: int | None = None,
                     provider: str = "cpu", style_name: str | None = None,
                     with_styles: bool = True) -> LiveStages:
    """The live stages as the CLI and the bench wire them (real engines and temporal stages).

    ``threads`` defaults to `live_model_threads`; ``resolution`` None runs each style at its
    file's own (`model_resolution`).
    """
    from livefilter.engine import Engine, list_styles, resolve_model
    from livefilter.temporal import make_temporal

    threads = threads or live_model_threads()

    sessions: dict[tuple, Engine] = {}
    lock = threading.Lock()

    def engine_factory(level: Level):
        """One ONNX Runtime session per model file: rungs that differ only in internal size
        share it (a shallow copy with its own ``resolution``). Fewer sessions load faster and
        keep memory flat: each session holds its own arena and threads."""
        key = str(level.model)
        with lock:
            base = sessions.get(key)
        if base is None:
            base = Engine(level.model, resolution=level.resolution, threads=threads, provider=provider)
            with lock:
                base = sessions.setdefault(key, base)
        return base.at(resolution=level.resolution, **dict(level.engine_options))

    def temporal_factory(mode: str, value: float):
        return None if mode == "off" else make_temporal(mode, value)

    def ladder_for(path: Path) -> list[Level]:
        return build_ladder(path, resolution, temporal, strength)

    styles = [(name, resolve_model(name)) for name in key_styles(list_styles())] if with_styles else []
    if budget_ms <= 0:
        raise LivefilterError(f"--latency-budget must be positive, got {budget_ms:g}")
    return LiveStages(model, ladder_for=ladder_for, engine_factory=engine_factory,
                      temporal_factory=temporal_factory, fps=fps, quality=quality, budget=budget_ms / 1000,
                      styles=styles, style_name=style_name, clock=time.monotonic,
                      calibrate=quality == AUTO)
