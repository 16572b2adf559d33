"""streamdiff.Stream: one real-time img2img / txt2img pipeline (sd_stream) on a Model."""

from __future__ import annotations

import atexit
import ctypes
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union, cast

import numpy as np

from ._errors import Closed, InvalidArgument, InvalidHandle, Status, check
from ._images import (
    FORMAT_NAMES,
    ImageLike,
    as_pixels,
    channel_order,
    channels_of,
    check_output,
    copy_from,
    image_in,
    image_out,
    new_output,
    to_pil,
)
from ._lib import (
    MAX_T_INDEX,
    lib,
    new_struct,
    sd_async_options,
    sd_frame_info,
    sd_image,
    sd_image_out,
    sd_output_callback,
    sd_stream_config,
    sd_stream_stats,
)
from ._model import Model

CFG_TYPES = {"none": 0, "full": 1, "self": 2, "initialize": 3}
BLENDS = {"linear": 0, "slerp": 1}
POLICIES = {"block": 0, "drop_oldest": 1}

_BOOL_SETTINGS = (
    "similarity_filter",
    "warmup",
    "use_denoising_batch",
    "do_add_noise",
    "precompute_kv",
    "time_stages",
)
_PLAIN_SETTINGS = (
    "width",
    "height",
    "num_inference_steps",
    "frame_buffer_size",
    "guidance_scale",
    "delta",
    "similarity_threshold",
    "similarity_max_skip",
    "clip_skip",
)
#: The keys of Stream.config (and of Stream(...) / set_config keyword arguments).
SETTINGS = (
    ("t_index_list", "cfg_type", "seed", "prompt", "negative_prompt")
    + _PLAIN_SETTINGS
    + _BOOL_SETTINGS
)

Output = Union[np.ndarray, Any]  # an array, or a PIL image (or list of them) with as_pil=True
Callback = Callable[[np.ndarray, "FrameInfo"], None]


@dataclass(frozen=True)
class FrameInfo:
    """What one frame call did (sd_frame_info)."""

    index: int  # outputs of the stream so far, counting this one, minus one
    skipped: bool  # the similarity filter skipped the denoiser: the previous output again
    latency_ms: float  # time in the library (async: from submit to output)
    encode_ms: float  # the stage times are measured with time_stages=True
    unet_ms: float
    decode_ms: float
    tag: int  # async: the tag of the input this call consumed
    shown_tag: int  # async: the tag of the input this output shows
    compute_ms: float  # latency_ms without the time the frame waited (queue, other streams)

    @classmethod
    def from_c(cls, i: sd_frame_info) -> "FrameInfo":
        return cls(i.index, bool(i.skipped), i.latency_ms, i.encode_ms, i.unet_ms, i.decode_ms,
                   i.tag, i.shown_tag, i.compute_ms)


def _lookup(table: dict[str, int], value: str, what: str) -> int:
    try:
        return table[value.lower()]
    except (KeyError, AttributeError):
        raise InvalidArgument(f"{what} must be one of {', '.join(table)}; got {value!r}") from None


def _name(table: dict[str, int], value: int) -> str:
    return next(k for k, v in table.items() if v == value)


def _seed(seed: int) -> int:
    if not 0 <= seed < 2**64:
        raise InvalidArgument(f"seed must be in [0, 2**64), got {seed}")
    return seed


def _apply(config: sd_stream_config, settings: dict[str, Any]) -> None:
    """Writes keyword settings (SETTINGS) into a C config."""
    for key, value in settings.items():
        if key == "t_index_list":
            steps = [int(t) for t in value]
            if not 1 <= len(steps) <= MAX_T_INDEX:
                raise InvalidArgument(f"t_index_list needs 1 to {MAX_T_INDEX} steps, got {steps}")
            config.t_index_list[: len(steps)] = steps
            config.t_index_count = len(steps)
        elif key == "cfg_type":
            config.cfg_type = _lookup(CFG_TYPES, value, "cfg_type")
        elif key == "seed":
            config.seed = _seed(value)
        elif key in ("prompt", "negative_prompt"):
            setattr(config, key, value.encode())
        elif key in _BOOL_SETTINGS:
            setattr(config, key, int(bool(value)))
        elif key in _PLAIN_SETTINGS:
            setattr(config, key, value)
        else:
            raise TypeError(f"unknown stream setting {key!r} (settings: {', '.join(SETTINGS)})")


