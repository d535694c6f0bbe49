"""The keyed block shuffle of the back side, and the block-wise comparison front ↔ back.

The image is cut into ``block`` × ``block`` squares, numbered row by row; square ``i`` of the
output is square ``perm[i]`` of the input turned by one of the 8 rotations/reflections of the
square. Exact derivation (so that another implementation can unscramble):

* seed = HMAC-SHA256(scramble key, ``b"konbini-kofu scramble v1|<rows>x<cols>|<block>"``), the
  image size in pixels, so one key never yields the same shuffle for two geometries;
* stream = ChaCha20 (RFC 7539 block function, counter 0, nonce all zero) under the seed;
* for n blocks: bytes ``[0, 8n)`` are n little-endian uint64 sort keys, ``perm`` is their stable
  argsort; bytes ``[8n, 9n)`` & 7 are the turns: bit 2 mirrors the block left–right first, the low
  two bits then rotate it that many quarter turns counter-clockwise.

Blocks are not inverted: inverting blank paper would print black squares.

If the image size is not a multiple of ``block``, the strips of the right and bottom remainder stay
in place (the back side always scrambles an exact grid, see :mod:`konbini.docimage.backside`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from konbini.docimage.errors import ImageShapeMismatch

DEFAULT_BLOCK = 16
_CONTEXT = b"konbini-kofu scramble v1"
_NONCE = bytes(16)  # the key is fresh per geometry (HMAC of the context), so a fixed nonce is safe


@dataclass(frozen=True)
class Shuffle:
    """The derived shuffle: ``perm[i]`` is the source block of output block ``i``; ``turn[i]`` in
    0..7 is its rotation (low two bits, quarter turns) and reflection (bit 2)."""

    perm: np.ndarray
    turn: np.ndarray
    groups: tuple[np.ndarray, ...]  # for each turn 0..7, the output blocks turned that way


def _keystream(key: bytes, context: bytes, length: int) -> bytes:
    seed = hmac.new(key, context, hashlib.sha256).digest()
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    return encryptor.update(bytes(length))


@functools.lru_cache(maxsize=16)  # a centre reuses one key and one geometry for every page
def derive_shuffle(key: bytes, rows: int, cols: int, block: int = DEFAULT_BLOCK) -> Shuffle:
    """The shuffle for an image of ``rows`` × ``cols`` pixels (low-level; see :func:`scramble`)."""
    if not key:
        raise ValueError("the scramble key is empty")
    if block < 2:
        raise ValueError("block must be at least 2 pixels")
    count = (rows // block) * (cols // block)
    if count == 0:
        raise ValueError(f"image {rows}×{cols} holds no {block}-pixel block")
    context = _CONTEXT + f"|{rows}x{cols}|{block}".encode()
    stream = _keystream(key, context, count * 9)
    sort_keys = np.frombuffer(stream[: count * 8], dtype="<u8")
    # 64-bit random sort keys: a tie (which would bias the permutation) has probability ~n²/2⁶⁵.
    perm = np.argsort(sort_keys, kind="stable")
    turn = np.frombuffer(stream[count * 8 :], dtype=np.uint8) & 7
    groups = tuple(np.flatnonzero(turn == t) for t in range(8))
    for array in (perm, turn, *groups):
        array.flags.writeable = False  # cached and shared between calls
    return Shuffle(perm=perm, turn=turn, groups=groups)


def _blocks(image: np.ndarray, block: int) -> np.ndarray:
    rows, cols = image.shape[0] // block, image.shape[1] // block
    grid = image[: rows * block, : cols * block]
    return grid.reshape(rows, block, cols, block).swapaxes(1, 2).reshape(-1, block, block)


def _assemble(out: np.ndarray, blocks: np.ndarray, block: int) -> None:
    rows, cols = out.shape[0] // block, out.shape[1] // block
    out[: rows * block, : cols * block] = (
        blocks.reshape(rows, cols, block, block).swapaxes(1, 2).reshape(rows * block, cols * block)
    )


def _transform(chosen: np.ndarray, turn: int, inverse: bool) -> np.ndarray:
    quarter, mirror = turn & 3, bool(turn & 4)
    if inverse:
        chosen = np.rot90(chosen, -quarter, axes=(1, 2))
        return chosen[:, :, ::-1] if mirror else chosen
    chosen = chosen[:, :, ::-1] if mirror else chosen
    return np.rot90(chosen, quarter, axes=(1, 2))


def _check(image: np.ndarray) -> None:
    if image.ndim != 2:
        raise ValueError("expected a 2-D grayscale image")


def scramble(image: np.ndarray, key: bytes, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """``image`` with its blocks shuffled and turned under ``key``."""
    _check(image)
    shuffle = derive_shuffle(key, image.shape[0], image.shape[1], block)
    source = _blocks(image, block)
    moved = np.empty_like(source)
    for turn, index in enumerate(shuffle.groups):
        moved[index] = _transform(source[shuffle.perm[index]], turn, inverse=False)
    out = image.copy()
    _assemble(out, moved, block)
    return out


def unscramble(image: np.ndarray, key: bytes, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The inverse of :func:`scramble` under the same ``key`` and ``block``."""
    _check(image)
    shuffle = derive_shuffle(key, image.shape[0], image.shape[1], block)
    source = _blocks(image, block)
    restored = np.empty_like(source)
    for turn, index in enumerate(shuffle.groups):
        restored[shuffle.perm[index]] = _transform(source[index], turn, inverse=True)
    out = image.copy()
    _assemble(out, restored, block)
    return out


