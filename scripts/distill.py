#!/usr/bin/env python3
"""Thin wrapper: `python scripts/distill.py --teacher T.onnx --photos DIR --clips DIR --out weights/X.onnx`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter.train.distill import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
