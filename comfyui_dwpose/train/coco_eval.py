"""COCO-WholeBody evaluation: xtcocotools' COCOeval per body part, optionally after
mmpose's rescoring and OKS-NMS (``dwpose eval``).

Facts (mmpose 1.3.2 ``CocoWholeBodyMetric``, xtcocotools 1.14.3):

- COCOeval runs six times (``keypoints_body``, ``_foot``, ``_face``, ``_lefthand``,
  ``_righthand``, ``_wholebody``) on the same loaded results, each with its slice of the
  133 sigmas and ``use_area=True``; the OKS scale of every part is the ground-truth area.
- Results carry the parts separately (``keypoints`` = the 17 body points, ``foot_kpts``,
  ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``, as x, y, score triplets) and one
  instance ``score``; no ``bbox`` (with one, xtcocotools takes the detection's area from it).
- mmpose rescores each instance: box score x the mean of its keypoint scores above 0.2
  then keeps, per image, instances whose OKS with a
  better-scored kept one is at most 0.9 (the OKS area is the instance's ``area`` when the
  file carries it, e.g. the crop size of a top-down model, else its keypoints' extent).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PARTS = ("body", "foot", "face", "lefthand", "righthand", "wholebody")
# Result fields in keypoint order and their point counts.
PART_FIELDS = (
    ("keypoints", 17),
    ("foot_kpts", 6),
    ("face_kpts", 68),
    ("lefthand_kpts", 21),
    ("righthand_kpts", 21),
)
STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
RESCORE_KEYPOINT_THRESHOLD = 0.2
OKS_NMS_THRESHOLD = 0.9

# COCO-WholeBody per-keypoint OKS sigmas (mmpose's dataset metadata, from the dataset's
# evaluation code): body 17, feet 6, face 68, left hand 21, right hand 21.
SIGMAS = np.array([
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
    0.107, 0.087, 0.087, 0.089, 0.089,
    0.068, 0.066, 0.066, 0.092, 0.094, 0.094,
    0.042, 0.043, 0.044, 0.043, 0.04, 0.035, 0.031, 0.025, 0.02, 0.023, 0.029, 0.032,
    0.037, 0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011,
    0.011, 0.013, 0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.01,
    0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.01, 0.034,
    0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.01, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008,
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022,
    0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022,
    0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
])  # fmt: skip

INSTALL_HINT = (
    "COCO-WholeBody evaluation needs xtcocotools built for your numpy: "
    "pip install cython setuptools && "
    "pip install --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3"
)


class EvaluationError(ValueError):
    """Unreadable or unusable annotation / prediction files."""


def evaluate(
    ann_file: str | os.PathLike, predictions: Sequence[dict], rescore: bool = False
) -> dict[str, dict[str, float]]:
    """``{part: {AP, AP50, ..., ARl}}`` for the six parts of COCO-WholeBody.

    ``predictions`` are results-format dicts (see the module docstring); ``rescore``
    applies mmpose's rescoring and OKS-NMS first. Needs xtcocotools (``INSTALL_HINT``).
    """
    COCO, COCOeval = _xtcocotools()
    results = [_check_result(r, i) for i, r in enumerate(predictions)]
    if rescore:
        results = rescore_and_nms(results)
    if not results:
        raise EvaluationError("there are no predictions to evaluate")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # results carry one instance score, not one per part (as mmpose writes them)
        warnings.filterwarnings("ignore", "'.*_score' not found, use 'score' instead")
        try:
            gt = COCO(os.fspath(ann_file))
        except (OSError, ValueError, KeyError) as exc:
            raise EvaluationError(f"{ann_file}: not a COCO annotation file ({exc})") from exc
        unknown = {r["image_id"] for r in results} - set(gt.getImgIds())
        if unknown:
            raise EvaluationError(
                f"predictions for images that {Path(ann_file).name} does not have: "
                f"{sorted(unknown)[:5]}"
            )
        detections = gt.loadRes([dict(r) for r in results])  # loadRes adds fields
        cuts = np.cumsum([0] + [n for _, n in PART_FIELDS])
        slices = [slice(cuts[i], cuts[i + 1]) for i in range(5)] + [slice(0, cuts[-1])]
        metrics = {}
        for part, keep in zip(PARTS, slices):
            coco_eval = COCOeval(gt, detections, f"keypoints_{part}", SIGMAS[keep], use_area=True)
            coco_eval.params.useSegm = None
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            metrics[part] = {name: float(v) for name, v in zip(STATS, coco_eval.stats)}
    return metrics


def rescore_and_nms(results: Sequence[dict]) -> list[dict]:
    """mmpose's rescoring and per-image OKS-NMS on results-format dicts.

    The instance ``score`` is read as the box score. Returns new results-format dicts
    (images in first-seen order, each image's kept instances best first).
    """
    by_image: dict[int, list[dict]] = {}
    for result in results:
        by_image.setdefault(result["image_id"], []).append(result)
    out = []
    for image_id, instances in by_image.items():
        points = np.stack([whole_body(r) for r in instances])  # (M,133,3)
        scores = np.array([_rescore(r["score"], p[:, 2]) for r, p in zip(instances, points)])
        areas = np.array([_area(r, p) for r, p in zip(instances, points)])
        for i in oks_nms(points, scores, areas, OKS_NMS_THRESHOLD):
            out.append(results_entry(image_id, points[i], float(scores[i])))
    return out


def whole_body(result: dict) -> np.ndarray:
    """The (133, 3) x, y, score array of a results-format dict."""
    return np.concatenate([
        np.asarray(result[field], np.float64).reshape(n, 3) for field, n in PART_FIELDS
    ])  # fmt: skip


def results_entry(image_id: int, points: np.ndarray, score: float, **extra) -> dict:
    """A results-format dict from (133, 3) x, y, score values."""
    entry: dict = {"image_id": image_id, "category_id": 1}
    start = 0
    for field, n in PART_FIELDS:
        entry[field] = [float(v) for v in np.asarray(points[start : start + n]).reshape(-1)]
        start += n
    entry["score"] = score
    entry.update(extra)
    return entry


def _rescore(box_score: float, keypoint_scores: np.ndarray) -> float:
    """box score x mean keypoint score above the threshold, summed in keypoint order as
    mmpose's loop does (a plain running sum, not a compensated one)."""
    total, count = 0.0, 0
    for s in keypoint_scores.tolist():
        if s > RESCORE_KEYPOINT_THRESHOLD:
            total += s
            count += 1
    return box_score * (total / count if count else 0.0)


def _area(result: dict, points: np.ndarray) -> float:
    if "area" in result:
        return float(result["area"])
    x, y = points[:, 0], points[:, 1]
    return float((x.max() - x.min()) * (y.max() - y.min()))


def oks_nms(points: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float) -> list:
    """Indices kept by greedy OKS-NMS (best score first), as mmpose's ``oks_nms``."""
    variances = (SIGMAS * 2) ** 2
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        dx = points[rest, :, 0] - points[best, :, 0]
        dy = points[rest, :, 1] - points[best, :, 1]
        e = (
            (dx**2 + dy**2)
            / variances
            / ((areas[best] + areas[rest])[:, None] / 2 + np.spacing(1))
            / 2
        )
        oks = (np.exp(-e).sum(axis=1) / e.shape[1]).astype(np.float32)
        order = rest[oks <= threshold]
    return keep


def _check_result(result: object, index: int) -> dict:
    if not isinstance(result, dict):
        raise EvaluationError(f"prediction {index} is not an object")
    missing = [f for f in ("image_id", "score", *(f for f, _ in PART_FIELDS)) if f not in result]
    if missing:
        raise EvaluationError(f"prediction {index} lacks {', '.join(missing)}")
    for field, n in PART_FIELDS:
        if len(result[field]) != 3 * n:
            raise EvaluationError(
                f"prediction {index}: {field} has {len(result[field])} values, expected {3 * n}"
            )
    return result


def load_predictions(path: str | os.PathLike) -> list[dict]:
    """A results-format JSON file (a list of dicts)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, list):
        raise EvaluationError(f"{path}: expected a list of predictions")
    return data


def _xtcocotools():
    try:
        from xtcocotools.coco import COCO
        from xtcocotools.cocoeval import COCOeval
    except (ImportError, ValueError) as exc:  # ValueError: a wheel built for numpy 1
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return COCO, COCOeval
