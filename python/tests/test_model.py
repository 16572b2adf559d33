"""Model loading, info, options and errors; the library and image helpers."""

from __future__ import annotations

from pathlib import Path


import numpy as np
import pytest
from PIL import Image

import streamdiff
from conftest import FIXTURES, MODEL, STREAM_ARGS, TAESD


def test_library() -> None:
    assert streamdiff.library_version() == streamdiff.__version__
    assert "libstreamdiff" in streamdiff.library_path()


def test_info(model: streamdiff.Model) -> None:
    info = model.info
    assert isinstance(info, streamdiff.ModelInfo)
    assert info.family == "sd1"
    assert info.vae == "taesd"
    assert info.dtype == "f32"
    assert info.backend.startswith("cpu")
    assert info.size_multiple == 32
    assert info.cross_attention_dim == 32
    assert info.lora_count == 0
    assert info.random_weights is False
    assert info.load_ms > 0
    assert "Model" in repr(model)


def test_missing_model_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(streamdiff.IoError) as e:
        streamdiff.Model.load(missing, taesd=TAESD)
    assert e.value.status == streamdiff.Status.IO
    assert e.value.status.description
    assert str(missing) in str(e.value)
    assert isinstance(e.value, streamdiff.Error) and isinstance(e.value, OSError)


def test_bad_option() -> None:
    with pytest.raises(streamdiff.Error) as e:
        streamdiff.Model.load(MODEL, taesd=TAESD, dtype="f13")
    assert "f13" in str(e.value)


def test_random_model_arch() -> None:
    with pytest.raises(streamdiff.InvalidArgument, match="sd99"):
        streamdiff.Model.random("sd99", taesd=TAESD)


def test_loras_reach_the_library() -> None:
    # A LoRA of another (tiny) UNet: layers that match no weight are refused, and with
    # lora_allow_unmatched the first one that does not fit is named.
    lora = FIXTURES / "lora" / "sd1_diffusers.safetensors"
    with pytest.raises(streamdiff.IoError, match="match no weight"):
        streamdiff.Model.load(MODEL, taesd=TAESD, dtype="f32", threads=1, loras=[(lora, 0.5)])
    with pytest.raises(streamdiff.IoError, match="do not fit"):
        streamdiff.Model.load(MODEL, taesd=TAESD, dtype="f32", threads=1, loras=[str(lora)],
                              lora_allow_unmatched=True)


def test_stream_outlives_its_model(frames: list[np.ndarray]) -> None:
    m = streamdiff.Model.load(MODEL, taesd=TAESD, dtype="f32", threads=1)
    with streamdiff.Stream(m, **STREAM_ARGS) as s:
        m.close()
        m.close()  # idempotent
        assert m.closed
        with pytest.raises(streamdiff.InvalidHandle):
            m.info
        assert s.img2img(frames[0]).shape == (64, 64, 3)


def test_read_write_image(tmp_path: Path, frames: list[np.ndarray]) -> None:
    path = tmp_path / "frame.png"
    streamdiff.write_image(path, frames[0])
    back = streamdiff.read_image(path)
    assert np.array_equal(back, frames[0])
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), frames[0])
    # BGR in, RGB file out.
    streamdiff.write_image(path, np.ascontiguousarray(frames[1][..., ::-1]), format="bgr")
    assert np.array_equal(streamdiff.read_image(path), frames[1])
    with pytest.raises(streamdiff.IoError):
        streamdiff.read_image(tmp_path / "missing.png")


def test_to_pil(frames: list[np.ndarray]) -> None:
    im = streamdiff.to_pil(frames[0])
    assert im.mode == "RGB" and im.size == (64, 64)
    bgra = np.dstack([frames[0][..., ::-1], np.full((64, 64), 7, np.uint8)])
    im = streamdiff.to_pil(bgra, format="bgr")
    assert im.mode == "RGBA"
    assert np.array_equal(np.asarray(im)[..., :3], frames[0])