# Comparison of the front with the unscrambled back. Both are reduced to cells of CELL × CELL
# pixels (mean gray) so that a scan's noise averages out, and each cell is compared with the
# range the other side's cell takes under shifts of up to REACH pixels (residual misregistration),
# while a stroke drawn over the front still moves a cell by far more than the threshold.
CELL = 4
REACH = 1
CELL_THRESHOLD = 56.0  # gray levels (of 255) a cell may differ before its block counts as changed
MEAN_THRESHOLD = 12.0  # mean absolute difference (gray levels) over the whole image


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_front_back`: the mean absolute difference of the cell images,
    the (row, column) indices of blocks that differ, and whether the two match."""

    mean_abs_diff: float
    changed_blocks: list[tuple[int, int]]
    ok: bool


def _percentile_u8(counts: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear method) from the histogram of uint8 ``values``."""
    cumulative = np.cumsum(counts)
    position = q / 100 * (int(cumulative[-1]) - 1)
    low = int(np.searchsorted(cumulative, math.floor(position), side="right"))
    high = int(np.searchsorted(cumulative, math.ceil(position), side="right"))
    return low + (high - low) * (position - math.floor(position))


def _normalised(image: np.ndarray) -> np.ndarray:
    # Stretch paper white to 255 and the darkest ink to 0, so a grey scan compares with a render.
    # On uint8 images through a 256-entry table: the same values, without sorting the pixels.
    if image.dtype == np.uint8:
        counts = np.bincount(image.ravel(), minlength=256)
        white, black = _percentile_u8(counts, 95), _percentile_u8(counts, 0.2)
        values = np.arange(256, dtype=np.float32)
    else:
        values = image.astype(np.float32)
        white = float(np.percentile(values, 95))
        black = float(np.percentile(values, 0.2))
    if white - black < 64:  # nothing dark on the page: only shift the paper to white
        table = np.clip(values + (255.0 - white), 0, 255)
    else:
        table = np.clip((values - black) * (255.0 / (white - black)), 0, 255)
    return table[image] if image.dtype == np.uint8 else table


def _shifted_cell_range(
    image: np.ndarray, cell: int, reach: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell, the least and greatest mean over the image moved by up to ``reach`` pixels, and
    the unmoved mean."""
    padded = np.pad(image.astype(np.float32, copy=False), reach, mode="edge")
    rows, cols = image.shape[0] // cell, image.shape[1] // cell
    low = np.full((rows, cols), np.inf, dtype=np.float32)
    high = np.full((rows, cols), -np.inf, dtype=np.float32)
    centre = low
    for dy in range(2 * reach + 1):
        # Separable box sums: the cell's rows first (one pass per row offset), then its columns
        # on the much smaller result, for each column offset.
        band = padded[dy : dy + rows * cell].reshape(rows, cell, -1).sum(axis=1)
        for dx in range(2 * reach + 1):
            sums = band[:, dx : dx + cols * cell].reshape(rows, cols, cell).sum(axis=2)
            means = sums / (cell * cell)
            if (dy, dx) == (reach, reach):
                centre = means
            np.minimum(low, means, out=low)
            np.maximum(high, means, out=high)
    return low, high, centre


def _outside(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(value - high, low - value), 0.0)


def compare_front_back(
    front: np.ndarray,
    unscrambled_back: np.ndarray,
    block: int = DEFAULT_BLOCK,
    *,
    cell_threshold: float = CELL_THRESHOLD,
    mean_threshold: float = MEAN_THRESHOLD,
) -> Comparison:
    """Compare ``front`` with ``unscrambled_back`` (same size) block by block.

    Both are normalised to paper white and cut into CELL × CELL cells. A cell's difference is how
    far its mean lies outside the range the other image's cell takes when that image moves by up to
    REACH pixels (whichever direction gives less), so a scan's residual misregistration and blur
    do not count, while ink added or removed does. A block counts as changed when one of its cells
    differs by more than ``cell_threshold`` gray levels.
    """
    if front.shape != unscrambled_back.shape:
        raise ImageShapeMismatch(f"front {front.shape} and back {unscrambled_back.shape} differ")
    if block % CELL:
        raise ValueError(f"block must be a multiple of {CELL}")
    a, b = _normalised(front), _normalised(unscrambled_back)
    a_low, a_high, a_cells = _shifted_cell_range(a, CELL, REACH)
    b_low, b_high, b_cells = _shifted_cell_range(b, CELL, REACH)
    diff = np.minimum(_outside(a_cells, b_low, b_high), _outside(b_cells, a_low, a_high))
    per_block = block // CELL
    rows, cols = diff.shape[0] // per_block, diff.shape[1] // per_block
    block_max = (
        diff[: rows * per_block, : cols * per_block]
        .reshape(rows, per_block, cols, per_block)
        .max(axis=(1, 3))
    )
    changed = [(int(r), int(c)) for r, c in np.argwhere(block_max > cell_threshold)]
    mean = float(np.abs(a_cells - b_cells).mean())
    return Comparison(mean, changed, ok=not changed and mean <= mean_threshold)


def bench_scramble(
    repeat: int = 15, rows: int = 1754, cols: int = 1240, block: int = DEFAULT_BLOCK
) -> tuple[float, float]:
    """Median milliseconds of :func:`scramble` and :func:`unscramble` on a ``rows`` × ``cols``
    page-like image (the 150 dpi A4 size by default)."""
    generator = np.random.default_rng(1)
    image = np.where(generator.random((rows, cols)) < 0.1, 0, 255).astype(np.uint8)
    key = bytes(range(32))
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        start = time.perf_counter()
        scrambled = scramble(image, key, block)
        middle = time.perf_counter()
        unscramble(scrambled, key, block)
        end = time.perf_counter()
        times[0].append((middle - start) * 1000)
        times[1].append((end - middle) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])
