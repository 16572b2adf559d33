"""Loads libstreamdiff and declares its C API (include/streamdiff/streamdiff.h) for ctypes.

The structures below mirror the C ones field for field; a versioned structure (one with a
``struct_size`` field) is always made through :func:`new_struct`, which calls its ``*_init``
function first. Functions are declared with ``argtypes``/``restype`` so that ctypes checks and
converts every argument. Calls through a :class:`ctypes.CDLL` release the GIL for their
duration, and the library's callbacks take it again, so other Python threads run while a
frame is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Iterator, TypeVar

#: The C ABI this package is written against: libstreamdiff.so.MAJOR.MINOR (0.x: each minor
#: version may change it).
ABI_VERSION = "0.2"
SONAME = f"libstreamdiff.so.{ABI_VERSION}"

MAX_T_INDEX = 50  # SD_MAX_T_INDEX

# Enumerations are C ints (sd_status, sd_pixel_format, sd_cfg_type, sd_blend, sd_queue_policy).
c_enum = c_int


class sd_image(Structure):
    _fields_ = [
        ("data", POINTER(c_uint8)),
        ("width", c_int32),
        ("height", c_int32),
        ("stride", c_size_t),
        ("format", c_enum),
    ]


class sd_image_out(Structure):
    _fields_ = sd_image._fields_  # the same layout; the library writes through `data`


class sd_lora(Structure):
    _fields_ = [("path", c_char_p), ("scale", c_float)]


class sd_model_options(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("taesd", c_char_p),
        ("loras", POINTER(sd_lora)),
        ("lora_count", c_size_t),
        ("lora_allow_unmatched", c_int32),
        ("device", c_char_p),
        ("dtype", c_char_p),
        ("threads", c_int32),
        ("pull", c_int32),
    ]


class sd_model_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("family", c_char * 16),
        ("vae", c_char * 32),
        ("dtype", c_char * 8),
        ("backend", c_char * 160),
        ("size_multiple", c_int32),
        ("cross_attention_dim", c_int32),
        ("lora_count", c_int32),
        ("random_weights", c_int32),
        ("load_ms", c_double),
    ]


class sd_stream_config(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("width", c_int32),
        ("height", c_int32),
        ("t_index_list", c_int32 * MAX_T_INDEX),
        ("t_index_count", c_int32),
        ("num_inference_steps", c_int32),
        ("frame_buffer_size", c_int32),
        ("cfg_type", c_enum),
        ("guidance_scale", c_float),
        ("delta", c_float),
        ("seed", c_uint64),
        ("prompt", c_char_p),
        ("negative_prompt", c_char_p),
        ("similarity_filter", c_int32),
        ("similarity_threshold", c_float),
        ("similarity_max_skip", c_int32),
        ("warmup", c_int32),
        ("use_denoising_batch", c_int32),
        ("do_add_noise", c_int32),
        ("precompute_kv", c_int32),
        ("time_stages", c_int32),
        ("clip_skip", c_int32),
    ]


class sd_frame_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("index", c_int64),
        ("skipped", c_int32),
        ("latency_ms", c_double),
        ("encode_ms", c_double),
        ("unet_ms", c_double),
        ("decode_ms", c_double),
        ("tag", c_int64),
        ("shown_tag", c_int64),
        ("compute_ms", c_double),
    ]


class sd_stream_stats(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("frames_in", c_int64),
        ("frames_out", c_int64),
        ("skipped", c_int64),
        ("dropped", c_int64),
        ("fps", c_double),
        ("latency_mean_ms", c_double),
        ("latency_p50_ms", c_double),
        ("latency_p99_ms", c_double),
        ("latency_max_ms", c_double),
        ("prepare_ms", c_double),
        ("plans", c_int32),
    ]


# void (*)(void* user_data, const sd_image* output, const sd_frame_info* info)
sd_output_callback = CFUNCTYPE(None, c_void_p, POINTER(sd_image), POINTER(sd_frame_info))


class sd_async_options(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("queue_capacity", c_size_t),
        ("policy", c_enum),
        ("output_format", c_enum),
        ("output_capacity", c_size_t),
        ("callback", sd_output_callback),
        ("user_data", c_void_p),
    ]


# Opaque handles.
sd_model_p = c_void_p
sd_stream_p = c_void_p

_status = c_enum
_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    "sd_version": (c_char_p, []),
    "sd_status_name": (c_char_p, [_status]),
    "sd_last_error": (c_char_p, []),
    # models
    "sd_model_options_init": (None, [POINTER(sd_model_options)]),
    "sd_model_info_init": (None, [POINTER(sd_model_info)]),
    "sd_model_load": (_status, [c_char_p, POINTER(sd_model_options), POINTER(sd_model_p)]),
    "sd_model_random": (_status, [c_char_p, POINTER(sd_model_options), POINTER(sd_model_p)]),
    "sd_model_info_get": (_status, [sd_model_p, POINTER(sd_model_info)]),
    "sd_model_free": (_status, [sd_model_p]),
    # streams
    "sd_stream_config_init": (None, [POINTER(sd_stream_config)]),
    "sd_frame_info_init": (None, [POINTER(sd_frame_info)]),
    "sd_stream_stats_init": (None, [POINTER(sd_stream_stats)]),
    "sd_async_options_init": (None, [POINTER(sd_async_options)]),
    "sd_stream_create": (_status, [sd_model_p, POINTER(sd_stream_config), POINTER(sd_stream_p)]),
    "sd_stream_free": (_status, [sd_stream_p]),
    "sd_stream_set_prompt": (_status, [sd_stream_p, c_char_p]),
    "sd_stream_set_negative_prompt": (_status, [sd_stream_p, c_char_p]),
    "sd_stream_set_prompt_blend": (
        _status,
        [sd_stream_p, POINTER(c_char_p), POINTER(c_float), c_size_t, c_enum],
    ),
    "sd_stream_set_seed": (_status, [sd_stream_p, c_uint64]),
    "sd_stream_set_seed_blend": (
        _status,
        [sd_stream_p, POINTER(c_uint64), POINTER(c_float), c_size_t, c_enum],
    ),
    "sd_stream_set_guidance_scale": (_status, [sd_stream_p, c_float]),
    "sd_stream_set_delta": (_status, [sd_stream_p, c_float]),
    "sd_stream_set_similarity_filter": (_status, [sd_stream_p, c_int32, c_float, c_int32]),
    "sd_stream_set_t_index_list": (_status, [sd_stream_p, POINTER(c_int32), c_size_t]),
    "sd_stream_set_resolution": (_status, [sd_stream_p, c_int32, c_int32]),
    "sd_stream_set_cfg_type": (_status, [sd_stream_p, c_enum]),
    "sd_stream_set_config": (_status, [sd_stream_p, POINTER(sd_stream_config)]),
    "sd_stream_get_config": (_status, [sd_stream_p, POINTER(sd_stream_config)]),
    # frames
    "sd_stream_img2img": (
        _status,
        [sd_stream_p, POINTER(sd_image), POINTER(sd_image_out), POINTER(sd_frame_info)],
    ),
    "sd_stream_img2img_batch": (
        _status,
        [sd_stream_p, POINTER(sd_image), POINTER(sd_image_out), c_size_t, POINTER(sd_frame_info)],
    ),
    "sd_stream_img2img_f32": (
        _status,
        [sd_stream_p, POINTER(c_float), POINTER(c_float), c_int32, c_int32,
         POINTER(sd_frame_info)],
    ),
    "sd_stream_txt2img": (
        _status,
        [sd_stream_p, POINTER(sd_image_out), c_int32, POINTER(sd_frame_info)],
    ),
    "sd_stream_txt2img_batch": (
        _status,
        [sd_stream_p, POINTER(sd_image_out), c_size_t, c_int32, POINTER(sd_frame_info)],
    ),
    "sd_stream_txt2img_f32": (
        _status,
        [sd_stream_p, POINTER(c_float), c_int32, c_int32, c_int32, POINTER(sd_frame_info)],
    ),
    "sd_stream_start": (_status, [sd_stream_p, POINTER(sd_async_options)]),
    "sd_stream_submit": (_status, [sd_stream_p, POINTER(sd_image), c_int64]),
    "sd_stream_end_input": (_status, [sd_stream_p]),
    "sd_stream_poll": (
        _status,
        [sd_stream_p, POINTER(sd_image_out), c_int32, POINTER(sd_frame_info)],
    ),
    "sd_stream_stop": (_status, [sd_stream_p]),
    "sd_stream_reset": (_status, [sd_stream_p]),
    "sd_stream_stats_get": (_status, [sd_stream_p, POINTER(sd_stream_stats)]),
    # models from the Hugging Face Hub
    "sd_pull": (_status, [c_char_p, c_char_p, c_char_p, c_size_t]),
    "sd_resolve_model_path": (_status, [c_char_p, c_char_p, c_char_p, c_size_t]),
    "sd_hub_cache_dir": (_status, [c_char_p, c_size_t]),
    # images
    "sd_image_read": (_status, [c_char_p, POINTER(sd_image)]),
    "sd_image_free": (None, [POINTER(sd_image)]),
    "sd_image_write": (_status, [c_char_p, POINTER(sd_image)]),
}


def _candidates() -> Iterator[str]:
    """Where the library is looked for, in order: $STREAMDIFF_LIBRARY alone when it is set;
    else the package's directory, then the dynamic loader's search (LD_LIBRARY_PATH,
    ld.so.cache) by SONAME, then whatever ctypes.util.find_library finds."""
    env = os.environ.get("STREAMDIFF_LIBRARY")
    if env:
        yield env  # an explicit choice that fails is not replaced by another library
        return
    here = Path(__file__).resolve().parent
    yield str(here / SONAME)
    yield str(here / "libstreamdiff.so")
    yield SONAME
    system = ctypes.util.find_library("streamdiff")  # runs ldconfig: only when needed
    if system and system != SONAME:
        yield system


def _open(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    version = lib.sd_version().decode()
    if version.split(".")[:2] != ABI_VERSION.split("."):
        raise OSError(f"it is streamdiff {version}; this package needs {ABI_VERSION}.x")
    return lib


def load_library() -> ctypes.CDLL:
    """Loads libstreamdiff (see _candidates); ImportError naming every place tried and why."""
    failures: list[str] = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            failures.append(f"{path}: no such file")
            continue
        try:
            return _open(path)
        except (OSError, AttributeError) as e:  # AttributeError: a missing sd_* function
            failures.append(f"{path}: {e}")
    hint = (
        f"Point STREAMDIFF_LIBRARY at a {SONAME}, or unset it to use the package's library."
        if os.environ.get("STREAMDIFF_LIBRARY")
        else "Set STREAMDIFF_LIBRARY to the path of libstreamdiff.so, or reinstall the package."
    )
    raise ImportError(
        "streamdiff: cannot load the native library libstreamdiff; tried:\n  "
        + "\n  ".join(failures) + "\n" + hint
    )


lib = load_library()

_S = TypeVar("_S", bound=Structure)


def new_struct(cls: type[_S]) -> _S:
    """A versioned C structure, set up by its *_init function (struct_size and defaults)."""
    s = cls()
    getattr(lib, f"{cls.__name__}_init")(ctypes.byref(s))
    return s
