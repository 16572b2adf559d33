"""Synchronous frames, inputs and outputs, settings and errors of streamdiff.Stream."""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any, Callable, Optional

import numpy as np
import pytest
from PIL import Image

import streamdiff
from conftest import SIZE, STREAM_ARGS


def first_output(
    model: streamdiff.Model,
    frame: Any,
    setup: Optional[Callable[[streamdiff.Stream], None]] = None,
    **settings: Any,
) -> np.ndarray:
    """The output of a fresh stream's first img2img call (after setup(stream))."""
    with streamdiff.Stream(model, **{**STREAM_ARGS, **settings}) as s:
        if setup:
            setup(s)
        return s.img2img(frame)


# ---- inputs and outputs -------------------------------------------------------------------------


def test_img2img_rgb(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    out = stream.img2img(frames[0])
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert stream.last_info is not None and stream.last_info.index == 0
    assert not np.array_equal(out, frames[0])
    assert out.std() > 1  # a picture, not a flat colour
    stream.img2img(frames[1])
    assert stream.last_info.index == 1


def test_formats_agree(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    rgb = frames[0]
    alpha = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE), np.uint8)
    expected = first_output(model, rgb)
    assert np.array_equal(first_output(model, np.dstack([rgb, alpha])), expected)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert not np.array_equal(first_output(model, bgr), expected)  # BGR read as RGB
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        out = s.img2img(bgr, format="bgr")
    assert np.array_equal(out[..., ::-1], expected)  # BGR in, BGR out
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        out = s.img2img(np.dstack([bgr, alpha]), format="BGR")
    assert np.array_equal(out[..., ::-1], expected)


