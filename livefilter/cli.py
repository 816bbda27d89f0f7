"""Command line: `livefilter demo | camera | video | image | serve | styles | devices | bench`.

Bad input of any kind ends in one line ``livefilter: error: <reason>`` and a non-zero exit;
tracebacks are for bugs only (set LIVEFILTER_DEBUG=1 to see them).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from livefilter import __version__
from livefilter.errors import LivefilterError
from livefilter.frames import Frame

log = logging.getLogger("livefilter")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
EXIT_INTERRUPTED = 130

# The examples that end each command's --help, all in one place (a new subcommand adds its own).
EXAMPLES = {
    "livefilter": """examples:
  livefilter demo                          convert the bundled sample clip, then preview it
  livefilter camera --virtual              webcam -> virtual camera for Zoom/Meet/Teams
  livefilter video in.mp4 out.mp4          convert a clip, audio kept

`livefilter COMMAND --help` shows each command's options.""",
    "demo": """examples:
  livefilter demo                          writes ./livefilter-demo.mp4 (-2, -3, ... if taken)
  livefilter demo out.mp4 --style shinkai  another style, another file
  livefilter demo --no-preview             only the file, no window""",
    "camera": """examples:
  livefilter camera                        webcam 0 in a preview window (s, i, q keys)
  livefilter camera --virtual              to the virtual camera, for Zoom/Meet/Teams
  livefilter camera --source clip.mp4 --loop   no webcam? a clip plays as the camera""",
    "video": """examples:
  livefilter video in.mp4 out.mp4
  livefilter video in.mov out.mp4 --style cute --overwrite
  livefilter video in.mp4 out.mkv --resolution 320   more detail, slower""",
    "image": """examples:
  livefilter image photo.jpg anime.png
  livefilter image photos/ anime/ --style shinkai     a folder into a folder
  livefilter image photo.jpg big.png --resolution 512  more detail, slower""",
    "serve": """examples:
  livefilter serve                         the web page on http://127.0.0.1:8000/
  livefilter serve --open --port 8080      and open it in the browser
  livefilter serve --host 0.0.0.0          reachable from the network (anyone there can use it)""",
    "devices": """examples:
  livefilter devices                       cameras, and whether a virtual camera can be made
  livefilter camera --source 1             then pick a camera by its index""",
    "styles": """examples:
  livefilter styles                        names for --style; the default is marked
  livefilter video in.mp4 out.mp4 --style cute_int8   then use one""",
    "bench": """examples:
  livefilter bench --quick                 a few seconds: is this machine fast enough?
  livefilter bench --json bench.json --plot bench.png
  livefilter bench --teacher T.onnx --skip live --skip convert --skip flicker""",
}


