"""The styles a server offers, each an `Engine` loaded once on first use and shared.

An onnxruntime session may be run from several threads at once, so the job worker and every
live connection share one engine per style. The cache key includes a hash of the model file,
so a retrained style never returns a stale cached result.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from livefilter.errors import LivefilterError


@dataclass(frozen=True)
class EngineSettings:
    """The engine options the CLI takes (`--resolution`, `--threads`, `--provider`)."""

    resolution: int | None = None  # None: each style at the short side it was trained for
    threads: int | None = None
    provider: str = "cpu"


class StyleSet:
    """Name -> model file, with lazily loaded engines and model digests."""

    def __init__(self, models: dict[str, Path], default: str, settings: EngineSettings) -> None:
        if not models:
            raise LivefilterError("no styles installed; use --model PATH.onnx or --styles-dir DIR")
        if default not in models:
            raise LivefilterError(f"unknown style '{default}' (available: {', '.join(sorted(models))})")
        self.models, self.default, self.settings = dict(models), default, settings
        self._engines: dict[str, object] = {}
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def discover(cls, style: str, model: str | None, styles_dir: str | None,
                 settings: EngineSettings) -> "StyleSet":
        """Installed styles (or those in ``styles_dir``), plus ``model`` as its own style.

        ``style`` names the default; ``model`` becomes the default when given, as in the CLI.
        """
        from livefilter.engine import list_styles, resolve_model

        models: dict[str, Path] = {}
        if styles_dir:
            folder = Path(styles_dir)
            if not folder.is_dir():
                raise LivefilterError(f"--styles-dir {folder}: not a folder")
            models = {p.stem: p for p in sorted(folder.glob("*.onnx"))}
            if not models:
                raise LivefilterError(f"--styles-dir {folder}: no .onnx files in it")
        else:
            models = {name: resolve_model(name) for name in list_styles()}
        default = style
        if model:
            path = resolve_model(model)
            models[path.stem] = path
            default = path.stem
        elif default not in models and models:
            if styles_dir:  # the CLI's default style need not be in a test folder
                default = sorted(models)[0]
        return cls(models, default, settings)

    def names(self) -> list[str]:
        return sorted(self.models)

    def check(self, name: str | None) -> str:
        """The style to use for ``name`` (None: the default), or a 422-worthy error."""
        if not name:
            return self.default
        if name not in self.models:
            raise KeyError(name)
        return name

    def engine(self, name: str):
        """The loaded engine for ``name`` (loads it on first use; thread-safe)."""
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                from livefilter.engine import Engine, model_resolution, preferred_file

                s = self.settings
                path = preferred_file(self.models[name])
                engine = Engine(path, resolution=s.resolution or model_resolution(path), threads=s.threads,
                                provider=s.provider)
                self._engines[name] = engine
            return engine

    def engine_at(self, path: Path, resolution: int, options: tuple = ()):
        """An engine for one quality level (`livefilter.quality.Level`): the model file's session,
        loaded once and shared, at that level's internal size and options."""
        from livefilter.engine import Engine

        key = f"file:{path}"
        with self._lock:
            base = self._engines.get(key)
            if base is None:
                s = self.settings
                base = Engine(path, resolution=resolution, threads=s.threads, provider=s.provider)
                self._engines[key] = base
        return base.at(resolution=resolution, **dict(options))

    def digest(self, name: str) -> str:
        """SHA-256 of the model file (computed once): part of every cache key."""
        with self._lock:
            value = self._digests.get(name)
            if value is None:
                h = hashlib.sha256()
                with open(self.models[name], "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        h.update(block)
                value = self._digests[name] = h.hexdigest()
            return value