def test_strided_views(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    expected = first_output(model, frames[0])
    canvas = np.zeros((SIZE + 40, SIZE + 24, 3), np.uint8)
    canvas[16 : 16 + SIZE, 8 : 8 + SIZE] = frames[0]
    crop = canvas[16 : 16 + SIZE, 8 : 8 + SIZE]  # rows of another length: passed with a stride
    assert not crop.flags.c_contiguous
    assert np.array_equal(first_output(model, crop), expected)
    # Channels reversed by a view (negative channel stride): copied first.
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        out = s.img2img(frames[0][..., ::-1], format="bgr")
    assert np.array_equal(out[..., ::-1], expected)
    # Every other column (pixels not packed): copied first.
    wide = np.repeat(frames[0], 2, axis=1)
    assert np.array_equal(first_output(model, wide[:, ::2]), expected)


def test_pil_input(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    expected = first_output(model, frames[0])
    assert np.array_equal(first_output(model, Image.fromarray(frames[0])), expected)
    grey = Image.fromarray(frames[0]).convert("L")  # converted to RGB
    assert first_output(model, grey).shape == (SIZE, SIZE, 3)
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        im = s.img2img(frames[0], as_pil=True)
    assert isinstance(im, Image.Image) and im.size == (SIZE, SIZE) and im.mode == "RGB"
    assert np.array_equal(np.asarray(im), expected)


def test_other_input_size(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    big = np.asarray(Image.fromarray(frames[0]).resize((128, 96)))
    assert stream.img2img(big).shape == (SIZE, SIZE, 3)
    assert stream.img2img(big[:40, :50]).shape == (SIZE, SIZE, 3)
    assert stream.img2img(big[7:8]).shape == (SIZE, SIZE, 3)  # one row


def test_out_reuse(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s, streamdiff.Stream(model, **STREAM_ARGS) as t:
        out = np.zeros((SIZE, SIZE, 3), np.uint8)
        for frame in frames[:3]:
            result = s.img2img(frame, out=out)
            assert result is out
            assert np.array_equal(out, t.img2img(frame))
        # Neither the input nor the output is copied or allocated (numpy reports its buffers
        # to tracemalloc): what Python allocates per frame is far below one frame's pixels.
        tracemalloc.start()
        try:
            s.img2img(frames[3], out=out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < SIZE * SIZE * 3 // 2, peak
    # 4 channels: alpha 255; rows inside a bigger buffer.
    buffer = np.zeros((SIZE + 2, SIZE + 5, 4), np.uint8)
    rgba = buffer[1 : SIZE + 1, 2 : SIZE + 2]
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        assert s.img2img(frames[0], out=rgba) is rgba
    assert np.array_equal(rgba[..., :3], first_output(model, frames[0]))
    assert (rgba[..., 3] == 255).all()
    assert (buffer[0] == 0).all() and (buffer[:, :2] == 0).all()  # nothing outside the view


def test_frame_buffer(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS, frame_buffer_size=2) as s:
        out = s.img2img(frames[:2])
        assert out.shape == (2, SIZE, SIZE, 3)
        out2 = s.img2img(np.stack(frames[2:4]), out=np.empty_like(out))
        assert out2.shape == out.shape
        assert s.img2img_f32(np.zeros((2, SIZE, SIZE, 3), np.float32)).shape == out.shape
        with pytest.raises(streamdiff.InvalidArgument, match="frame_buffer_size"):
            s.img2img(frames[0:1])


def test_f32(stream: streamdiff.Stream, model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    out = stream.img2img_f32(frames[0] / np.float32(255))
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    u8 = first_output(model, frames[0])
    assert np.abs(out * 255 - u8).max() <= 0.5 + 1e-3  # the same picture, before rounding
    batch = stream.img2img_f32(frames[1][None] / 255.0)  # float64: converted
    assert batch.shape == (1, SIZE, SIZE, 3) and batch.dtype == np.float32
    with pytest.raises(streamdiff.InvalidArgument, match="shape"):
        stream.img2img_f32(np.zeros((32, 32, 3), np.float32))


def test_txt2img(stream: streamdiff.Stream) -> None:
    image = stream.txt2img()
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    out = np.empty((SIZE, SIZE, 4), np.uint8)
    assert stream.txt2img(out=out) is out
    assert stream.txt2img(as_pil=True).size == (SIZE, SIZE)
    floats = stream.txt2img_f32()
    assert floats.shape == (1, SIZE, SIZE, 3) and 0 <= floats.min() <= floats.max() <= 1
    stream.set_t_index_list([45])
    stream.set_cfg_type("none")
    assert stream.txt2img(one_step_turbo=True).shape == (SIZE, SIZE, 3)


# ---- settings -----------------------------------------------------------------------------------


def test_prompts_and_seeds_change_the_output(
    model: streamdiff.Model, frames: list[np.ndarray]
) -> None:
    base = first_output(model, frames[0])
    assert np.array_equal(first_output(model, frames[0]), base)  # deterministic
    assert not np.array_equal(first_output(model, frames[0], prompt="a pencil sketch"), base)
    assert not np.array_equal(first_output(model, frames[0], seed=7), base)
    assert not np.array_equal(first_output(model, frames[0], lambda s: s.set_seed(7)), base)
    with_prompt = first_output(model, frames[0], lambda s: s.set_prompt("a pencil sketch"))
    assert np.array_equal(with_prompt, first_output(model, frames[0], prompt="a pencil sketch"))


def test_prompt_blend(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    a, b = "a watercolor painting", "a pencil sketch"
    only_a = first_output(model, frames[0], prompt=a)
    only_b = first_output(model, frames[0], prompt=b)
    blend = lambda w, kind="linear": lambda s: s.set_prompt_blend([(a, w), (b, 1 - w)], kind)
    assert np.array_equal(first_output(model, frames[0], blend(1.0), prompt="x"), only_a)
    assert np.array_equal(first_output(model, frames[0], blend(0.0), prompt="x"), only_b)
    half = first_output(model, frames[0], blend(0.5))
    assert not np.array_equal(half, only_a) and not np.array_equal(half, only_b)
    slerp = first_output(model, frames[0], blend(0.5, "slerp"))
    assert not np.array_equal(slerp, only_a) and not np.array_equal(slerp, only_b)


def test_seed_blend(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    seed_2 = first_output(model, frames[0], seed=2)
    seed_9 = first_output(model, frames[0], seed=9)
    blend = lambda w, kind="linear": lambda s: s.set_seed_blend([(2, w), (9, 1 - w)], kind)
    assert np.array_equal(first_output(model, frames[0], blend(1.0), seed=5), seed_2)
    assert np.array_equal(first_output(model, frames[0], blend(0.0), seed=5), seed_9)
    half = first_output(model, frames[0], blend(0.5))
    assert not np.array_equal(half, seed_2) and not np.array_equal(half, seed_9)
    slerp = first_output(model, frames[0], blend(0.5, "slerp"))
    assert not np.array_equal(slerp, seed_2) and not np.array_equal(slerp, seed_9)


def test_config_and_setters(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    c = stream.config
    assert c["width"] == SIZE and c["height"] == SIZE and c["t_index_list"] == [32, 45]
    assert c["cfg_type"] == "self" and c["prompt"] == STREAM_ARGS["prompt"] and c["seed"] == 2
    assert set(c) == set(streamdiff.Stream.__init__.__kwdefaults__)
    stream.set_prompt("p")
    stream.set_negative_prompt("n")
    stream.set_seed(2**64 - 1)
    stream.set_guidance_scale(1.5)
    stream.set_delta(0.5)
    stream.set_similarity_filter(True, threshold=0.9, max_skip=3)
    stream.set_t_index_list([20, 30, 40])
    stream.set_cfg_type("full")
    c = stream.config
    assert (c["prompt"], c["negative_prompt"], c["seed"]) == ("p", "n", 2**64 - 1)
    assert c["guidance_scale"] == pytest.approx(1.5) and c["delta"] == pytest.approx(0.5)
    assert c["similarity_filter"] is True and c["similarity_max_skip"] == 3
    assert c["similarity_threshold"] == pytest.approx(0.9)
    assert c["t_index_list"] == [20, 30, 40] and c["cfg_type"] == "full"
    assert stream.img2img(frames[0]).shape == (SIZE, SIZE, 3)
    stream.set_config(prompt="q", t_index_list=[10], cfg_type="none", time_stages=True)
    c = stream.config
    assert (c["prompt"], c["t_index_list"], c["cfg_type"]) == ("q", [10], "none")
    stream.img2img(frames[0])
    assert stream.last_info.unet_ms > 0  # time_stages
    with pytest.raises(TypeError, match="colour"):
        stream.set_config(colour="red")
    with pytest.raises(streamdiff.InvalidArgument):
        stream.set_config(prompt="r", width=33)  # all or nothing
    assert stream.config["prompt"] == "q"


def test_set_resolution(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    stream.set_resolution(96, 64)
    assert stream.img2img(frames[0]).shape == (64, 96, 3)
    assert stream.txt2img().shape == (64, 96, 3)
    stream.set_resolution(SIZE, SIZE)
    assert stream.img2img(frames[0]).shape == (SIZE, SIZE, 3)


def test_stats_and_reset(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    assert stream.stats["frames_in"] == 0
    for frame in frames[:3]:
        stream.img2img(frame)
    stats = stream.stats
    assert stats["frames_in"] == 3 and stats["frames_out"] == 3
    assert stats["skipped"] == 0 and stats["dropped"] == 0 and stats["plans"] >= 1
    assert stats["latency_max_ms"] >= stats["latency_p50_ms"] > 0
    stream.reset()
    stream.img2img(frames[0])
    assert stream.stats["frames_out"] == 4


# ---- threads ------------------------------------------------------------------------------------


def test_streams_on_threads_share_a_model(
    model: streamdiff.Model, frames: list[np.ndarray]
) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        expected = [s.img2img(frame) for frame in frames[:3]]
    results: dict[int, list[np.ndarray]] = {}

    def run(key: int) -> None:
        with streamdiff.Stream(model, **STREAM_ARGS) as s:
            results[key] = [s.img2img(frame) for frame in frames[:3]]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key in range(2):
        assert all(np.array_equal(a, b) for a, b in zip(results[key], expected))


def test_setters_while_frames_run(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    done = threading.Event()

    def change() -> None:
        i = 0
        while not done.is_set():
            stream.set_prompt(f"prompt {i % 3}")
            stream.set_seed(i % 5)
            stream.set_guidance_scale(1.0 + (i % 4) / 10)
            i += 1

    changer = threading.Thread(target=change)
    changer.start()
    try:
        for frame in frames:
            assert stream.img2img(frame).shape == (SIZE, SIZE, 3)
    finally:
        done.set()
        changer.join()
    assert stream.stats["frames_out"] == len(frames)


# ---- errors -------------------------------------------------------------------------------------


def test_bad_settings(model: streamdiff.Model) -> None:
    with pytest.raises(streamdiff.InvalidArgument, match="50") as e:
        streamdiff.Stream(model, **{**STREAM_ARGS, "width": 50})
    assert e.value.status == streamdiff.Status.INVALID_ARGUMENT
    assert isinstance(e.value, ValueError)
    with pytest.raises(streamdiff.InvalidArgument, match="cfg_type"):
        streamdiff.Stream(model, **{**STREAM_ARGS, "cfg_type": "some"})
    with pytest.raises(streamdiff.InvalidArgument, match="60"):
        streamdiff.Stream(model, **{**STREAM_ARGS, "t_index_list": [60]})
    with pytest.raises(streamdiff.InvalidArgument, match="seed"):
        streamdiff.Stream(model, **{**STREAM_ARGS, "seed": -1})


def test_bad_frames(stream: streamdiff.Stream, frames: list[np.ndarray]) -> None:
    with pytest.raises(streamdiff.InvalidArgument, match=r"\(64, 64, 3 or 4\)"):
        stream.img2img(frames[0], out=np.empty((32, 64, 3), np.uint8))
    with pytest.raises(streamdiff.InvalidArgument):
        stream.img2img(frames[0], out=np.empty((64, 64, 3), np.float32))
    with pytest.raises(streamdiff.InvalidArgument, match="read-only"):
        stream.img2img(frames[0], out=frames[1])
    with pytest.raises(streamdiff.InvalidArgument, match="packed"):
        stream.img2img(frames[0], out=np.empty((64, 128, 3), np.uint8)[:, ::2])
    with pytest.raises(streamdiff.InvalidArgument, match="uint8"):
        stream.img2img(frames[0].astype(np.float32))
    with pytest.raises(streamdiff.InvalidArgument):
        stream.img2img(frames[0][..., 0])
    with pytest.raises(TypeError):
        stream.img2img("frame.png")
    with pytest.raises(streamdiff.InvalidArgument, match='"rgb" or "bgr"'):
        stream.img2img(frames[0], format="yuv")


def test_bad_blends(stream: streamdiff.Stream) -> None:
    with pytest.raises(streamdiff.InvalidArgument, match="slerp"):
        stream.set_prompt_blend([("a", 1), ("b", 1), ("c", 1)], blend="slerp")
    with pytest.raises(streamdiff.InvalidArgument, match="blend"):
        stream.set_prompt_blend([("a", 1), ("b", 1)], blend="cubic")
    with pytest.raises(streamdiff.InvalidArgument):
        stream.set_prompt_blend([])
    with pytest.raises(streamdiff.InvalidArgument, match="slerp"):
        stream.set_seed_blend([(1, 1), (2, 1), (3, 1)], blend="slerp")


def test_closed_stream(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        assert not s.closed
        s.img2img(frames[0])
    assert s.closed and "closed" in repr(s)
    s.close()  # idempotent
    for call in (lambda: s.img2img(frames[0]), lambda: s.set_prompt("x"), lambda: s.config,
                 lambda: s.stats, lambda: s.start()):
        with pytest.raises(streamdiff.InvalidHandle) as e:
            call()
        assert e.value.status == streamdiff.Status.INVALID_HANDLE