def _settings(config: sd_stream_config) -> dict[str, Any]:
    """A C config as a dict (the keys of SETTINGS)."""
    d: dict[str, Any] = {key: getattr(config, key) for key in _PLAIN_SETTINGS}
    d.update({key: bool(getattr(config, key)) for key in _BOOL_SETTINGS})
    d["t_index_list"] = list(config.t_index_list[: config.t_index_count])
    d["cfg_type"] = _name(CFG_TYPES, config.cfg_type)
    d["seed"] = config.seed
    d["prompt"] = (config.prompt or b"").decode()
    d["negative_prompt"] = (config.negative_prompt or b"").decode()
    return {key: d[key] for key in SETTINGS}


_live_streams: "weakref.WeakSet[Stream]" = weakref.WeakSet()


@atexit.register
def _close_streams() -> None:
    # Asynchronous workers must stop before the interpreter finalizes: a worker calling a
    # Python callback then could not take the GIL.
    for stream in list(_live_streams):
        stream.close()


class Stream:
    """A StreamDiffusion pipeline on a Model: settings, frames, and the asynchronous mode.

    Threads: frame calls (img2img, txt2img, start/stop, submit/poll, reset) must not run
    concurrently on one Stream (use one Stream per thread, or the asynchronous mode, where one
    producer thread may submit while one consumer thread polls). The setters, ``config`` and
    ``stats`` may be called from any thread at any time and apply at the next frame. Every call
    releases the GIL while the library works.

    Images are numpy uint8 arrays (height, width, 3 or 4) in RGB(A) order, or BGR(A) with
    ``format="bgr"`` (OpenCV frames), with any row stride; or PIL images. Inputs of another size
    than the stream's are scaled to cover it and centre-cropped.
    """

    def __init__(
        self,
        model: Model,
        *,
        width: int = 512,
        height: int = 512,
        t_index_list: Sequence[int] = (32, 45),
        num_inference_steps: int = 50,
        frame_buffer_size: int = 1,
        cfg_type: str = "self",
        guidance_scale: float = 1.2,
        delta: float = 1.0,
        seed: int = 2,
        prompt: str = "",
        negative_prompt: str = "",
        similarity_filter: bool = False,
        similarity_threshold: float = 0.98,
        similarity_max_skip: int = 10,
        warmup: bool = True,
        use_denoising_batch: bool = True,
        do_add_noise: bool = True,
        precompute_kv: bool = True,
        time_stages: bool = False,
        clip_skip: int = 0,
    ) -> None:
        """Prepares the stream: encodes the prompt, draws the noise, plans the memory.

        width and height must be multiples of model.info.size_multiple; t_index_list: the
        denoising steps used, ascending, in [0, num_inference_steps); cfg_type: "none",
        "full", "self" or "initialize". Raises InvalidArgument for a setting the model cannot
        take.
        """
        # (The outermost iterable of a comprehension is evaluated here: these are the arguments.)
        settings = {key: value for key, value in locals().items() if key in SETTINGS}
        self._handle: Optional[ctypes.c_void_p] = None
        self.model = model
        #: The FrameInfo of the last synchronous frame call.
        self.last_info: Optional[FrameInfo] = None
        self._callback: Optional[Any] = None  # the ctypes callback the worker calls
        self._callback_errors: list[BaseException] = []
        self._output_format = FORMAT_NAMES["rgb"]
        self._started = False
        config = new_struct(sd_stream_config)
        _apply(config, settings)
        handle = ctypes.c_void_p()
        check(lib.sd_stream_create(model.handle, ctypes.byref(config), ctypes.byref(handle)))
        self._handle = handle
        _live_streams.add(self)

    # ---- lifetime ----------------------------------------------------------------------------

    @property
    def handle(self) -> ctypes.c_void_p:
        """The sd_stream handle; InvalidHandle once closed."""
        if self._handle is None:
            raise InvalidHandle("the Stream is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Stops the asynchronous worker (queued inputs are dropped) and frees the stream."""
        handle, self._handle = self._handle, None
        if handle is not None:
            _live_streams.discard(self)
            _free(handle, self._started)
            self._callback = None  # the worker has been joined

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            _free(handle, self._started)

    def __repr__(self) -> str:
        if self._handle is None:
            return "<streamdiff.Stream closed>"
        c = self.config
        return f"<streamdiff.Stream {c['width']}x{c['height']} t_index_list={c['t_index_list']}>"

    # ---- settings (any thread, any time; applied at the next frame) --------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The settings the next frame uses (the keyword arguments of Stream())."""
        return _settings(self._get_config())

    def set_config(self, **settings: Any) -> None:
        """Changes several settings at once (all are checked, or nothing changes)."""
        config = self._get_config()
        _apply(config, settings)
        check(lib.sd_stream_set_config(self.handle, ctypes.byref(config)))

    def set_prompt(self, prompt: str) -> None:
        check(lib.sd_stream_set_prompt(self.handle, prompt.encode()))

    def set_negative_prompt(self, prompt: str) -> None:
        check(lib.sd_stream_set_negative_prompt(self.handle, prompt.encode()))

    def set_prompt_blend(self, prompts: Sequence[tuple[str, float]], blend: str = "linear") -> None:
        """Blends the embeddings of weighted prompts (weights are divided by their sum).

        "linear": the weighted sum; "slerp" (exactly two prompts): spherical interpolation
        from the first to the second at t = the second weight.
        """
        n = len(prompts)
        texts = (ctypes.c_char_p * n)(*(p.encode() for p, _ in prompts))
        weights = (ctypes.c_float * n)(*(w for _, w in prompts))
        check(lib.sd_stream_set_prompt_blend(self.handle, texts, weights, n,
                                             _lookup(BLENDS, blend, "blend")))

    def set_seed(self, seed: int) -> None:
        check(lib.sd_stream_set_seed(self.handle, _seed(seed)))

    def set_seed_blend(self, seeds: Sequence[tuple[int, float]], blend: str = "linear") -> None:
        """Blends the noises of weighted seeds, like set_prompt_blend."""
        n = len(seeds)
        values = (ctypes.c_uint64 * n)(*(_seed(s) for s, _ in seeds))
        weights = (ctypes.c_float * n)(*(w for _, w in seeds))
        check(lib.sd_stream_set_seed_blend(self.handle, values, weights, n,
                                           _lookup(BLENDS, blend, "blend")))

    def set_guidance_scale(self, guidance_scale: float) -> None:
        check(lib.sd_stream_set_guidance_scale(self.handle, guidance_scale))

    def set_delta(self, delta: float) -> None:
        check(lib.sd_stream_set_delta(self.handle, delta))

    def set_similarity_filter(
        self, enabled: bool, threshold: float = 0.98, max_skip: int = 10
    ) -> None:
        check(lib.sd_stream_set_similarity_filter(self.handle, int(enabled), threshold, max_skip))

    def set_t_index_list(self, t_index_list: Sequence[int]) -> None:
        steps = (ctypes.c_int32 * len(t_index_list))(*t_index_list)
        check(lib.sd_stream_set_t_index_list(self.handle, steps, len(t_index_list)))

    def set_resolution(self, width: int, height: int) -> None:
        check(lib.sd_stream_set_resolution(self.handle, width, height))

    def set_cfg_type(self, cfg_type: str) -> None:
        check(lib.sd_stream_set_cfg_type(self.handle, _lookup(CFG_TYPES, cfg_type, "cfg_type")))

    @property
    def stats(self) -> dict[str, Union[int, float]]:
        """Running figures: frames_in, frames_out, skipped, dropped, fps, latency_*_ms,
        prepare_ms, plans (percentiles over the last 1024 frames)."""
        s = new_struct(sd_stream_stats)
        check(lib.sd_stream_stats_get(self.handle, ctypes.byref(s)))
        return {field[0]: getattr(s, field[0]) for field in sd_stream_stats._fields_[1:]}

    def _get_config(self) -> sd_stream_config:
        config = new_struct(sd_stream_config)
        check(lib.sd_stream_get_config(self.handle, ctypes.byref(config)))
        return config

    def _frame_shape(self) -> tuple[int, int, int]:
        """(frame_buffer_size, height, width) of the next frame."""
        c = self._get_config()
        return c.frame_buffer_size, c.height, c.width

    # ---- synchronous frames (the calling thread runs the model) ------------------------------

    def img2img(
        self,
        image: Union[ImageLike, Sequence[ImageLike]],
        out: Optional[np.ndarray] = None,
        *,
        format: str = "rgb",
        as_pil: bool = False,
    ) -> Output:
        """Stylises one frame: returns a new (height, width, 3) uint8 array in `format` order,
        or fills and returns `out` ((height, width, 3 or 4) uint8, packed pixels, any row
        stride). format: "rgb" or "bgr", for numpy inputs and the output (PIL inputs are
        RGB). as_pil: return a PIL image instead. With frame_buffer_size f > 1, `image` is a
        sequence of f images (or an (f, H, W, C) array) and the result is (f, height, width,
        C) (or a list of PIL images).
        """
        f, h, w = self._frame_shape()
        order = channel_order(format)
        images: list[ImageLike] = (
            [cast(ImageLike, image)] if f == 1 else list(cast(Sequence[ImageLike], image))
        )
        if len(images) != f:
            raise InvalidArgument(f"img2img: frame_buffer_size is {f}; got {len(images)} images")
        pixels = [as_pixels(im) for im in images]
        if out is None:
            out = np.empty((f, h, w, 3) if f > 1 else (h, w, 3), np.uint8)
        outs = [out] if f == 1 else list(out)
        if len(outs) != f:
            raise InvalidArgument(f"out: frame_buffer_size is {f}; got {len(outs)} images")
        for o in outs:
            check_output(o, h, w)
        inputs = (sd_image * f)(*(image_in(p, "rgb" if pil else order) for p, pil in pixels))
        outputs = (sd_image_out * f)(*(image_out(o, order) for o in outs))
        info = new_struct(sd_frame_info)
        check(lib.sd_stream_img2img_batch(self.handle, inputs, outputs, f, ctypes.byref(info)))
        self.last_info = FrameInfo.from_c(info)
        if as_pil:
            return to_pil(out, order) if f == 1 else [to_pil(o, order) for o in outs]
        return out

    def img2img_f32(self, image: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """img2img on float RGB in [0, 1]: (frame_buffer_size, height, width, 3), or
        (height, width, 3) when frame_buffer_size is 1. Returns an array of the same shape."""
        f, h, w = self._frame_shape()
        x = np.ascontiguousarray(image, dtype=np.float32)
        if x.shape not in ((f, h, w, 3), (h, w, 3) if f == 1 else None):
            raise InvalidArgument(f"img2img_f32: expected shape ({f}, {h}, {w}, 3), got {x.shape}")
        out = self._f32_output(out, x.shape)
        info = new_struct(sd_frame_info)
        check(lib.sd_stream_img2img_f32(self.handle, _floats(x), _floats(out), w, h,
                                        ctypes.byref(info)))
        self.last_info = FrameInfo.from_c(info)
        return out

    def txt2img(
        self,
        out: Optional[np.ndarray] = None,
        *,
        one_step_turbo: bool = False,
        format: str = "rgb",
        as_pil: bool = False,
    ) -> Output:
        """An image from fresh noise (frame_buffer_size 1): a new (height, width, 3) uint8
        array, or `out` filled. one_step_turbo: sd-turbo's one-step formula (one t_index, no
        guidance)."""
        _, h, w = self._frame_shape()
        order = channel_order(format)
        if out is None:
            out = new_output(h, w, 3)
        check_output(out, h, w)
        info = new_struct(sd_frame_info)
        check(lib.sd_stream_txt2img(self.handle, ctypes.byref(image_out(out, order)),
                                    int(one_step_turbo), ctypes.byref(info)))
        self.last_info = FrameInfo.from_c(info)
        return to_pil(out, order) if as_pil else out

    def txt2img_f32(
        self, out: Optional[np.ndarray] = None, *, one_step_turbo: bool = False
    ) -> np.ndarray:
        """txt2img as float RGB in [0, 1]: (frame_buffer_size, height, width, 3)."""
        f, h, w = self._frame_shape()
        out = self._f32_output(out, (f, h, w, 3))
        info = new_struct(sd_frame_info)
        check(lib.sd_stream_txt2img_f32(self.handle, _floats(out), w, h, int(one_step_turbo),
                                        ctypes.byref(info)))
        self.last_info = FrameInfo.from_c(info)
        return out

    @staticmethod
    def _f32_output(out: Optional[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        if out is None:
            return np.empty(shape, np.float32)
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != np.float32
            or out.shape != shape
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise InvalidArgument(f"out: expected a writable C-contiguous float32 array {shape}")
        return out

    def reset(self) -> None:
        """Forgets the frames in flight (the next img2img warms up again); keeps the settings."""
        check(lib.sd_stream_reset(self.handle))

    # ---- asynchronous frames (a worker thread owned by the stream runs the model) ------------

    def start(
        self,
        queue_capacity: int = 2,
        policy: str = "block",
        output_format: str = "rgb",
        output_capacity: int = 4,
        callback: Optional[Callback] = None,
    ) -> None:
        """Starts the worker thread (frame_buffer_size must be 1).

        policy: "block" (submit waits for room; files) or "drop_oldest" (submit never waits,
        the oldest queued input or unpolled output is dropped; live cameras). output_format:
        "rgb", "bgr", "rgba" or "bgra". callback(array, info): called on the worker thread with
        a copy of each output instead of queueing it for poll(); an exception it raises is
        re-raised by stop().
        """
        options = new_struct(sd_async_options)
        options.queue_capacity = queue_capacity
        options.policy = _lookup(POLICIES, policy, "policy")
        options.output_format = _lookup(FORMAT_NAMES, output_format, "output_format")
        options.output_capacity = output_capacity
        trampoline = None
        errors: list[BaseException] = []
        if callback is not None:
            user = callback

            def on_output(_: Optional[int], image: Any, info: Any) -> None:
                try:
                    user(copy_from(image.contents), FrameInfo.from_c(info.contents))
                except BaseException as e:  # noqa: B036 - reported by stop(), not lost
                    errors.append(e)

            trampoline = sd_output_callback(on_output)
            options.callback = trampoline
        check(lib.sd_stream_start(self.handle, ctypes.byref(options)))
        self._callback = trampoline  # kept alive while the worker may call it
        self._callback_errors = errors
        self._output_format = options.output_format
        self._started = True

    def submit(self, image: ImageLike, tag: int = -1, *, format: str = "rgb") -> bool:
        """Queues a copy of `image` (any size) with a tag that the FrameInfo of its output
        carries. "block": waits for room. Returns False once the worker has stopped."""
        if not self._started:
            raise Closed("submit: start() the asynchronous mode first")
        pixels, pil = as_pixels(image)
        view = image_in(pixels, "rgb" if pil else channel_order(format))
        status = lib.sd_stream_submit(self.handle, ctypes.byref(view), tag)
        if status == Status.CLOSED:
            return False
        check(status)
        return True

    def end_input(self) -> None:
        """No more inputs: the worker processes what is queued and finishes; poll() then gives
        the remaining outputs and None (also in callback mode: poll() waits for the end)."""
        check(lib.sd_stream_end_input(self.handle))

    def poll(
        self,
        timeout_ms: int = -1,
        out: Optional[np.ndarray] = None,
        *,
        format: Optional[str] = None,
    ) -> Optional[tuple[np.ndarray, FrameInfo]]:
        """The next output and its FrameInfo, or None when none came within timeout_ms (0: do
        not wait; negative: wait until one comes or the worker finishes) or the worker has
        finished and every output was taken. The output is a new (height, width, channels)
        array in start()'s output_format, or `out` filled (3 or 4 channels, in the channel
        order of `format`, "rgb" or "bgr", by default output_format's). After the last output,
        stop() reports an error the worker met."""
        _, h, w = self._frame_shape()
        order = channel_order(format) if format else _name(FORMAT_NAMES, self._output_format)[:3]
        if out is None:
            out = new_output(h, w, channels_of(self._output_format))
        check_output(out, h, w)
        view = image_out(out, order)
        info = new_struct(sd_frame_info)
        status = lib.sd_stream_poll(self.handle, ctypes.byref(view), timeout_ms,
                                    ctypes.byref(info))
        if status in (Status.NOT_READY, Status.CLOSED):
            return None
        check(status)
        return out, FrameInfo.from_c(info)

    def stop(self) -> None:
        """Stops the worker now (queued inputs are dropped; outputs made stay available to
        poll()). Raises the first error the worker or the callback met, if any."""
        try:
            check(lib.sd_stream_stop(self.handle))
        finally:
            self._callback = None  # the worker has been joined
        if self._callback_errors:
            error, self._callback_errors = self._callback_errors[0], []
            raise error


def _free(handle: ctypes.c_void_p, started: bool) -> None:
    """Frees a stream, stopping its worker first (its error, if any, is dropped).

    The explicit stop matters: sd_stream_free of a stream whose worker is running crashes in
    libstreamdiff 0.2.0 (Stream::Impl's destructor frees the frame state before the worker,
    a member declared earlier, is joined).
    """
    if started:
        lib.sd_stream_stop(handle)
    check(lib.sd_stream_free(handle))


def _floats(a: np.ndarray) -> Any:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
