#!/usr/bin/env python3
"""Stylises a camera (or a video file) live with streamdiff, through OpenCV.

    pip install ./python opencv-python-headless      # or opencv-python for --show
    python3 examples/python/webcam.py --model models/sd-turbo --taesd models/taesd \\
        --prompt "an oil painting" --t-index 35 --cfg none --show
    python3 examples/python/webcam.py --model ... --input in.mp4 --output out.mp4

Frames go through the stream's asynchronous mode: a reader thread submits the frames it reads
while the main thread polls the stylised ones and shows or writes them. A camera uses the
"drop_oldest" queue policy (the freshest frame always goes next, stale ones are dropped); a
file uses "block" (every frame is stylised). OpenCV frames are BGR, and the stream reads and
writes BGR directly (format="bgr"), so no colour conversion is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Optional

import cv2
import numpy as np

import streamdiff


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="diffusers folder or .safetensors checkpoint")
    p.add_argument("--taesd", help="TAESD folder or file (instead of the model's VAE)")
    p.add_argument("--prompt", default="an oil painting, masterpiece")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--t-index", type=int, nargs="+", default=[32, 45],
                   help="denoising steps used (sd-turbo: 35)")
    p.add_argument("--cfg", default="self", choices=["none", "full", "self", "initialize"],
                   help="guidance (sd-turbo: none)")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--camera", type=int, default=0, help="camera index for cv2.VideoCapture")
    p.add_argument("--input", help="a video file instead of the camera")
    p.add_argument("--output", help="write the stylised frames to this video file (.mp4)")
    p.add_argument("--show", action="store_true",
                   help="show the frames in a window (q quits; needs opencv-python, not -headless)")
    p.add_argument("--frames", type=int, default=0, help="stop after N input frames (0: all)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "f32", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    return p.parse_args(argv)


def open_source(args: argparse.Namespace) -> tuple[cv2.VideoCapture, bool]:
    """The capture to read and whether it is a live camera."""
    if args.input:
        cap = cv2.VideoCapture(args.input)
        if not cap.isOpened():
            sys.exit(f"webcam.py: cannot open the video file {args.input}")
        return cap, False
    cap = cv2.VideoCapture(args.camera)
    if not cap.isOpened():
        sys.exit(f"webcam.py: no camera {args.camera}; pass a video file with --input FILE")
    return cap, True


def display_available() -> bool:
    return sys.platform in ("win32", "darwin") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def read_frames(
    cap: cv2.VideoCapture, stream: streamdiff.Stream, limit: int, stop: threading.Event,
    errors: list[BaseException],
) -> None:
    """The producer: submits BGR frames (tagged with their number) until the end, the limit
    or a stop request; then ends the input, so that the consumer's poll() finishes."""
    try:
        count = 0
        while not stop.is_set() and (limit <= 0 or count < limit):
            ok, frame = cap.read()
            if not ok or not stream.submit(frame, tag=count, format="bgr"):
                break
            count += 1
    except BaseException as e:
        errors.append(e)
    finally:
        stream.end_input()


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    show = args.show and display_available()
    if args.show and not show:
        print("webcam.py: no display; not showing the frames", file=sys.stderr)
    if not show and not args.output:
        print("webcam.py: neither --show nor --output: the frames are only counted",
              file=sys.stderr)

    cap, live = open_source(args)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    model = streamdiff.Model.load(args.model, taesd=args.taesd, device=args.device,
                                  dtype=args.dtype, threads=args.threads)
    stream = streamdiff.Stream(
        model, width=args.width, height=args.height, t_index_list=args.t_index,
        cfg_type=args.cfg, prompt=args.prompt, negative_prompt=args.negative_prompt,
        seed=args.seed,
    )
    writer: Optional[cv2.VideoWriter] = None
    if args.output:
        writer = cv2.VideoWriter(args.output, cv2.VideoWriter.fourcc(*"mp4v"), fps,
                                 (args.width, args.height))
        if not writer.isOpened():
            sys.exit(f"webcam.py: cannot write the video file {args.output}")

    stop = threading.Event()
    reader_errors: list[BaseException] = []
    written = 0
    started = time.perf_counter()
    with stream:
        stream.start(policy="drop_oldest" if live else "block", output_format="bgr")
        reader = threading.Thread(target=read_frames,
                                  args=(cap, stream, args.frames, stop, reader_errors))
        reader.start()
        out = np.empty((args.height, args.width, 3), np.uint8)  # reused for every frame
        try:
            while stream.poll(out=out) is not None:
                written += 1
                if writer is not None:
                    writer.write(out)
                if show:
                    cv2.imshow("streamdiff", out)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        stop.set()
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            while stream.poll() is not None:  # a reader waiting for room in the queue ends
                pass
            reader.join()
            cap.release()
            if writer is not None:
                writer.release()
            if show:
                cv2.destroyAllWindows()
            stream.stop()  # raises an error the worker met
        seconds = time.perf_counter() - started
        stats = stream.stats
    if reader_errors:
        raise reader_errors[0]
    print(
        f"{written} frames in {seconds:.2f} s ({written / max(seconds, 1e-9):.1f} fps); "
        f"latency p50 {stats['latency_p50_ms']:.1f} ms; dropped {stats['dropped']}"
        + (f"; wrote {args.output}" if args.output else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
