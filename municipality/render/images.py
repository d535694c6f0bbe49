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


def encode_image(image: Image.Image | bytes) -> EncodedImage:
    """Encode a PIL image or image file bytes (PNG, …) for PDF, using the process cache.

    1-bit and grayscale images stay 1-bit/grayscale; colour becomes RGB; an alpha channel (or a
    palette transparency) becomes a soft mask so a seal can sit over printed text.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        raw = bytes(image)
        key = hashlib.sha256(raw).hexdigest()[:16]
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
        digest = hashlib.sha256(f"{pil.mode}{pil.size}".encode())
        digest.update(pil.tobytes())
        key = digest.hexdigest()[:16]
        found = _get(key)
        if found is not None:
            return found
    encoded = _encode(pil, key)
    with _lock:
        _cache[key] = encoded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return encoded


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
