"""Raster images (the municipal seal, a registered seal impression) as PDF image data.

Encoded once per distinct image per process: municipalities reuse the same seal on every page.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from municipality.render.errors import RenderError

_CACHE_SIZE = 64
_ZLIB_LEVEL = 6  # images are encoded once and cached, so a better ratio is worth it


@dataclass(frozen=True)
class EncodedImage:
    """Flate-compressed samples ready for a PDF image XObject, plus an optional alpha mask."""

    key: str  # content digest, also used to name the XObject
    width: int
    height: int
    colour_space: str  # "DeviceGray" or "DeviceRGB"
    bits: int
    data: bytes
    alpha: bytes | None  # Flate-compressed 8-bit soft mask, same size


_cache: OrderedDict[str, EncodedImage] = OrderedDict()
_lock = threading.Lock()


def encode_image(
    image: Image.Image | bytes, min_size: tuple[int, int] = (0, 0)
) -> EncodedImage:
    """Encode a PIL image or image file bytes (PNG, …) for PDF, using the process cache.

    1-bit and grayscale images stay 1-bit/grayscale; colour becomes RGB; an alpha channel (or a
    palette transparency) becomes a soft mask so a seal can sit over printed text. An image
    with fewer pixels than ``min_size`` is resampled up to it, so that raster content prints
    at the resolution the page asks for (DOC-RESOLUTION) whatever size the source had.
    """
    sized = f"@{min_size[0]}x{min_size[1]}"
    if isinstance(image, bytes | bytearray | memoryview):
        raw = bytes(image)
        key = hashlib.sha256(raw + sized.encode()).hexdigest()[:16]
        found = _get(key)
        if found is not None:
            return found
        try:
            pil = Image.open(io.BytesIO(raw))
            pil.load()
        except Exception as exc:  # PIL raises many types for bad image data
            raise RenderError(f"image data cannot be decoded: {exc}") from exc
    else:
        pil = image
        digest = hashlib.sha256(f"{pil.mode}{pil.size}{sized}".encode())
        digest.update(pil.tobytes())
        key = digest.hexdigest()[:16]
        found = _get(key)
        if found is not None:
            return found
    encoded = _encode(_at_least(pil, min_size), key)
    with _lock:
        _cache[key] = encoded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return encoded


def _at_least(pil: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The image resampled up to ``size`` when it has fewer pixels (never down)."""
    if pil.width >= size[0] and pil.height >= size[1]:
        return pil
    target = (max(pil.width, size[0]), max(pil.height, size[1]))
    if pil.mode == "1":  # keep hard edges: resample in gray, threshold back
        return pil.convert("L").resize(target, Image.Resampling.LANCZOS).point(
            lambda v: 255 if v >= 128 else 0).convert("1")
    if pil.mode == "P":
        pil = pil.convert("RGBA")
    return pil.resize(target, Image.Resampling.LANCZOS)


def _get(key: str) -> EncodedImage | None:
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _encode(pil: Image.Image, key: str) -> EncodedImage:
    alpha: bytes | None = None
    if pil.mode == "P" and "transparency" in pil.info:
        pil = pil.convert("RGBA")
    if pil.mode in ("RGBA", "LA", "PA"):
        alpha = zlib.compress(pil.getchannel("A").tobytes(), _ZLIB_LEVEL)
        pil = pil.convert("L" if pil.mode == "LA" else "RGB")
    if pil.mode == "1":
        # PIL packs 1-bit rows MSB first, padded to a byte, 1 = white: PDF's layout exactly.
        space, bits = "DeviceGray", 1
    elif pil.mode == "L":
        space, bits = "DeviceGray", 8
    else:
        pil = pil.convert("RGB")
        space, bits = "DeviceRGB", 8
    return EncodedImage(
        key=key,
        width=pil.width,
        height=pil.height,
        colour_space=space,
        bits=bits,
        data=zlib.compress(pil.tobytes(), _ZLIB_LEVEL),
        alpha=alpha,
    )


def clear_cache() -> None:
    """Forget every encoded image (cold-cache benchmarks)."""
    with _lock:
        _cache.clear()
