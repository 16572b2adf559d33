"""numpy arrays (and PIL images) as the C API's sd_image / sd_image_out, without copies."""

from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ._errors import InvalidArgument, check
from ._lib import lib, sd_image, sd_image_out

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: What a frame function takes as an image: a uint8 array HxWx3 / HxWx4 or a PIL image.
ImageLike = Union[np.ndarray, "PILImage.Image"]

# sd_pixel_format by (channel order, channels).
_FORMATS = {("rgb", 3): 0, ("bgr", 3): 1, ("rgb", 4): 2, ("bgr", 4): 3}
#: Names accepted where a pixel format is named outright (async outputs).
FORMAT_NAMES = {"rgb": 0, "bgr": 1, "rgba": 2, "bgra": 3}

_u8p = ctypes.POINTER(ctypes.c_uint8)


def channel_order(format: str) -> str:
    """Checks a ``format=`` argument: "rgb" or "bgr" (the alpha channel goes by the shape)."""
    order = format.lower()
    if order not in ("rgb", "bgr"):
        raise InvalidArgument(f'format must be "rgb" or "bgr", got {format!r}')
    return order


def pixel_format(order: str, channels: int) -> int:
    return _FORMATS[(order, channels)]


def channels_of(pixel_format: int) -> int:
    return 3 if pixel_format < 2 else 4


def _is_pil(image: object) -> bool:
    module = type(image).__module__
    return module.startswith("PIL.") and hasattr(image, "convert")


def _rows_usable(a: np.ndarray) -> bool:
    """True when a HxWxC uint8 array can be handed over as it is: packed pixels, rows at a
    positive stride that does not overlap the next row."""
    h, w, c = a.shape
    return a.strides[2] == 1 and a.strides[1] == c and (h == 1 or a.strides[0] >= w * c)


def as_pixels(image: ImageLike) -> tuple[np.ndarray, bool]:
    """image as a HxWx3|4 uint8 array whose rows may be passed by pointer (copied only when
    its pixels are not packed), and whether it was a PIL image (RGB/RGBA order)."""
    if _is_pil(image):
        pil: Any = image
        if pil.mode not in ("RGB", "RGBA"):
            pil = pil.convert("RGB")
        return np.asarray(pil), True
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a numpy array or a PIL image, got {type(image)!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidArgument(
            f"image: expected a uint8 array of shape (height, width, 3 or 4), got "
            f"{image.dtype} {image.shape}"
        )
    if not _rows_usable(image):
        image = np.ascontiguousarray(image)
    return image, False


def _stride(a: np.ndarray) -> int:
    # numpy gives a length-1 axis any stride; the library reads one row there.
    h, w, c = a.shape
    return int(a.strides[0]) if h > 1 else w * c


def image_in(a: np.ndarray, order: str) -> sd_image:
    """An sd_image over a (from as_pixels); a must outlive the call that uses it."""
    h, w, c = a.shape
    return sd_image(a.ctypes.data_as(_u8p), w, h, _stride(a), pixel_format(order, c))


def new_output(height: int, width: int, channels: int) -> np.ndarray:
    return np.empty((height, width, channels), np.uint8)


def check_output(out: np.ndarray, height: int, width: int) -> None:
    """out must be a writable uint8 array (height, width, 3|4) with packed pixels."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy array, got {type(out)!r}")
    if (
        out.dtype != np.uint8
        or out.ndim != 3
        or out.shape[:2] != (height, width)
        or out.shape[2] not in (3, 4)
    ):
        raise InvalidArgument(
            f"out: expected a uint8 array of shape ({height}, {width}, 3 or 4) (the stream's "
            f"size), got {out.dtype} {out.shape}"
        )
    if not out.flags.writeable:
        raise InvalidArgument("out: the array is read-only")
    if not _rows_usable(out):
        raise InvalidArgument(
            f"out: pixels must be packed (strides (row, {out.shape[2]}, 1)), got strides "
            f"{out.strides}"
        )


def image_out(out: np.ndarray, order: str) -> sd_image_out:
    """An sd_image_out over a checked output array."""
    h, w, c = out.shape
    return sd_image_out(out.ctypes.data_as(_u8p), w, h, _stride(out), pixel_format(order, c))


def copy_from(image: sd_image) -> np.ndarray:
    """A numpy copy of pixels the library owns (e.g. a callback's output)."""
    c = channels_of(image.format)
    stride = image.stride or image.width * c
    rows = np.ctypeslib.as_array(image.data, shape=(image.height, stride))
    return rows[:, : image.width * c].reshape(image.height, image.width, c).copy()


def to_pil(array: np.ndarray, format: str = "rgb") -> PILImage.Image:
    """A PIL image (RGB or RGBA) of an HxWx3|4 uint8 array in the given channel order."""
    from PIL import Image

    order = channel_order(format)
    if order == "bgr":
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    return Image.fromarray(np.ascontiguousarray(array))  # RGB or RGBA by the shape


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads a PNG or JPEG file with the library's decoder: an HxWx3 RGB uint8 array."""
    image = sd_image()
    check(lib.sd_image_read(os.fsencode(path), ctypes.byref(image)))
    try:
        return copy_from(image)
    finally:
        lib.sd_image_free(ctypes.byref(image))


def write_image(path: str | os.PathLike[str], image: ImageLike, format: str = "rgb") -> None:
    """Writes a PNG or JPEG file (by the extension) from an HxWx3|4 uint8 array or PIL image."""
    pixels, is_pil = as_pixels(image)
    view = image_in(pixels, "rgb" if is_pil else channel_order(format))
    check(lib.sd_image_write(os.fsencode(path), ctypes.byref(view)))
