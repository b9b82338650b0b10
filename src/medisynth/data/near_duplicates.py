"""Near-duplicate images: thumbnail signatures and the blocked search for similar pairs.

The signature: area-downsample the image, subtract its own mean intensity (brightness does
not hide a duplicate), subtract the mean signature of the whole set (the structure every
image shares, e.g. the round fundus field of view or the CT body outline, does not make
distinct images look alike; only with >= CENTER_MIN_REFERENCE images), L2-normalise, and
compare by cosine. The signature is grayscale and SIGNATURE_SIDE x SIGNATURE_SIDE so that
35k images take 36 MB; a shift of a pixel or noise barely moves it. It is NOT the evaluation's
copy detection (``medisynth.metrics.copy_detection``, which also sees through flips, crops and
rotations with a trained encoder): the split needs a cheap signature before any encoder exists.

This module is numpy (+ scipy) only: prepare's spawned workers compute signatures without
importing torch, and the same functions serve tests and evaluation-side checks.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from medisynth.defaults import PREPARE

SIGNATURE_SIDE = 16
DEFAULT_THRESHOLD = PREPARE["near_duplicate_threshold"]
BLOCK_ROWS = 2048
CENTER_MIN_REFERENCE = 16


def _adaptive_mean(x: np.ndarray, out: int, axis: int) -> np.ndarray:
    """Average pooling to ``out`` cells along ``axis`` with torch's adaptive_avg_pool2d windows
    (start = floor(i*n/out), end = ceil((i+1)*n/out)): exact block means when ``out`` divides n."""
    n = x.shape[axis]
    if n == out:
        return x
    csum = np.cumsum(x, axis=axis, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)
    i = np.arange(out)
    start, end = (i * n) // out, -((-(i + 1) * n) // out)
    total = np.take(csum, end, axis=axis) - np.take(csum, start, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = out
    return total / (end - start).reshape(shape)


def raw_signature(image: np.ndarray, side: int = SIGNATURE_SIDE) -> np.ndarray:
    """float32 vector (side*side,) of one uint8 image (H x W or H x W x C): gray, scaled to
    [-1, 1] as the models see it, area-downsampled, its own mean subtracted. Not yet centred on
    the set nor normalised: that needs all images (``normalise_signatures``)."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        x = x.mean(axis=2)
    x = x / 127.5 - 1.0
    side = int(min(side, x.shape[0], x.shape[1]))
    x = _adaptive_mean(_adaptive_mean(x, side, 0), side, 1).ravel()
    return (x - x.mean()).astype(np.float32)


def normalise_signatures(raw: np.ndarray) -> np.ndarray:
    """Centre on the set's mean signature (when it has enough images) and L2-normalise each row."""
    sig = np.asarray(raw, dtype=np.float32)
    if len(sig) >= CENTER_MIN_REFERENCE:
        sig = sig - sig.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(sig, axis=1, keepdims=True)
    return sig / np.maximum(norm, 1e-8)


def signatures(images: np.ndarray, side: int = SIGNATURE_SIDE) -> np.ndarray:
    """Normalised signatures of a uint8 N x H x W (x C) batch."""
    return normalise_signatures(np.stack([raw_signature(im, side) for im in images]))


def threshold_enabled(threshold: float | None) -> bool:
    """0 (or None) and >= 1 switch the near-duplicate search off (1 would only find exact copies, which sha1 does)."""
    return threshold is not None and 0 < threshold < 1


def near_duplicate_pairs(sig: np.ndarray, threshold: float, block: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Pairs (i, j), i < j, with cosine(sig[i], sig[j]) >= threshold, as int64 k x 2 arrays, one per
    block of rows. Memory: one block x N similarity matrix (2048 x 100k float32 = 800 MB at most;
    rows are compared only with later rows, so the average block is half that)."""
    sig = np.ascontiguousarray(sig, dtype=np.float32)
    n = len(sig)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sims = sig[lo:hi] @ sig[lo:].T  # only columns >= lo: each pair once
        rows, cols = np.nonzero(sims >= threshold)
        keep = cols > rows  # col index is relative to lo, row index too: drops self and the lower triangle
        yield np.stack([rows[keep] + lo, cols[keep] + lo], axis=1).astype(np.int64)


def near_duplicate_components(sig: np.ndarray, threshold: float, block: int = BLOCK_ROWS) -> np.ndarray:
    """Component id per row: rows joined by a chain of pairs with similarity >= threshold share an id
    (the smallest row index of the component); a row with no near duplicate keeps its own index.

    Each block's pairs are reduced to one edge per (component, member) right away, so a set of
    near-identical images does not pile up N^2 / 2 pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(sig)
    labels = np.arange(n)
    if n < 2 or not threshold_enabled(threshold):
        return labels
    edges = []
    for pairs in near_duplicate_pairs(sig, threshold, block):
        if len(pairs):
            edges.append(_spanning_edges(pairs, n))
    if not edges:
        return labels
    pairs = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))  # name each component by its first row: stable, readable ids
    return first[comp]


def _spanning_edges(pairs: np.ndarray, n: int) -> np.ndarray:
    """Edges (root, member) that connect the same nodes as ``pairs``: at most one per node."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(pairs)
    local = np.searchsorted(nodes, pairs)
    m = len(nodes)
    graph = coo_matrix((np.ones(len(local), np.int8), (local[:, 0], local[:, 1])), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    root = np.full(comp.max() + 1, m, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(m))
    members = np.nonzero(root[comp] != np.arange(m))[0]
    return np.stack([nodes[root[comp[members]]], nodes[members]], axis=1)


def nearest_similarity(queries: np.ndarray, reference: np.ndarray, block: int = BLOCK_ROWS) -> np.ndarray:
    """Each query signature's highest cosine to any reference signature (both normalised)."""
    out = [np.max(queries[i : i + block] @ reference.T, axis=1) for i in range(0, len(queries), block)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)