def _help(name: str) -> dict:
    """Keyword arguments that end a parser's --help with its examples, line breaks kept."""
    return {"epilog": EXAMPLES[name], "formatter_class": argparse.RawDescriptionHelpFormatter}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"livefilter: {record.levelname.lower()}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests and tqdm swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("livefilter")
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _common_options() -> argparse.ArgumentParser:
    from livefilter.engine import DEFAULT_RESOLUTION, DEFAULT_STYLE

    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("model and speed")
    group.add_argument("--style", default=DEFAULT_STYLE,
                       help=f"style name (see `livefilter styles`; default {DEFAULT_STYLE})")
    group.add_argument("--model", metavar="PATH", help="any generator .onnx instead of a style")
    group.add_argument("--resolution", type=_positive_int, default=None, metavar="N",
                       help=f"internal short side in pixels (default: the one the style was trained "
                            f"for, else {DEFAULT_RESOLUTION})")
    group.add_argument("--threads", type=_positive_int, default=None,
                       help="CPU threads for the model, in all (a conversion runs two frames at "
                            "once on half of them each)")
    group.add_argument("--provider", default="cpu",
                       help="onnxruntime provider: cpu, cuda, coreml, dml, ... (falls back to cpu)")
    from livefilter.temporal import DEFAULT_MODE, DEFAULT_STRENGTH, MODES

    group.add_argument("--temporal", choices=list(MODES), default=DEFAULT_MODE,
                       help=f"frame-to-frame smoothing against flicker (default {DEFAULT_MODE})")
    group.add_argument("--strength", type=float, default=DEFAULT_STRENGTH,
                       help=f"temporal smoothing strength in [0, 1) (default {DEFAULT_STRENGTH})")
    group.add_argument("-v", "--verbose", action="store_true", help="more messages")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livefilter",
                                     description="Live anime filter for webcams, clips and pictures.",
                                     **_help("livefilter"))
    parser.add_argument("--version", action="version", version=f"livefilter {__version__}")
    common = _common_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub, common)

    cam = sub.add_parser("camera", parents=[common], help="filter a webcam (or a file played live)",
                         epilog=EXAMPLES["camera"] + "\n\n" + _camera_keys(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cam.add_argument("--source", default="0",
                     help="camera index (0), device (/dev/video2) or a video file played at its own rate")
    cam.add_argument("--loop", action="store_true", help="repeat a file source forever")
    cam.add_argument("--preview", dest="preview", action="store_true", default=None,
                     help="show the preview window (default unless --virtual)")
    cam.add_argument("--no-preview", dest="preview", action="store_false", help="no window")
    cam.add_argument("--side-by-side", action="store_true", help="start the preview side by side (key s)")
    cam.add_argument("--overlay", action="store_true", help="start with the FPS/latency overlay (key i)")
    cam.add_argument("--virtual", action="store_true", help="send to a virtual camera (pyvirtualcam)")
    cam.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH",
                     help="virtual camera size (default 1280x720)")
    cam.add_argument("--fps", type=float, default=30.0, help="virtual camera frame rate (default 30)")
    cam.add_argument("--camera-size", type=_size, default=None, metavar="WxH",
                     help="resolution to ask the webcam for")
    cam.add_argument("--record", metavar="OUT", help="also record the filtered stream to a file")
    cam.add_argument("--overwrite", action="store_true", help="replace an existing --record file")
    cam.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="stop after this many seconds")
    _add_live_quality_options(cam)
    cam.set_defaults(func=cmd_camera)

    from livefilter.sinks.video_file import DEFAULT_X264_PRESET, X264_PRESETS

    vid = sub.add_parser("video", parents=[common], help="convert a video file, every frame, audio kept",
                         **_help("video"))
    vid.add_argument("input", help="input video")
    vid.add_argument("output", help="output video (.mp4, .mkv, .mov, .webm)")
    vid.add_argument("--overwrite", action="store_true", help="replace an existing output")
    vid.add_argument("--no-audio", action="store_true", help="leave the audio out")
    vid.add_argument("--preset", choices=X264_PRESETS, default=DEFAULT_X264_PRESET,
                     help=f"H.264 encoder speed (default {DEFAULT_X264_PRESET}: fastest; veryfast makes "
                          f"a file about 2.4x smaller for about 20%% more time)")
    vid.set_defaults(func=cmd_video)

    img = sub.add_parser("image", parents=[common], help="convert a picture or a folder of pictures",
                         **_help("image"))
    img.add_argument("input", help="input picture or folder")
    img.add_argument("output", help="output picture or folder")
    img.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    # No temporal default here: set_defaults(temporal=...) would change the --temporal action
    # shared by every subcommand through `common`. cmd_image turns smoothing off itself.
    img.set_defaults(func=cmd_image)

    _add_serve_parser(sub, common)

    sty = sub.add_parser("styles", help="list the installed styles", **_help("styles"))
    sty.set_defaults(func=cmd_styles)

    dev = sub.add_parser("devices", help="list cameras and the virtual-camera backend's state",
                         **_help("devices"))
    dev.set_defaults(func=cmd_devices)

    bench = sub.add_parser("bench", parents=[common], help="measure speed, latency and flicker",
                           **_help("bench"))
    try:
        from livefilter import bench as bench_module

        add = getattr(bench_module, "add_arguments", None)
        run = getattr(bench_module, "run", None)
    except ImportError:
        add = run = None
    if add is not None and run is not None:
        add(bench)
        bench.set_defaults(func=lambda args: run(args))
    else:
        bench.set_defaults(func=lambda args: _unavailable("bench"))
    return parser


