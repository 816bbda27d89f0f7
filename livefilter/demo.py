"""`livefilter demo`: the main job on a fresh machine, with nothing beside the package.

Converts the packaged sample clip (a GRID corpus sentence, CC BY 4.0; see
livefilter/samples/README.md) to a file in the current folder, says where it is, and, when a
display exists, plays the sample through the filter side by side in the preview window.
The preview is a bonus: without a display (or if the window cannot open) the demo still
succeeds and says how to watch the file instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Mapping

from livefilter.errors import LivefilterError

SAMPLE_NAME = "grid_lrwp9a.mp4"
DEFAULT_OUTPUT = "livefilter-demo.mp4"


def sample_clip() -> Path:
    """The sample clip installed with the package (package-data, so a plain `pip install .` has it)."""
    path = Path(str(resources.files("livefilter") / "samples" / SAMPLE_NAME))
    if not path.is_file():
        raise LivefilterError(f"the sample clip is missing from this installation ({path}); "
                              f"reinstall livefilter, or convert your own clip: livefilter video IN.mp4 OUT.mp4")
    return path


def free_output(folder: Path, name: str = DEFAULT_OUTPUT) -> Path:
    """``folder/name``, or ``name-2``, ``name-3``, ... if taken: re-running the demo never fails
    and never replaces a file."""
    candidate = folder / name
    stem, suffix = candidate.stem, candidate.suffix
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def display_available(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """True when a preview window can be expected: always on Windows/macOS, else X11 or Wayland."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    """Convert the sample, report the result, then preview it live if a display exists."""
    from livefilter import cli
    from livefilter.quality import AUTO, DEFAULT_BUDGET_MS

    sample = sample_clip()
    if args.output:
        output = Path(args.output)
    else:
        output = free_output(Path.cwd())
    video_args = argparse.Namespace(**vars(args))
    video_args.input, video_args.output, video_args.no_audio = str(sample), str(output), False
    status = cli.cmd_video(video_args)
    if status:
        return status
    print(f"livefilter: the result is {output.resolve()} (the sample clip: {sample})", file=sys.stderr)
    if not args.preview:
        return 0
    if not display_available():
        print("livefilter: no display, so no preview window; play the result in any video player",
              file=sys.stderr)
        return 0
    print("livefilter: preview: the sample through the filter, original on the left "
          "(keys: s side by side, i FPS overlay, q or Esc to close)", file=sys.stderr)
    live_args = argparse.Namespace(**vars(args))
    live_args.source, live_args.loop, live_args.preview = str(sample), True, True
    live_args.virtual, live_args.record, live_args.duration = False, None, args.preview_seconds
    live_args.side_by_side, live_args.overlay, live_args.camera_size = True, False, None
    # the camera's own live options at their defaults: auto quality, mirrored preview
    live_args.quality, live_args.latency_budget, live_args.no_mirror = AUTO, DEFAULT_BUDGET_MS, False
    try:
        return cli.cmd_camera(live_args)
    except LivefilterError as exc:  # the file is written; a window that cannot open is no failure
        print(f"livefilter: no preview ({exc}); play the result in any video player", file=sys.stderr)
        return 0
