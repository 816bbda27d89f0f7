"""`livefilter serve`: bind, print the URL, run uvicorn until Ctrl-C.

The socket is bound here, before uvicorn starts, so a taken port is one clear error line and
``--port 0`` (any free port, used by the tests) prints the port actually bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from livefilter.errors import LivefilterError

log = logging.getLogger("livefilter")

WILDCARDS = ("0.0.0.0", "::", "")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livefilter" / "web"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise LivefilterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _own_names() -> set[str]:
    """This machine's name and addresses: what network clients put in Host with --host 0.0.0.0."""
    names = {socket.gethostname().lower()}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            address = info[4][0]
            names.add(f"[{address}]" if ":" in address else address)
    except OSError:
        pass
    try:  # the address of the default route's interface (often missing from the name lookup)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))  # UDP connect sends nothing
            names.add(probe.getsockname()[0])
    except OSError:
        pass
    return names


def serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from livefilter.web.app import LIVE_MAX_MESSAGE, ServerConfig, wrap
    except ImportError as exc:
        raise LivefilterError(f"`livefilter serve` needs FastAPI and uvicorn ({exc.name} is missing): "
                              f"pip install livefilter") from None
    from livefilter.web.media import Limits
    from livefilter.web.styles import EngineSettings, StyleSet

    if args.max_upload_mb <= 0 or args.cache_mb < 0:
        raise LivefilterError("--max-upload-mb must be positive and --cache-mb not negative")
    styles = StyleSet.discover(args.style, args.model, args.styles_dir,
                               EngineSettings(args.resolution, args.threads, args.provider))
    if args.temporal != "off":
        from livefilter.temporal import make_temporal

        try:
            make_temporal(args.temporal, args.strength)
        except ValueError as exc:
            raise LivefilterError(str(exc)) from None
    allowed = set(args.allow_host or [])
    if args.host in WILDCARDS:
        allowed |= _own_names()
        log.warning("listening on all interfaces (%s): anyone on the network can use this machine's "
                    "CPU and see what is converted", args.host or "0.0.0.0")
    config = ServerConfig(host=args.host, port=args.port,
                          max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                          workers=args.workers, max_queue=args.max_queue,
                          cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
                          cache_bytes=int(args.cache_mb * 1024 * 1024), limits=Limits(),
                          temporal=args.temporal, strength=args.strength, allowed_hosts=allowed)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if args.host in WILDCARDS else args.host
    url = f"http://{f'[{shown}]' if ':' in shown and not shown.startswith('[') else shown}:{port}/"
    try:
        app = wrap(config, styles)
    except OSError as exc:
        sock.close()
        raise LivefilterError(f"cannot use the cache folder {config.cache_dir}: {exc.strerror or exc}") from None
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="debug" if args.verbose else "warning", ws_max_size=LIVE_MAX_MESSAGE + 1024,
        timeout_graceful_shutdown=3, lifespan="on", access_log=bool(args.verbose), ws="websockets-sansio"))
    print(f"livefilter: serving on {url} (upload page) and {url}live (live camera); "
          f"styles: {', '.join(styles.names())}; Ctrl-C stops", file=sys.stderr, flush=True)
    if args.open:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("livefilter: server stopped", file=sys.stderr, flush=True)
    return 0
