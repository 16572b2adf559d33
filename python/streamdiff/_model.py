"""streamdiff.Model: the weights (sd_model)."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple, Union

from ._errors import InvalidHandle, check
from ._lib import lib, new_struct, sd_lora, sd_model_info, sd_model_options

PathLike = Union[str, "os.PathLike[str]"]
#: A LoRA to fuse: a path, or (path, scale).
LoraLike = Union[PathLike, Tuple[PathLike, float]]


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is (sd_model_info)."""

    family: str  # "sd1" or "sd2"
    vae: str  # "taesd" or "autoencoder_kl"
    dtype: str  # compute dtype: "f32" or "bf16"
    backend: str  # e.g. "cpu: oneDNN 2.6.3, avx2, f32, 2 threads, attention avx2"
    size_multiple: int  # stream width and height must be multiples of this
    cross_attention_dim: int
    lora_count: int
    random_weights: bool  # made by Model.random
    load_ms: float


def _options(
    taesd: Optional[PathLike],
    loras: Iterable[LoraLike],
    device: str,
    dtype: str,
    threads: int,
    lora_allow_unmatched: bool,
    pull: bool = False,
) -> sd_model_options:
    options = new_struct(sd_model_options)
    if taesd is not None:
        options.taesd = os.fsencode(taesd)
    specs = [(spec, 1.0) if isinstance(spec, (str, os.PathLike)) else spec for spec in loras]
    if specs:
        # Assigned as an array, it stays alive as long as options (ctypes keeps a reference).
        options.loras = (sd_lora * len(specs))(*(sd_lora(os.fsencode(p), s) for p, s in specs))
        options.lora_count = len(specs)
    options.lora_allow_unmatched = int(lora_allow_unmatched)
    options.device = device.encode()
    options.dtype = dtype.encode()
    options.threads = threads
    options.pull = int(pull)
    return options


class Model:
    """Loaded weights, immutable: share one Model among any number of Streams on any threads.

    A Stream keeps its model's weights alive, so a Model may be closed before its Streams.
    Use :meth:`load` or :meth:`random` to make one.
    """

    def __init__(self, handle: ctypes.c_void_p) -> None:
        """Internal: wraps a live sd_model handle (use load() or random())."""
        self._handle: Optional[ctypes.c_void_p] = handle

    @classmethod
    def load(
        cls,
        path: PathLike,
        taesd: Optional[PathLike] = None,
        loras: Iterable[LoraLike] = (),
        device: str = "cpu",
        dtype: str = "auto",
        threads: int = 0,
        lora_allow_unmatched: bool = False,
        pull: bool = False,
    ) -> "Model":
        """Loads a diffusers folder or a single-file SD 1.x / 2.x .safetensors checkpoint.

        path, taesd and the LoRA paths may also be Hugging Face repository ids ("org/name") in
        the Hugging Face cache (see :func:`streamdiff.resolve_model_path`); with pull=True the
        ones missing from it are downloaded first (:func:`streamdiff.pull`).
        taesd: a TAESD folder or file used instead of the model's VAE. loras: paths or
        (path, scale) pairs fused after loading, in order. device: "cpu" or "cuda". dtype:
        "auto", "f32" or "bf16". threads: CPU threads for this model's work (0: all cores).
        Raises IoError for a missing, unreadable or malformed file, or a repository id that is
        not in the cache (the message names the `streamdiff pull` command that fetches it).
        """
        options = _options(taesd, loras, device, dtype, threads, lora_allow_unmatched, pull)
        handle = ctypes.c_void_p()
        check(lib.sd_model_load(os.fsencode(path), ctypes.byref(options), ctypes.byref(handle)))
        return cls(handle)

    @classmethod
    def random(
        cls,
        arch: str,
        taesd: PathLike,
        device: str = "cpu",
        dtype: str = "auto",
        threads: int = 0,
    ) -> "Model":
        """A model with deterministic random weights of a full-size architecture ("sd15",
        "sd21", "bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny" or "sdxs-512"), for benchmarks and
        tests without downloads; taesd (the VAE) is required."""
        options = _options(taesd, (), device, dtype, threads, False)
        handle = ctypes.c_void_p()
        check(lib.sd_model_random(arch.encode(), ctypes.byref(options), ctypes.byref(handle)))
        return cls(handle)

    @property
    def handle(self) -> ctypes.c_void_p:
        """The sd_model handle; InvalidHandle once closed."""
        if self._handle is None:
            raise InvalidHandle("the Model is closed")
        return self._handle

    @property
    def info(self) -> ModelInfo:
        i = new_struct(sd_model_info)
        check(lib.sd_model_info_get(self.handle, ctypes.byref(i)))
        return ModelInfo(
            family=i.family.decode(),
            vae=i.vae.decode(),
            dtype=i.dtype.decode(),
            backend=i.backend.decode(errors="replace"),
            size_multiple=i.size_multiple,
            cross_attention_dim=i.cross_attention_dim,
            lora_count=i.lora_count,
            random_weights=bool(i.random_weights),
            load_ms=i.load_ms,
        )

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Releases this handle (Streams made from it keep working). Idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            check(lib.sd_model_free(handle))

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            lib.sd_model_free(self._handle)

    def __repr__(self) -> str:
        if self._handle is None:
            return "<streamdiff.Model closed>"
        i = self.info
        return f"<streamdiff.Model {i.family} vae={i.vae} dtype={i.dtype}>"
