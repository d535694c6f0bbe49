"""Exact area resampling of a piecewise-constant image (each pixel a uniform square)."""

from __future__ import annotations

import numpy as np

_LONG_SPAN = 8  # pixels per span from which summing spans beats one cumulative sum


def _axis_sums(values: np.ndarray, count: int) -> np.ndarray:
    """Sums of ``values`` over ``count`` equal, fractional-edged spans of axis 1."""
    length = values.shape[1]
    edges = np.arange(count + 1) * (length / count)
    if length >= _LONG_SPAN * count:
        whole = np.floor(edges).astype(np.int64)
        part = edges - whole
        # Whole pixels from one edge's pixel up to the next edge's pixel; then each inner edge's
        # pixel is split: its part left of the edge belongs to the span before it.
        spans = np.add.reduceat(values, whole[:-1], axis=1, dtype=np.float64)
        split = values[:, whole[1:-1]] * part[1:-1]
        spans[:, :-1] += split
        spans[:, 1:] -= split
        return spans
    # Short spans: the integral up to each edge is the cumulative sum up to the edge's pixel plus
    # the covered part of that pixel (the last edge is the far side of the last pixel).
    cumulative = np.zeros((values.shape[0], length + 1))
    np.cumsum(values, axis=1, dtype=np.float64, out=cumulative[:, 1:])
    pixel = np.minimum(np.floor(edges).astype(np.int64), length - 1)
    at_edges = cumulative[:, pixel] + values[:, pixel] * (edges - pixel)
    return np.diff(at_edges, axis=1)


def area_means(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean of ``values`` over each cell of a ``rows`` × ``cols`` grid of equal cells spanning the
    image, with fractional cell edges (float64). Cells must be at least one pixel."""
    height, width = values.shape
    if not (0 < rows <= height and 0 < cols <= width):
        raise ValueError(f"cannot average {height}×{width} pixels into {rows}×{cols} cells")
    across = _axis_sums(values, cols)  # height × cols
    sums = _axis_sums(np.ascontiguousarray(across.T), rows).T  # rows × cols
    return sums / ((width / cols) * (height / rows))


def _axis_sums_fast(values: np.ndarray, count: int) -> np.ndarray:
    """:func:`_axis_sums` in float32 from an exact integer (uint8 input) or float32 running sum:
    enough for a uint8 result (the running sums of a page stay far below 2**24)."""
    length = values.shape[1]
    edges = np.arange(count + 1) * (length / count)
    pixel = np.minimum(np.floor(edges).astype(np.int64), length - 1)
    integral = values.dtype == np.uint8
    cumulative = np.zeros((values.shape[0], length + 1), np.int32 if integral else np.float32)
    np.cumsum(values, axis=1, out=cumulative[:, 1:])
    part = (edges - pixel).astype(np.float32)
    at_edges = cumulative[:, pixel].astype(np.float32) + values[:, pixel] * part
    return np.diff(at_edges, axis=1)


def resize_area(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``image`` (uint8) reduced to ``rows`` × ``cols`` by exact area averaging, in float32
    (within one gray level of :func:`area_means`, about twice as fast; for images, not for the
    fingerprint). Pillow's box filter is not a substitute: it weighs whole pixels, not areas."""
    height, width = image.shape
    if not (0 < rows <= height and 0 < cols <= width):
        raise ValueError(f"cannot average {height}×{width} pixels into {rows}×{cols} cells")
    if image.dtype != np.uint8:
        raise ValueError("expected a uint8 image")
    if (rows, cols) == (height, width):
        return image.copy()
    across = _axis_sums_fast(image, cols)  # height × cols
    sums = _axis_sums_fast(np.ascontiguousarray(across.T), rows).T
    means = sums * np.float32(rows * cols / (height * width))
    return np.clip(np.rint(means), 0, 255).astype(np.uint8)
