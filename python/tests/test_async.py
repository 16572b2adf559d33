"""The asynchronous mode: start / submit / end_input / poll / stop, and callbacks."""

from __future__ import annotations

import threading


import numpy as np
import pytest

import streamdiff
from conftest import SIZE, STREAM_ARGS


@pytest.fixture(scope="module")
def sync_outputs(model: streamdiff.Model, frames: list[np.ndarray]) -> list[np.ndarray]:
    """What synchronous img2img gives for frames 0..4 on a fresh stream."""
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        return [s.img2img(frame) for frame in frames[:5]]


def drain(stream: streamdiff.Stream) -> list[tuple[np.ndarray, streamdiff.FrameInfo]]:
    outputs = []
    while (result := stream.poll()) is not None:
        outputs.append(result)
    return outputs


def test_submit_poll(
    model: streamdiff.Model, frames: list[np.ndarray], sync_outputs: list[np.ndarray]
) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        s.start()
        for tag, frame in enumerate(frames[:5]):
            assert s.submit(frame, tag=tag)
        s.end_input()
        outputs = drain(s)
        s.stop()
        assert [info.tag for _, info in outputs] == [0, 1, 2, 3, 4]
        assert [info.index for _, info in outputs] == [0, 1, 2, 3, 4]
        # Two steps in flight: after the warm-up, output k shows input k - 1.
        assert [info.shown_tag for _, info in outputs] == [0, 0, 1, 2, 3]
        assert all(info.latency_ms > 0 for _, info in outputs)
        for (out, _), expected in zip(outputs, sync_outputs):
            assert out.shape == (SIZE, SIZE, 3)
            assert np.array_equal(out, expected)
        stats = s.stats
        assert stats["frames_in"] == 5 and stats["frames_out"] == 5 and stats["dropped"] == 0
        # Stopped: submit reports it, poll has nothing more.
        assert s.submit(frames[0]) is False
        assert s.poll(timeout_ms=0) is None
        assert s.poll() is None


def test_bgr_output_and_out_buffer(
    model: streamdiff.Model, frames: list[np.ndarray], sync_outputs: list[np.ndarray]
) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        s.start(output_format="bgra", queue_capacity=1, output_capacity=1)
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames[:3]]
        out = np.empty((SIZE, SIZE, 3), np.uint8)

        def produce() -> None:  # one producer thread, the consumer here (the contract's two)
            for tag, frame in enumerate(bgr):
                s.submit(frame, tag=tag, format="bgr")
            s.end_input()

        producer = threading.Thread(target=produce)
        producer.start()
        first, info = s.poll()
        assert first.shape == (SIZE, SIZE, 4) and info.tag == 0
        assert np.array_equal(first[..., 2::-1], sync_outputs[0]) and (first[..., 3] == 255).all()
        second, _ = s.poll(out=out)  # 3 channels, BGR (output_format's order)
        assert second is out and np.array_equal(out[..., ::-1], sync_outputs[1])
        third, _ = s.poll(out=out, format="rgb")
        assert np.array_equal(third, sync_outputs[2])
        producer.join()
        assert s.poll() is None
        s.stop()


def test_callback(
    model: streamdiff.Model, frames: list[np.ndarray], sync_outputs: list[np.ndarray]
) -> None:
    received: list[tuple[np.ndarray, streamdiff.FrameInfo, bool]] = []

    def on_output(image: np.ndarray, info: streamdiff.FrameInfo) -> None:
        is_worker = threading.current_thread() is not threading.main_thread()
        received.append((image, info, is_worker))

    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        s.start(callback=on_output)
        for tag, frame in enumerate(frames[:5]):
            assert s.submit(frame, tag=100 + tag)
        s.end_input()
        assert s.poll() is None  # in callback mode, waits for the worker to finish
        s.stop()
    assert [info.tag for _, info, _ in received] == [100, 101, 102, 103, 104]
    assert all(is_worker for _, _, is_worker in received)
    for (image, _, _), expected in zip(received, sync_outputs):
        assert np.array_equal(image, expected)


def test_callback_error_is_raised_by_stop(
    model: streamdiff.Model, frames: list[np.ndarray]
) -> None:
    def fail(image: np.ndarray, info: streamdiff.FrameInfo) -> None:
        raise RuntimeError(f"callback failed on {info.tag}")

    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        s.start(callback=fail)
        s.submit(frames[0], tag=3)
        s.end_input()
        s.poll()
        with pytest.raises(RuntimeError, match="on 3"):
            s.stop()
        s.stop()  # reported once


def test_drop_oldest(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        s.start(policy="drop_oldest", queue_capacity=1, output_capacity=1)
        for tag in range(20):
            assert s.submit(frames[tag % len(frames)], tag=tag)  # never waits
        s.end_input()
        tags = [info.tag for _, info in drain(s)]
        s.stop()
        stats = s.stats
    assert tags == sorted(tags) and len(set(tags)) == len(tags) and 1 <= len(tags) <= 20
    assert tags[-1] == 19  # the freshest frame is never the one dropped
    assert stats["frames_in"] == 20
    assert stats["dropped"] == 20 - len(tags)


def test_async_errors(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    with streamdiff.Stream(model, **STREAM_ARGS) as s:
        with pytest.raises(streamdiff.Closed):
            s.submit(frames[0])
        with pytest.raises(streamdiff.InvalidArgument, match="policy"):
            s.start(policy="newest")
        with pytest.raises(streamdiff.InvalidArgument, match="queue_capacity"):
            s.start(queue_capacity=0)
        s.start()
        assert s.poll(timeout_ms=0) is None  # nothing submitted yet
        with pytest.raises(streamdiff.InvalidArgument, match="asynchronous"):
            s.img2img(frames[0])  # no synchronous frames while the worker runs
        s.stop()
    with streamdiff.Stream(model, **STREAM_ARGS, frame_buffer_size=2) as s:
        with pytest.raises(streamdiff.InvalidArgument, match="frame_buffer_size"):
            s.start()


def test_close_while_running(model: streamdiff.Model, frames: list[np.ndarray]) -> None:
    received: list[int] = []
    s = streamdiff.Stream(model, **STREAM_ARGS)
    s.start(callback=lambda image, info: received.append(info.tag))
    for tag in range(3):
        s.submit(frames[tag], tag=tag)
    s.close()  # stops the worker, frees the stream; queued inputs are dropped
    assert s.closed and len(received) <= 3
