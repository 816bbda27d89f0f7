"""Sinks: where filtered frames go (video file, preview window, virtual camera).

A sink is anything with ``write(frame)`` and ``close()``. A sink raises `StopPipeline` when
the user asked to stop (q or Esc in the preview); the pipeline then shuts down cleanly.
A sink may also offer ``abort()``: called instead of ``close()`` when the run failed, so a
file sink can keep the partial output aside instead of under the final name, and ``end_of_stream()``: called when the
source ended normally (not interrupted), so a file sink keeps the audio to its very end.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from livefilter.frames import Frame


class StopPipeline(Exception):
    """Raised by a sink when the user asked to quit; not an error."""


@runtime_checkable
class Sink(Protocol):
    def write(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


__all__ = ["Sink", "StopPipeline"]
