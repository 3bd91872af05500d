"""dwpose eval: xtcocotools per part on the COCO-WholeBody sample, mmpose's rescoring and
OKS-NMS checked on hand-computed cases."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA, ROOT

from comfyui_dwpose.cli import main
from comfyui_dwpose.train import coco_eval
from comfyui_dwpose.train.coco_eval import PARTS, STATS, evaluate, rescore_and_nms, whole_body

ANN = DATA / "coco" / "test_coco_wholebody.json"


def ground_truth_results(score: float = 1.0) -> list[dict]:
    """Every annotated person predicted exactly, keypoint score 1 where labelled."""
    anns = json.loads(ANN.read_text())["annotations"]
    results = []
    for ann in anns:
        points = whole_body({**ann, "score": 0})
        points[:, 2] = (points[:, 2] > 0).astype(float)
        results.append(coco_eval.results_entry(ann["image_id"], points, score))
    return results


def test_exact_predictions_score_one_everywhere():
    metrics = evaluate(ANN, ground_truth_results())
    assert list(metrics) == list(PARTS)
    for part in PARTS:
        assert list(metrics[part]) == list(STATS)
        # every labelled point found exactly: AP = AR = 1
        assert metrics[part]["AP"] == 1.0 and metrics[part]["AR"] == 1.0, part
        assert metrics[part]["AP50"] == metrics[part]["AP75"] == 1.0


def test_a_shifted_person_lowers_only_its_parts():
    results = ground_truth_results()
    moved = copy.deepcopy(results)
    # move one person's left hand by 40 px: only lefthand (and wholebody) AP fall
    index = next(i for i, r in enumerate(moved) if any(v > 0 for v in r["lefthand_kpts"][2::3]))
    moved[index]["lefthand_kpts"] = [
        v + 40 if j % 3 != 2 else v for j, v in enumerate(moved[index]["lefthand_kpts"])
    ]
    metrics = evaluate(ANN, moved)
    assert metrics["lefthand"]["AP"] < 1.0 and metrics["wholebody"]["AP"] < 1.0
    for part in ("body", "foot", "face", "righthand"):
        assert metrics[part]["AP"] == 1.0


def test_rescoring_and_oks_nms_by_hand():
    base = ground_truth_results()[0]
    points = whole_body(base)
    a = points.copy()
    a[:, 2] = 0.1
    a[:10, 2] = [0.5, 0.7, 0.3, 0.2, 0.9, 0.25, 0.6, 0.21, 0.4, 0.8]  # 0.2 itself is not above
    near = a.copy()
    near[:, :2] += 0.5  # OKS with `a` far above 0.9: suppressed
    near[:, 2] = 0.3
    far = a.copy()
    far[:, :2] += 300  # OKS ~ 0: kept
    far[:, 2] = 0.9
    results = [
        coco_eval.results_entry(785, a, 0.9, area=40000.0),
        coco_eval.results_entry(785, near, 1.0, area=40000.0),
        coco_eval.results_entry(785, far, 0.5),
    ]
    kept = rescore_and_nms(results)
    above = [0.5, 0.7, 0.3, 0.9, 0.25, 0.6, 0.21, 0.4, 0.8]
    # far: 0.5 x 0.9 = 0.45; a: 0.9 x mean(above) = 0.9 x 0.5177...; near: 1.0 x 0.3 = 0.3
    assert [r["score"] for r in kept] == pytest.approx([0.9 * sum(above) / 9, 0.45], rel=1e-12)
    np.testing.assert_array_equal(whole_body(kept[0]), a)
    np.testing.assert_array_equal(whole_body(kept[1]), far)
    assert "area" not in kept[0]


def test_oks_matches_the_formula():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, size=(2, 133, 3))
    areas = np.array([900.0, 1600.0])
    d2 = ((points[1, :, :2] - points[0, :, :2]) ** 2).sum(axis=1)
    var = (coco_eval.SIGMAS * 2) ** 2
    oks = np.mean(
        [math.exp(-d2[k] / var[k] / ((900 + 1600) / 2 + np.spacing(1)) / 2) for k in range(133)]
    )
    thr_keep = oks + 1e-6  # just above: both kept; just below: the second is suppressed
    assert coco_eval.oks_nms(points, np.array([0.9, 0.8]), areas, thr_keep) == [0, 1]
    assert coco_eval.oks_nms(points, np.array([0.9, 0.8]), areas, oks - 1e-6) == [0]


def test_cli_writes_the_metrics(tmp_path, capsys):
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps(ground_truth_results(0.7)))
    out = tmp_path / "metrics.json"
    code = main(["eval", "--ann", str(ANN), "--predictions", str(predictions), "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics == evaluate(ANN, ground_truth_results(0.7))
    assert "wholebody" in capsys.readouterr().out
    assert (
        main(
            [
                "eval",
                "--ann",
                str(ANN),
                "--predictions",
                str(predictions),
                "--out",
                str(out),
                "--rescore",
            ]
        )
        == 0
    )


def test_errors_are_explained(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 785, "score": 1}]))
    out = tmp_path / "m.json"
    assert main(["eval", "--ann", str(ANN), "--predictions", str(bad), "--out", str(out)]) == 1
    assert "prediction 0 lacks keypoints" in capsys.readouterr().err
    bad.write_text(json.dumps([{**ground_truth_results()[0], "image_id": 5}]))
    assert main(["eval", "--ann", str(ANN), "--predictions", str(bad), "--out", str(out)]) == 1
    assert "does not have: [5]" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setitem(sys.modules, "xtcocotools", None)
    monkeypatch.setitem(sys.modules, "xtcocotools.coco", None)
    bad.write_text(json.dumps(ground_truth_results()))
    assert main(["eval", "--ann", str(ANN), "--predictions", str(bad), "--out", str(out)]) == 2
    assert "--no-binary xtcocotools xtcocotools==1.14.3" in capsys.readouterr().err


def test_help_works_without_torch_and_xtcocotools():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['xtcocotools'] = None\n"
        "from comfyui_dwpose.cli import main\n"
        "for args in (['--help'], ['train', 'stage1', '--help'], ['eval', '--help'], ['export', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, args\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok") and "--preset" in done.stdout
