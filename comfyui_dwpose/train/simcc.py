"""SimCC training targets: one Gaussian per keypoint and axis over the sub-pixel bins.

The same targets as mmpose 1.3.2's ``SimCCLabel`` with ``smoothing_type="gaussian"``,
``normalize=False`` and ``use_dark=False`` (the RTMPose / DWPose configs):

- a keypoint at crop pixel ``x`` is centred on bin ``round(x * split_ratio)``, rounded half
  to even (``np.around``);
- only points with visibility >= 0.5 get a Gaussian; every point's weight is its
  visibility, except that a labelled point whose 3-sigma window misses the grid entirely
  gets weight 0 (and no Gaussian);
- the Gaussian is ``exp(-(bin - centre)^2 / (2 sigma^2))`` with peak 1 (not normalised).
"""

from __future__ import annotations

import numpy as np


def simcc_labels(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: tuple[int, int],
    sigma: float | tuple[float, float],
    split_ratio: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x_labels (N,K,W*split), y_labels (N,K,H*split), weights (N,K))``, float32.

    ``keypoints`` (N,K,2) are x, y in crop pixels; ``visible`` (N,K) in [0, 1];
    ``input_size`` is the crop's (height, width); ``sigma`` is one value or (sigma_x,
    sigma_y) in bins (the configs use (4.9, 5.66) at 256x192 and (6, 6.93) at 384x288).
    """
    points = np.asarray(keypoints)
    if points.dtype.kind != "f":
        points = points.astype(np.float32)
    vis = np.asarray(visible, dtype=np.float32)
    if points.ndim != 3 or points.shape[2] != 2 or vis.shape != points.shape[:2]:
        raise ValueError(
            f"keypoints must be (N,K,2) and visible (N,K); got {points.shape} and {vis.shape}"
        )
    height, width = input_size
    bins = np.array(
        [np.around(width * split_ratio), np.around(height * split_ratio)], dtype=np.int64
    )
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (2,))
    centres = np.around(points * split_ratio).astype(np.int64)  # (N,K,2), half to even

    # The 3-sigma window [c - 3s, c + 3s + 1] must overlap the grid [0, bins).
    radius = 3 * sigmas
    misses = np.any((centres - radius >= bins) | (centres + radius + 1 < 0), axis=-1)
    labelled = vis >= 0.5
    weights = np.where(labelled & misses, np.float32(0), vis).astype(np.float32)
    drawn = labelled & ~misses

    axes = []
    for axis in (0, 1):
        grid = np.arange(bins[axis], dtype=np.float64)
        offset = grid - centres[..., axis, None]
        gauss = np.exp(-(offset**2) / (2 * sigmas[axis] ** 2))
        axes.append(np.where(drawn[..., None], gauss, 0.0).astype(np.float32))
    return axes[0], axes[1], weights
