"""simcc_labels against hand-computed targets (mmpose 1.3.2 SimCCLabel, gaussian,
normalize=False, use_dark=False: centres rounded half to even, labels only for
visibility >= 0.5, weight = visibility, weight 0 when the 3-sigma window misses the grid)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comfyui_dwpose.train import simcc_labels


def gauss(n: int, centre: int, sigma: float) -> np.ndarray:
    return np.array([math.exp(-((i - centre) ** 2) / (2 * sigma**2)) for i in range(n)])


def test_one_point_by_hand():
    # 4x3 crop (H x W), split 2 -> 6 x-bins, 8 y-bins. x 1.25 -> 2.5 -> 2 (half to even),
    # y 1.75 -> 3.5 -> 4.
    x, y, w = simcc_labels(np.array([[[1.25, 1.75]]]), np.array([[1.0]]), (4, 3), (1.0, 2.0))
    assert x.dtype == y.dtype == w.dtype == np.float32
    assert x.shape == (1, 1, 6) and y.shape == (1, 1, 8) and w.shape == (1, 1)
    e = math.exp
    np.testing.assert_allclose(
        x[0, 0], [e(-2), e(-0.5), 1, e(-0.5), e(-2), e(-4.5)], rtol=0, atol=1e-7
    )
    np.testing.assert_allclose(
        y[0, 0], [e(-2), e(-9 / 8), e(-0.5), e(-1 / 8), 1, e(-1 / 8), e(-0.5), e(-9 / 8)], atol=1e-7
    )
    assert w[0, 0] == 1.0


@pytest.mark.parametrize(
    ("x", "centre"), [(0.25, 0), (0.75, 2), (1.25, 2), (1.75, 4), (2.0, 4), (2.2, 4)]
)
def test_centres_round_half_to_even(x, centre):
    labels, _, _ = simcc_labels(np.array([[[x, 1.0]]]), np.ones((1, 1)), (4, 4), 1.5)
    assert labels[0, 0].argmax() == centre
    np.testing.assert_allclose(labels[0, 0], gauss(8, centre, 1.5), atol=1e-7)


def test_visibility_weights_and_misses():
    # W = H = 8 bins, sigma 1: the window [c-3, c+4] misses the grid when c-3 >= 8 or c+4 < 0.
    points = np.array([[[1, 1], [1, 1], [1, 1], [-2, 1], [-2.5, 1], [5.5, 1], [5.25, 1], [1, 5.5]]])
    vis = np.array([[0.3, 0.7, 0.0, 1, 1, 1, 1, 0.2]])
    x, y, w = simcc_labels(points, vis, (4, 4), 1.0)
    # below 0.5: no label, weight = visibility (also for 0.2 far outside the crop)
    for k in (0, 2, 7):
        assert not x[0, k].any() and not y[0, k].any()
    np.testing.assert_allclose(w[0], [0.3, 0.7, 0.0, 1, 0, 0, 1, 0.2], rtol=1e-7)
    np.testing.assert_allclose(x[0, 1], gauss(8, 2, 1.0), atol=1e-7)  # labelled at 0.7
    np.testing.assert_allclose(x[0, 3], gauss(8, -4, 1.0), atol=1e-7)  # c=-4: c+4 = 0, kept
    assert not x[0, 4].any() and not y[0, 4].any()  # c=-5: missed, weight 0
    assert not x[0, 5].any()  # c=11: 11-3 >= 8, missed
    # 10.5 rounds to 10 (half to even; half up would give 11 and a miss)
    np.testing.assert_allclose(x[0, 6], gauss(8, 10, 1.0), atol=1e-7)
    np.testing.assert_allclose(y[0, 6], gauss(8, 2, 1.0), atol=1e-7)


def test_released_sizes_and_sigmas():
    # 256x192 with sigma (4.9, 5.66) and 384x288 with (6, 6.93), as in the DWPose configs.
    rng = np.random.default_rng(0)
    for (h, w), sigma in (((256, 192), (4.9, 5.66)), ((384, 288), (6.0, 6.93))):
        points = rng.uniform(0, [w, h], size=(2, 133, 2)).astype(np.float32)
        x, y, weights = simcc_labels(points, np.ones((2, 133)), (h, w), sigma)
        assert x.shape == (2, 133, 2 * w) and y.shape == (2, 133, 2 * h)
        for n, k in ((0, 0), (1, 132), (1, 60)):
            cx, cy = (int(np.around(v * 2)) for v in points[n, k])
            np.testing.assert_allclose(x[n, k], gauss(2 * w, cx, sigma[0]), atol=1e-6)
            np.testing.assert_allclose(y[n, k], gauss(2 * h, cy, sigma[1]), atol=1e-6)
        assert (weights == 1).all()


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N,K,2\)"):
        simcc_labels(np.zeros((3, 2)), np.zeros(3), (4, 4), 1.0)
