"""Models by Hugging Face repository id: a cache written in huggingface_hub's layout is resolved
and loaded; a missing repository names the pull command; pull() against tests/fake_hub.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import streamdiff
from conftest import FIXTURES, MODEL, ROOT, STREAM_ARGS, TAESD

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hf_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """A repository as huggingface_hub writes it: blobs named by ETag (the SHA-256 of LFS
    files), snapshot files as relative symlinks to them, refs/main holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    for path, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "hub"


def test_resolve_and_load_a_huggingface_hub_cache(cache: Path,
                                                  frames: list[np.ndarray]) -> None:
    model = write_hf_repo(cache, "hand/tiny-sd", {
        "model_index.json": MODEL / "model_index.json",
        "unet/config.json": MODEL / "unet" / "config.json",
        "unet/diffusion_pytorch_model.safetensors":
            MODEL / "unet" / "diffusion_pytorch_model.safetensors",
        "text_encoder/config.json": MODEL / "text_encoder" / "config.json",
        "text_encoder/model.safetensors": MODEL / "text_encoder" / "model.safetensors",
    })
    taesd = write_hf_repo(cache, "hand/taesd", {
        "config.json": TAESD / "config.json",
        "diffusion_pytorch_model.safetensors": TAESD / "diffusion_pytorch_model.safetensors",
    })
    lora = write_hf_repo(cache, "hand/lora", {
        "pytorch_lora_weights.safetensors": FIXTURES / "lora" / "sd1_diffusers.safetensors",
    })
    assert streamdiff.hub_cache_dir() == str(cache)
    assert streamdiff.resolve_model_path("hand/tiny-sd") == str(model)
    assert streamdiff.resolve_model_path("hand/taesd", revision=COMMIT) == str(taesd)
    assert streamdiff.resolve_model_path("hand/lora") == str(
        lora / "pytorch_lora_weights.safetensors")
    assert streamdiff.resolve_model_path(MODEL) == str(MODEL)  # local paths as they are

    with streamdiff.Model.load("hand/tiny-sd", taesd="hand/taesd", dtype="f32", threads=1) as m:
        with streamdiff.Stream(m, **STREAM_ARGS) as s:
            got = s.img2img(frames[0])
    with streamdiff.Model.load(MODEL, taesd=TAESD, dtype="f32", threads=1) as m:
        with streamdiff.Stream(m, **STREAM_ARGS) as s:
            want = s.img2img(frames[0])
    assert np.array_equal(got, want)


def test_a_missing_repository_names_the_pull_command(cache: Path) -> None:
    with pytest.raises(streamdiff.IoError) as e:
        streamdiff.resolve_model_path("someone/not-pulled")
    assert f"is not in the Hugging Face cache ({cache})" in str(e.value)
    assert "fetch it with: streamdiff pull someone/not-pulled" in str(e.value)
    with pytest.raises(streamdiff.IoError, match="streamdiff pull someone/not-pulled"):
        streamdiff.Model.load("someone/not-pulled", taesd=TAESD)
    with pytest.raises(streamdiff.InvalidArgument):
        streamdiff.pull("not a repository id")


@pytest.fixture(scope="module")
def fake_hub() -> Iterator[str]:
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_hub.py")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def test_pull_and_load_with_pull(cache: Path, fake_hub: str, monkeypatch: pytest.MonkeyPatch,
                                 frames: list[np.ndarray]) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub)
    snapshot = Path(streamdiff.pull("test-org/tiny-taesd"))
    assert snapshot.parent == cache / "models--test-org--tiny-taesd" / "snapshots"
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]
    assert (snapshot / "config.json").is_symlink()
    with pytest.raises(streamdiff.IoError, match="streamdiff pull test-org/tiny-sd"):
        streamdiff.Model.load("test-org/tiny-sd", taesd="test-org/tiny-taesd")
    with streamdiff.Model.load("test-org/tiny-sd", taesd="test-org/tiny-taesd",
                               loras=[("test-org/tiny-lora", 0.5)], dtype="f32", threads=1,
                               pull=True) as m:
        assert m.info.lora_count == 1
        with streamdiff.Stream(m, **STREAM_ARGS) as s:
            assert s.img2img(frames[0]).shape == (64, 64, 3)
    with pytest.raises(streamdiff.IoError, match="was not found"):
        streamdiff.pull("test-org/no-such-model")
