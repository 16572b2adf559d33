"""Models from the Hugging Face Hub, through the cache huggingface_hub and diffusers use."""

from __future__ import annotations

import ctypes
import os
from typing import Optional, Union

from ._errors import check
from ._lib import lib

PathLike = Union[str, "os.PathLike[str]"]

_PATH_SIZE = 4096  # PATH_MAX: every path fits


def _path_result(call: object, *args: object) -> str:
    buf = ctypes.create_string_buffer(_PATH_SIZE)
    check(call(*args, buf, _PATH_SIZE))  # type: ignore[operator]
    return os.fsdecode(buf.value)


def pull(repo_id: str, revision: str = "main") -> str:
    """Downloads the files the model ``repo_id`` ("org/name") needs into the Hugging Face cache,
    only those missing (a diffusers folder's configs, tokenizer and .safetensors weights, fp16
    where there are; a LoRA's or single-file checkpoint's .safetensors), and returns its snapshot
    folder. Interrupted downloads resume; large files are checked against their SHA-256.
    HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE=1 are honoured. Raises IoError (network, HTTP,
    disk, checksum) or InvalidArgument (a malformed repository id)."""
    return _path_result(lib.sd_pull, repo_id.encode(), revision.encode())


def resolve_model_path(path_or_repo_id: PathLike, revision: Optional[str] = "main") -> str:
    """What Model.load makes of a model argument: an existing file or folder as it is; a
    repository id "org/name" as its snapshot folder in the Hugging Face cache (or, for a LoRA or
    single-file repository, its one .safetensors). Raises IoError naming the `streamdiff pull`
    command when the repository is not in the cache."""
    rev = revision.encode() if revision is not None else None
    return _path_result(lib.sd_resolve_model_path, os.fsencode(path_or_repo_id), rev)


def hub_cache_dir() -> str:
    """The Hugging Face cache folder in use ($HF_HUB_CACHE, else $HF_HOME/hub, else
    ~/.cache/huggingface/hub)."""
    return _path_result(lib.sd_hub_cache_dir)
