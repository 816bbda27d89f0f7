"""Break the code on purpose, one semantic bug at a time, and check that the tests notice.

Each mutation is a small source patch (file, old text, new text) with the tests that should
catch it. For every mutation the repository is copied to a temporary folder (without .git and
virtual environments), the patch is applied there, and only those tests run against the copy.
A mutation is "caught" when the tests fail, "survived" when they pass. The script prints a
Markdown table and exits non-zero if any mutation survived or could not be applied (its old
text is gone: the code moved on, so the mutation must be updated, not silently skipped).

    python scripts/mutation_check.py              # all of them
    python scripts/mutation_check.py --only 3 7   # by number or name
    python scripts/mutation_check.py --list

Adding one is adding an entry to MUTATIONS (e.g. for the HD path, the web server or adaptive
quality once they are on this branch).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", "build", "dist", "*.egg-info"}


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files
    why: str = ""


MUTATIONS: list[Mutation] = [
    # --- the eight of issue 23 (six survived the suite, two were caught only by accident) ---
    Mutation("audio delayed 0.5 s, same bytes", "livefilter/sinks/video_file.py",
             "            packet.stream = self._audio_out\n",
             "            packet.stream = self._audio_out\n"
             "            shift = round(0.5 / packet.time_base)\n"
             "            packet.pts, packet.dts = packet.pts + shift, packet.dts + shift\n",
             ("tests/test_av_sync.py::test_audio_offset_kept[late_67ms-.mkv]",
              "tests/test_av_sync.py::test_audio_offset_kept[early_48ms-.mp4]")),
    Mutation("CLI ignores --temporal (default smoothing never applied)", "livefilter/cli.py",
             '    if getattr(args, "temporal", "off") != "off":',
             "    if False:",
             ("tests/test_cli_live.py::test_video_writes_the_engines_smoothed_output",)),
    Mutation("live queue drops the newest frame", "livefilter/pipeline.py",
             "                except queue.Full:\n                    try:\n",
             "                except queue.Full:\n"
             "                    if isinstance(item, Frame):\n"
             "                        with self.lock:\n"
             "                            self.stats.frames_dropped += 1\n"
             "                        return True\n"
             "                    try:\n",
             ("tests/test_cli_live.py::test_live_queue_drops_the_oldest_frame",
              "tests/test_live.py::test_slow_model_drops_frames_and_latency_stays_bounded")),
    Mutation("live queue of 10 frames", "livefilter/cli.py",
             "live=True, queue_size=1, stop_event=stop, post=post)",
             "live=True, queue_size=10, stop_event=stop, post=post)",
             ("tests/test_cli_live.py::test_live_latency_is_one_model_run_plus_one_frame",)),
    Mutation("video runs the engine but writes the unfiltered input", "livefilter/sinks/video_file.py",
             "        image = frame.image\n        if image.shape[1::-1] != self._size:",
             "        image = frame.original if frame.original is not None and self.template is not None "
             "else frame.image\n        if image.shape[1::-1] != self._size:",
             ("tests/test_cli_live.py::test_video_writes_the_engines_smoothed_output",)),
    Mutation("camera --record writes the unfiltered picture", "livefilter/sinks/video_file.py",
             "        image = frame.image if i420 else frame.bgr()\n",
             "        image = (frame.original if frame.original is not None and self.template is None "
             "else frame.image if i420 else frame.bgr())\n",
             ("tests/test_cli_live.py::test_camera_virtual_and_record_send_every_shown_frame_filtered",)),
    Mutation("engine skipped in video", "livefilter/cli.py",
             "        process, post = make_stages(engine, args, i420=VideoFileSink.takes_i420)\n",
             "        process, post = make_stages(lambda image: image, args, i420=VideoFileSink.takes_i420)\n",
             ("tests/test_cli_live.py::test_video_writes_the_engines_smoothed_output",)),
    Mutation("virtual camera sends every other frame", "livefilter/sinks/virtualcam.py",
             "            self._pending = self._latest = image\n            self._cond.notify_all()\n\n    def write",
             "            self._odd = not getattr(self, '_odd', False)\n"
             "            if self._odd:\n                self._pending = self._latest = image\n"
             "            self._cond.notify_all()\n\n    def write",
             ("tests/test_cli_live.py::test_camera_virtual_and_record_send_every_shown_frame_filtered",)),
    # --- ten more on the core modules -----------------------------------------------------------
    Mutation("engine feeds BGR to an RGB model", "livefilter/engine.py",
             "        y = self._infer(self._to_input(small))",
             "        y = self._infer(self._to_input(small[:, :, ::-1].copy()))",
             ("tests/test_engine.py::test_model_sees_rgb_and_output_is_read_as_rgb",)),
    Mutation("engine squashes instead of keeping the aspect ratio", "livefilter/engine.py",
             "        iw, ih = self.internal_size(width, height)\n        if (iw, ih) == (width, height):",
             "        iw, ih = self.internal_size(width, height)\n        iw = ih\n        if (iw, ih) == (width, height):",
             ("tests/test_engine.py::test_aspect_ratio_kept_at_internal_size",
              "tests/test_engine.py::test_shapes_stay_where_they_were",
              "tests/test_engine.py::test_model_is_fed_the_picture_at_its_own_aspect_ratio")),
    Mutation("file capture renumbers timestamps from the frame rate (VFR lost)", "livefilter/capture.py",
             "        pts = frame.pts if frame.pts is not None else frame.dts\n        if pts is None:",
             "        pts = None\n        if pts is None:",
             ("tests/test_video.py::test_variable_frame_rate_survives",)),
    Mutation("capture ignores rotation", "livefilter/capture.py",
             "def _upright(image: np.ndarray, rotation: int) -> np.ndarray:\n",
             "def _upright(image: np.ndarray, rotation: int) -> np.ndarray:\n    return image\n",
             ("tests/test_capture.py::test_rotation_turns_picture_upright",)),
    Mutation("file runs drop frames like live ones", "livefilter/pipeline.py",
             "    capture = _Capture(source, frames, live, stop, stats)",
             "    capture = _Capture(source, frames, True, stop, stats)",
             ("tests/test_pipeline.py::test_file_mode_keeps_every_frame_in_order",)),
    Mutation("temporal stage skipped in file runs", "livefilter/pipeline.py",
             "                _write(self.post(item) if self.post is not None else item, self.sinks, self.stats,",
             "                _write(item, self.sinks, self.stats,",
             ("tests/test_pipeline.py::test_post_stage_sees_every_processed_frame_in_order_before_the_sinks",
              "tests/test_cli_live.py::test_video_writes_the_engines_smoothed_output")),
    Mutation("EMA weights the new frame by the strength", "livefilter/temporal.py",
             "        cv2.accumulateWeighted(filtered_bgr, self._state, 1.0 - self.strength)",
             "        cv2.accumulateWeighted(filtered_bgr, self._state, self.strength)",
             ("tests/test_temporal.py", "tests/test_cli_live.py::test_video_writes_the_engines_smoothed_output")),
    Mutation("video sink renumbers frames (timestamps lost)", "livefilter/sinks/video_file.py",
             "        if frame.pts is not None and frame.time_base is not None:\n            pts = round(",
             "        if False:\n            pts = round(",
             ("tests/test_video.py::test_variable_frame_rate_survives",)),
    Mutation("video sink drops the audio when the container needs a transcode", "livefilter/sinks/video_file.py",
             "            encoder = next((c for c in AUDIO_ENCODERS.get(self.format, AUDIO_ENCODERS[\"default\"])\n"
             "                            if _available(c)), None)",
             "            encoder = None",
             ("tests/test_video.py::test_containers_from_extension",)),
    Mutation("CLI overwrites an existing output without --overwrite", "livefilter/sinks/video_file.py",
             "    if path.exists() and not overwrite:",
             "    if False:",
             ("tests/test_video.py::test_refuses_existing_output_unless_overwrite",)),
    Mutation("CLI ignores --no-audio", "livefilter/cli.py",
             "overwrite=args.overwrite, audio=not args.no_audio)",
             "overwrite=args.overwrite, audio=True)",
             ("tests/test_video.py::test_no_audio_option",)),
    Mutation("preview puts the filtered picture on the left", "livefilter/sinks/preview.py",
             "        image = np.hstack([original, image])",
             "        image = np.hstack([image, original])",
             ("tests/test_preview.py::test_compose_side_by_side_puts_original_left_filtered_right",)),
    # --- features landed later: HD path, web page, adaptive quality ---------------------------
    Mutation("HD path skips the guided full-resolution step", "livefilter/engine.py",
             "        if not self.guided:\n", "        if True:\n",
             ("tests/test_hd.py::test_engine_runs_an_hd_file_at_the_frame_size",
              "tests/test_hd.py::test_engine_hd_output_is_the_torch_model")),
    Mutation("HD gains applied without the 1/64 scale", "livefilter/upsample.py",
             "    scale = 1.0 / GAIN_STEPS\n", "    scale = 1.0\n",
             ("tests/test_hd.py::test_runtime_step_matches_training_formula",)),
    Mutation("web server accepts any Host header", "livefilter/web/app.py",
             "        if host_name(host) not in self.allowed:\n", "        if False:\n",
             ("tests/test_web.py::test_host_allowlist_stops_dns_rebinding", "tests/test_web.py::test_live_bad_host_is_refused")),
    Mutation("web WebSocket accepts any Origin", "livefilter/web/app.py",
             "            elif unsafe and origin is not None and origin.lower() != f\"http://{host}\".lower():\n",
             "            elif False:\n",
             ("tests/test_web.py::test_live_origin_must_be_the_page_own",)),
    Mutation("adaptive quality changes level with no spacing", "livefilter/quality.py",
             "        if now - self._last_change < self.min_interval:", "        if False:",
             ("tests/test_quality.py",)),

]


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")}


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.file
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        raise ValueError(f"old text found {count} times in {mutation.file}")
    path.write_text(text.replace(mutation.old, mutation.new))


def run_one(mutation: Mutation, timeout: float) -> tuple[str, float, str]:
    """('caught' | 'survived' | 'not applied' | 'timeout', seconds, detail)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="livefilter-mutant-") as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(REPO, root, ignore=_ignore)
        # ../shared beside the copy, so the tests that use the shared clips still find them.
        shared = REPO.parent / "shared"
        if shared.is_dir():
            (Path(tmp) / "shared").symlink_to(shared)
        try:
            apply(mutation, root)
        except ValueError as exc:
            return "not applied", time.monotonic() - started, str(exc)
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("CI", None)  # a missing tool is not what this run is about
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutation.tests]
        try:
            done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            # A hang is a failure the user would notice too: count it as caught, but say so.
            return "caught (timeout)", time.monotonic() - started, f"no result within {timeout:.0f} s"
        last = (done.stdout.strip().splitlines() or [""])[-1]
        if done.returncode == 0:
            return "survived", time.monotonic() - started, last
        if done.returncode == 1:
            return "caught", time.monotonic() - started, last
        return f"error ({done.returncode})", time.monotonic() - started, last or done.stderr[-300:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutation numbers (1-based) or name fragments")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutation")
    args = parser.parse_args()
    chosen = list(enumerate(MUTATIONS, 1))
    if args.only:
        chosen = [(i, m) for i, m in chosen
                  if str(i) in args.only
                  or any(not o.isdigit() and o.lower() in m.name.lower() for o in args.only)]
    if args.list:
        for i, m in chosen:
            print(f"{i:2d}. {m.name} ({m.file}; {', '.join(m.tests)})")
        return 0
    print("| # | mutation | file | result | s | tests' last line |")
    print("|---|---|---|---|---|---|")
    bad = 0
    started = time.monotonic()
    for i, m in chosen:
        result, seconds, detail = run_one(m, args.timeout)
        bad += not result.startswith("caught")
        print(f"| {i} | {m.name} | {m.file} | {result} | {seconds:.0f} | {detail} |", flush=True)
    caught = len(chosen) - bad
    print(f"\n{caught} of {len(chosen)} mutations caught, {bad} survived or not applied "
          f"({time.monotonic() - started:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