def _add_serve_parser(sub, common: argparse.ArgumentParser) -> None:
    """`livefilter serve`: the upload page and the live camera page (livefilter.web)."""
    srv = sub.add_parser("serve", parents=[common], help="web page: uploads and the browser's camera",
                         **_help("serve"))
    group = srv.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    group.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    group.add_argument("--open", action="store_true", help="open the page in the browser")
    group.add_argument("--max-upload-mb", type=float, default=2048, metavar="MB",
                       help="largest upload (default 2048)")
    group.add_argument("--workers", type=_positive_int, default=1,
                       help="conversions running at once (default 1)")
    group.add_argument("--max-queue", type=_positive_int, default=16, metavar="N",
                       help="uploads waiting at most; more get HTTP 429 (default 16)")
    group.add_argument("--cache-dir", metavar="DIR", help="result cache (default ~/.cache/livefilter/web)")
    group.add_argument("--cache-mb", type=float, default=1024, metavar="MB",
                       help="result cache size cap, least recently used evicted (default 1024; 0 off)")
    group.add_argument("--styles-dir", metavar="DIR", help="offer the .onnx files in DIR as the styles")
    group.add_argument("--allow-host", action="append", metavar="NAME",
                       help="also accept this Host header name (e.g. a LAN name); repeatable")
    srv.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from livefilter.web.server import serve

    return serve(args)


def _camera_keys() -> str:
    """The epilog of `livefilter camera --help`: the preview's keys, with this install's styles."""
    from livefilter.engine import list_styles
    from livefilter.quality import key_styles

    styles = key_styles(list_styles())
    mapping = ", ".join(f"{n} {name}" for n, name in enumerate(styles, start=1)) or "no styles installed"
    return CAMERA_KEYS.replace("{styles}", mapping)


CAMERA_KEYS = """keys in the preview window:
  1-9      switch style live: {styles}
  Space    pause the filter: the original picture passes through
  s        original | filtered side by side
  i        fps / latency / quality overlay
  h        show these keys in the window
  q, Esc   quit
The preview is mirrored (--no-mirror to turn it off); the virtual camera and --record never are:
call apps mirror your own view themselves."""


def _add_live_quality_options(parser: argparse.ArgumentParser) -> None:
    """--quality, --latency-budget and --no-mirror (camera; bench adds the first two itself)."""
    from livefilter.quality import AUTO, DEFAULT_BUDGET_MS

    group = parser.add_argument_group("adaptive quality and view")
    group.add_argument("--quality", default=AUTO, metavar="LEVEL",
                       help="auto (default: step down under load, up when there is room) or a fixed "
                            "level: hd, int8 (plain styles), r192, r160, ema")
    group.add_argument("--latency-budget", type=float, default=DEFAULT_BUDGET_MS, metavar="MS",
                       help=f"p95 capture-to-output latency auto quality aims at (default {DEFAULT_BUDGET_MS:g})")
    group.add_argument("--no-mirror", action="store_true",
                       help="do not mirror the preview (virtual camera and --record are never mirrored)")


def live_stages(args: argparse.Namespace, fps: float):
    """The camera's per-frame stages: engine rung chosen by auto quality (or pinned), temporal."""
    from livefilter.engine import resolve_model
    from livefilter.quality import make_live_stages

    if not 0.0 <= args.strength < 1.0:
        raise LivefilterError(f"temporal strength must be in [0, 1), got {args.strength:g}")
    model = resolve_model(args.model if args.model else args.style)
    stages = make_live_stages(model, resolution=args.resolution, temporal=args.temporal,
                              strength=args.strength, fps=fps, quality=args.quality,
                              budget_ms=args.latency_budget, threads=args.threads, provider=args.provider,
                              style_name=None if args.model else args.style)
    log.debug("quality ladder: %s", "; ".join(level.describe() for level in stages.ladder))
    return stages


