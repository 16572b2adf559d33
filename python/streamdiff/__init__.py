"""streamdiff: real-time Stable Diffusion (StreamDiffusion) img2img / txt2img from Python.

    import streamdiff
    model = streamdiff.Model.load("stabilityai/sd-turbo", taesd="madebyollin/taesd",
                                  pull=True)   # from the Hugging Face cache, fetched if missing
    with streamdiff.Stream(model, prompt="oil painting", t_index_list=[35],
                           cfg_type="none") as stream:
        styled = stream.img2img(frame)          # HxWx3 uint8 RGB in, HxWx3 uint8 RGB out
        stream.set_prompt("watercolor")         # takes effect at the next frame

The package is a thin layer over libstreamdiff's C API (streamdiff.h) through ctypes:

- no compiler or Python headers are needed for the binding, and one native library serves C
  hosts and Python alike;
- the C ABI is stable, so one build serves every Python version (the wheel is py3-none);
- a ctypes call costs microseconds, nothing next to a frame (milliseconds or more), and numpy
  arrays are passed by pointer, without copies;
- ctypes releases the GIL during every library call, so other Python threads run while a frame
  is computed.

Threads: a Model may be shared by Streams on any threads; one Stream's frame calls must not run
concurrently (one Stream per thread, or the asynchronous mode: Stream.start / submit / poll);
its setters may be called from any thread.
"""

from ._errors import (
    Closed,
    Error,
    InternalError,
    InvalidArgument,
    InvalidHandle,
    IoError,
    NotReady,
    OutOfMemory,
    Status,
    Unsupported,
)
from ._hub import hub_cache_dir, pull, resolve_model_path
from ._images import read_image, to_pil, write_image
from ._lib import lib as _lib
from ._model import Model, ModelInfo
from ._stream import FrameInfo, Stream

__version__ = "0.2.0"

for _public in (Closed, Error, FrameInfo, InternalError, InvalidArgument, InvalidHandle, IoError,
                Model, ModelInfo, NotReady, OutOfMemory, Status, Stream, Unsupported):
    _public.__module__ = __name__  # shown as streamdiff.Stream, streamdiff.IoError, ...


def library_version() -> str:
    """The loaded libstreamdiff's version ("0.2.0")."""
    version: bytes = _lib.sd_version()
    return version.decode()


def library_path() -> str:
    """The path (or, when found by the system's search, the name) libstreamdiff was loaded from."""
    return str(_lib._name)


__all__ = [
    "Closed",
    "Error",
    "FrameInfo",
    "InternalError",
    "InvalidArgument",
    "InvalidHandle",
    "IoError",
    "Model",
    "ModelInfo",
    "NotReady",
    "OutOfMemory",
    "Status",
    "Stream",
    "Unsupported",
    "hub_cache_dir",
    "library_path",
    "library_version",
    "pull",
    "read_image",
    "resolve_model_path",
    "to_pil",
    "write_image",
]
