"""Shared fixtures: the committed tiny SD model (tests/fixtures/tiny_sd) and 64x64 frames.

Run: STREAMDIFF_LIBRARY=build/release/libstreamdiff.so python3 -m pytest python/tests -q
(the installed package if there is one, else python/streamdiff; without STREAMDIFF_LIBRARY,
the package's own library is used).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

try:
    import streamdiff
except ModuleNotFoundError as e:  # not installed: this checkout's package (with STREAMDIFF_LIBRARY)
    if e.name != "streamdiff":
        raise
    sys.path.insert(0, str(ROOT / "python"))
    import streamdiff

FIXTURES = ROOT / "tests" / "fixtures"
MODEL = FIXTURES / "tiny_sd"
TAESD = FIXTURES / "taesd" / "tiny"
FRAMES = sorted((FIXTURES / "stream" / "frames").glob("*.png"))
SIZE = 64

#: The tiny model's stream settings (sizes must be multiples of 32).
STREAM_ARGS: dict[str, Any] = dict(width=SIZE, height=SIZE, t_index_list=(32, 45),
                                   prompt="a watercolor painting")


@pytest.fixture(scope="session")
def model() -> Iterator[streamdiff.Model]:
    with streamdiff.Model.load(MODEL, taesd=TAESD, dtype="f32", threads=1) as m:
        yield m


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    """The 64x64 RGB test frames (read-only: tests copy before changing them)."""
    assert len(FRAMES) >= 5, f"no frames in {FIXTURES / 'stream' / 'frames'}"
    out = []
    for path in FRAMES:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"))
        a.setflags(write=False)
        out.append(a)
    return out


@pytest.fixture
def stream(model: streamdiff.Model) -> Iterator[streamdiff.Stream]:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        yield s
