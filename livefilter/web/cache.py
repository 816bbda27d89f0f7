"""On-disk result cache: content hash -> finished result file, with a size cap and LRU eviction.

Entries are plain files ``<key><ext>`` in one folder; their modification time is the last use
(touched on every hit), so the least recently used order survives a restart with no index
file to keep consistent. A result enters the cache only once complete (written beside it and
renamed), so a half file is never served.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

KEY_CHARS = set("0123456789abcdef")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(content_digest: str, *settings: object) -> str:
    """One key for the input bytes and every setting that changes the result."""
    text = "\n".join([content_digest, *(repr(s) for s in settings)])
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """Thread-safe; ``max_bytes`` 0 disables caching."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for stale in self.folder.glob(".*.partial"):
            stale.unlink(missing_ok=True)

    def _entries(self) -> list[Path]:
        return [p for p in self.folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and set(p.stem) <= KEY_CHARS]

    def get(self, key: str) -> Path | None:
        """The cached file for ``key`` (marked as just used), or None."""
        with self._lock:
            for path in self.folder.glob(f"{key}.*"):
                try:
                    os.utime(path)
                except OSError:
                    return None
                return path
        return None

    def put(self, key: str, result: Path) -> Path | None:
        """Copy a finished ``result`` in; evict the least recently used beyond the cap."""
        size = result.stat().st_size
        if self.max_bytes <= 0 or size > self.max_bytes:
            return None
        target = self.folder / f"{key}{result.suffix}"
        tmp = self.folder / f".{key}{result.suffix}.partial"
        with self._lock:
            try:
                os.link(result, tmp)  # same file system: no copy
            except OSError:
                shutil.copyfile(result, tmp)
            os.replace(tmp, target)
            os.utime(target)  # a hard link keeps the result's old time: mark it as just used
            self._evict()
        return target

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        while entries and total > self.max_bytes:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(p.stat().st_size for p in self._entries())
