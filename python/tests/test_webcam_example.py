"""examples/python/webcam.py end to end on the tiny model: a generated 8-frame video in, a
stylised 8-frame video out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


import numpy as np
import pytest

import streamdiff
from conftest import MODEL, ROOT, SIZE, TAESD

cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is not installed")

SCRIPT = ROOT / "examples" / "python" / "webcam.py"
FRAMES = 8


def write_video(path: Path, fourcc: str, frames: list[np.ndarray]) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10, (SIZE, SIZE))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(FRAMES):
        writer.write(np.ascontiguousarray(frames[i % len(frames)][..., ::-1]))  # BGR
    writer.release()


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot read {path}"
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (SIZE, SIZE, 3)
        count += 1
    cap.release()
    return count


def run_example(*args: str) -> str:
    """Runs webcam.py on the tiny model; the summary it prints last ("N frames in ...")."""
    # The example imports the same streamdiff package as the tests (installed, or this
    # checkout's python/streamdiff).
    package_parent = str(Path(streamdiff.__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(MODEL), "--taesd", str(TAESD),
         "--width", str(SIZE), "--height", str(SIZE), "--dtype", "f32", "--threads", "1",
         *args],
        env=dict(os.environ, PYTHONPATH=pythonpath), capture_output=True, text=True,
        timeout=120,
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    lines = result.stdout.strip().splitlines()
    assert lines, output
    return lines[-1]


def test_video_file_to_video_file(tmp_path: Path, frames: list[np.ndarray]) -> None:
    source, output = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_video(source, "mp4v", frames)
    assert count_frames(source) == FRAMES
    summary = run_example("--input", str(source), "--output", str(output), "--t-index", "32",
                          "45", "--cfg", "self", "--prompt", "a watercolor painting")
    assert summary.startswith(f"{FRAMES} frames"), summary
    assert count_frames(output) == FRAMES


def test_frame_limit(tmp_path: Path, frames: list[np.ndarray]) -> None:
    source = tmp_path / "in.avi"
    write_video(source, "MJPG", frames)
    summary = run_example("--input", str(source), "--frames", "3")
    assert summary.startswith("3 frames"), summary