def _add_demo(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    demo = sub.add_parser("demo", parents=[common], help="convert the bundled sample clip, then preview it",
                          description="Converts a 3-second sample clip that ships with livefilter (GRID "
                                      "corpus, CC BY 4.0) and, if a display exists, plays it through the "
                                      "filter in the preview window.", **_help("demo"))
    demo.add_argument("output", nargs="?", default=None,
                      help="where to write the result (default ./livefilter-demo.mp4, never replaced)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    demo.add_argument("--no-preview", dest="preview", action="store_false", help="no preview window")
    demo.add_argument("--preview-seconds", type=float, default=None, metavar="SECONDS",
                      help="close the preview after this long (default: when you press q)")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from livefilter import demo

    return demo.run(args)


def _unavailable(what: str) -> int:
    raise LivefilterError(f"`livefilter {what}` is not available in this build")


# --- shared helpers ------------------------------------------------------------------------
def conversion_workers(threads: int | None) -> tuple[int, int]:
    """(frames at once, threads each) for a file conversion using ``threads`` CPU threads in all.

    Two frames on one thread each beat one frame on two threads for a small model: both cores
    stay busy while the other stages run (livefilter/pipeline.py `_InOrder`).
    """
    if threads:
        total = threads
    elif hasattr(os, "sched_getaffinity"):  # the cores this process may use (Linux)
        total = len(os.sched_getaffinity(0))
    else:
        total = os.cpu_count() or 1
    workers = 2 if total >= 2 else 1
    return workers, total // workers


def load_engine(args: argparse.Namespace, threads: int | None = None):
    from livefilter.engine import Engine, model_resolution, preferred_file, resolve_model

    # A style runs from its preferred file (the HD int8 one where it ships); --model is taken as is.
    model = resolve_model(args.model) if args.model else preferred_file(resolve_model(args.style))
    engine = Engine(model, resolution=args.resolution or model_resolution(model),
                    threads=threads or args.threads, provider=args.provider)
    log.debug("model %s", engine.describe())
    return engine


def make_stages(engine, args: argparse.Namespace, i420: bool = False
                ) -> tuple[Callable[[Frame], Frame], Callable[[Frame], Frame] | None]:
    """The pipeline's ``process`` and ``post`` stages for the temporal options in ``args``;
    ``i420`` when the only sink is an encoder that takes its layout."""
    temporal = None
    if getattr(args, "temporal", "off") != "off":
        from livefilter.temporal import make_temporal

        try:
            temporal = make_temporal(args.temporal, args.strength)
        except ValueError as exc:
            raise LivefilterError(str(exc)) from None
    from livefilter.pipeline import stages

    return stages(engine, temporal, i420)


class _GracefulStop:
    """First Ctrl-C (or SIGTERM) asks the pipeline to stop and finish the file; a second exits at once."""

    def __init__(self, stop: threading.Event, message: str,
                 on_quit: Callable[[], str | None] | None = None) -> None:
        self.stop, self.message, self.on_quit = stop, message, on_quit
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        # Count presses ourselves: the pipeline sets ``stop`` too when the source ends, and a
        # single Ctrl-C while the finished file is being written must not quit at once.
        if self.signal_name is not None:
            note = None
            if self.on_quit is not None:
                try:
                    note = self.on_quit()
                except Exception:  # quitting must not fail
                    pass
            print(f"\nlivefilter: quitting at once{'; ' + note if note else ''}", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        self.signal_name = signal.Signals(signum).name
        self.stop.set()
        print(f"\nlivefilter: {self.message} (press Ctrl-C again to quit at once)", file=sys.stderr,
              flush=True)

    def __enter__(self) -> "_GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _signal_exit(guard: _GracefulStop) -> int:
    """Exit status after a stop: 130 for Ctrl-C, 143 for SIGTERM, 0 for a normal end."""
    return {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": 143}.get(guard.signal_name or "", 0)


# --- commands ------------------------------------------------------------------------------
def cmd_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from livefilter.capture import FileSource
    from livefilter.pipeline import run
    from livefilter.sinks.video_file import VideoFileSink, check_output

    src_path, out_path = Path(args.input), Path(args.output)
    source = FileSource(src_path)
    try:
        check_output(out_path, [src_path], args.overwrite)
        workers, threads = conversion_workers(args.threads)
        engine = load_engine(args, threads)
        process, post = make_stages(engine, args, i420=VideoFileSink.takes_i420)
        sink = VideoFileSink(out_path, template=src_path, fps=source.fps, size=source.size,
                             overwrite=args.overwrite, audio=not args.no_audio,
                             preset=getattr(args, "preset", None))
    except BaseException:
        source.close()
        raise
    total = source.frame_count
    stop = threading.Event()
    bar = tqdm(total=total, unit="frame", desc=src_path.name, dynamic_ncols=True, disable=None,
               leave=False)
    try:
        def salvage() -> str | None:
            kept = sink.salvage()
            return f"what was written so far is in {kept}" if kept else None

        with _GracefulStop(stop, "stopping: finishing the file with what is done", salvage) as guard:
            stats = run(source, process, [sink], live=False, queue_size=4, stop_event=stop,
                        progress=lambda _frame: bar.update(1), post=post, workers=workers)
    finally:
        bar.close()
    if source.corrupt_packets:
        log.warning("%d corrupt video packets were skipped", source.corrupt_packets)
    done = stats.frames_written
    if total and not stats.interrupted and done + max(1, total // 100) < total:
        # Matroska and MPEG-TS resync silently over damage, and a cut file just ends early:
        # the header's frame count is the only hint the user would otherwise never get.
        log.warning("only %d of the %d frames the input announces could be read: "
                    "truncated or damaged input?", done, total)
    if stats.interrupted:
        of = f" of {total}" if total else ""
        print(f"livefilter: interrupted at frame {done}{of}; {out_path} holds the {done} frames "
              f"converted so far" + ("" if args.no_audio else " with their audio"), file=sys.stderr)
        return _signal_exit(guard) or EXIT_INTERRUPTED
    fps = done / stats.elapsed if stats.elapsed else 0.0
    print(f"livefilter: wrote {out_path}: {done} frames in {stats.elapsed:.1f} s ({fps:.1f} fps)",
          file=sys.stderr)
    return 0


def _image_jobs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise LivefilterError(f"input is a folder, so the output must be a folder too: {dst}")
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise LivefilterError(f"no pictures ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {src}")
        return [(p, dst / p.name) for p in files]
    if not src.exists():
        raise LivefilterError(f"input not found: {src}")
    if not src.is_file():  # reading a pipe with no writer would block forever
        raise LivefilterError(f"input is not a regular file (pipe or device): {src}")
    if dst.is_dir():
        return [(src, dst / src.name)]
    return [(src, dst)]


def _read_image(path: Path):
    import cv2
    import numpy as np

    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as exc:
        raise LivefilterError(f"cannot read {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise LivefilterError(f"cannot read {path}: not a picture OpenCV can decode")
    return image


def _write_image(path: Path, image) -> None:
    import cv2

    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise LivefilterError(f"unsupported output extension '{path.suffix}' for {path} "
                              f"(use {', '.join(sorted(IMAGE_EXTENSIONS))})")
    ok, data = cv2.imencode(ext, image)
    if not ok:
        raise LivefilterError(f"cannot encode {path}")
    tmp = path.with_name(f".{path.name}.livefilter-partial")
    try:
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LivefilterError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_image(args: argparse.Namespace) -> int:
    from livefilter.sinks.video_file import same_file

    src, dst = Path(args.input), Path(args.output)
    jobs = _image_jobs(src, dst)
    for inp, out in jobs:
        if same_file(inp, out):
            raise LivefilterError(f"output is the same file as the input: {out}")
        if out.exists() and not args.overwrite:
            raise LivefilterError(f"output already exists: {out} (use --overwrite to replace it)")
        if out.suffix.lower() not in IMAGE_EXTENSIONS:
            raise LivefilterError(f"unsupported output extension '{out.suffix}' for {out} "
                                  f"(use {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    elif not dst.parent.is_dir() and not dst.is_dir():
        raise LivefilterError(f"output folder does not exist: {dst.parent}")
    args.temporal = "off"  # a still has no previous frame to smooth against
    engine = load_engine(args)
    started = time.monotonic()
    for inp, out in jobs:
        _write_image(out, engine(_read_image(inp)))
    if len(jobs) > 1:
        print(f"livefilter: wrote {len(jobs)} pictures to {dst} in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
    return 0


def open_live_source(args: argparse.Namespace):
    from livefilter.capture import CameraSource, PacedFileSource

    spec = str(args.source)
    if spec.isdigit() or spec.startswith("/dev/"):
        return CameraSource(spec, size=args.camera_size)
    path = Path(spec)
    if not path.exists():
        raise LivefilterError(f"--source {spec}: no such file, and not a camera index or /dev/video path")
    return PacedFileSource(path, loop=args.loop)


def cmd_camera(args: argparse.Namespace) -> int:
    from livefilter.pipeline import run

    preview = args.preview if args.preview is not None else not args.virtual
    if args.record:
        from livefilter.sinks.video_file import check_output

        check_output(Path(args.record), [Path(args.source)], args.overwrite)
    source = open_live_source(args)
    sinks: list = []
    try:
        stages = live_stages(args, source.fps)
        process, post = stages.process, stages.post
        if preview:
            from livefilter.sinks.preview import PreviewSink

            sinks.append(PreviewSink(side_by_side=args.side_by_side, overlay=args.overlay,
                                     mirror=not args.no_mirror, controls=stages))
        if args.virtual:
            from livefilter.sinks.virtualcam import VirtualCameraSink

            cam = VirtualCameraSink(width=args.size[0], height=args.size[1], fps=args.fps)
            print(f"livefilter: virtual camera on {cam.device}", file=sys.stderr)
            sinks.append(cam)
        if args.record:
            from livefilter.sinks.video_file import VideoFileSink

            sinks.append(VideoFileSink(args.record, template=None, fps=source.fps, size=source.size,
                                       overwrite=args.overwrite))
        sinks.append(stages.meter)  # last: it measures capture -> every sink done
    except BaseException:
        for sink in sinks:
            sink.close()
        source.close()
        raise
    stop = threading.Event()
    timer = None
    if args.duration:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()
    try:
        def salvage() -> str | None:
            kept = [str(path) for sink in sinks if hasattr(sink, "salvage") and (path := sink.salvage())]
            return f"the recording so far is in {', '.join(kept)}" if kept else None

        with _GracefulStop(stop, "stopping", salvage) as guard:
            stats = run(source, process, sinks, live=True, queue_size=1, stop_event=stop, post=post)
    finally:
        if timer is not None:
            timer.cancel()
    p50, p95 = stats.latency_percentile(50), stats.latency_percentile(95)
    latency = f", latency p50 {p50 * 1000:.0f} ms p95 {p95 * 1000:.0f} ms" if p50 is not None else ""
    print(f"livefilter: {stats.frames_written} frames shown, {stats.frames_dropped} dropped, "
          f"{stats.fps:.1f} fps{latency}", file=sys.stderr)
    if stages.controller is not None:
        used = ", ".join(dict.fromkeys(name for _, name in stages.trace))
        print(f"livefilter: quality auto: {len(stages.trace) - 1} level changes (levels used: {used})",
              file=sys.stderr)
    return _signal_exit(guard)


def cmd_devices(args: argparse.Namespace) -> int:
    from livefilter.devices import format_report, gather

    print(format_report(gather()))
    return 0


def cmd_styles(args: argparse.Namespace) -> int:
    from livefilter.engine import DEFAULT_STYLE, list_styles, resolve_model

    styles = list_styles()
    if not styles:
        print("no styles installed; use --model PATH.onnx")
        return 1
    for name in styles:
        mark = " (default)" if name == DEFAULT_STYLE else ""
        print(f"{name}{mark}\t{resolve_model(name)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LivefilterError as exc:
        print(f"livefilter: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("livefilter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("LIVEFILTER_DEBUG"):
            raise
        text = str(exc).strip().splitlines()
        print(f"livefilter: error: {type(exc).__name__}: {text[0] if text else ''} "
              f"(set LIVEFILTER_DEBUG=1 for details)", file=sys.stderr)
        return 1
