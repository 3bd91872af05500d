"""Retargeting quality against the alignment steps of MusePose and MimicMotion, on synthetic
dancers with known truth (tests/dancer.py): an adult dancer moved onto a child-like
reference (big head, short legs), so every ideal length, direction and foot contact is known.

The peers are re-implemented here from their published descriptions, not copied:
- MusePose (`pose_align.py`): one ratio per body part (neck-nose, ear-ear, shoulder width,
  upper/lower arm and leg with left and right averaged, neck to mid-hip, hands mixed with the
  arms), all measured on the video's first frame; each child joint is scaled about its
  (already moved) parent in the order of the tree; hands about their wrists; the face only
  moves; one translation puts the first frame's neck on the reference's.
- MimicMotion (`preprocess.py`): one scale and translation for the whole video: y fitted by
  least squares of the reference's body points (nose, neck, shoulders, hips, knees, ankles,
  eyes, ears) against the same points over all frames, x with the same scale and the mean
  offset.

Sequences (30 fps): "dance", 120 frames moving in the image plane, the left forearm turning
towards the camera over the second half (0 to 60 degrees) while the video's first frame
happens to show the arms raised; "steps", 72 frames of side steps on planted feet. Each
clean and with 1.5 px of noise on every point.

Columns:
- limb error: |length / ideal - 1| over the 17 OpenPose body limbs and every frame, where
  ideal = the reference's length times the driving limb's foreshortening (its shown length
  over its true one); mean and worst.
- direction: the worst angle between a retargeted limb and the driving one.
- hand, face: |size / reference's - 1|, mean over frames (palm: wrist to knuckles; face:
  RMS radius).
- slide: on "steps", the most a planted foot (the other one lifted by 5% of the height)
  moves, in pixels.
- jitter: on noisy input, the mean frame-to-frame acceleration of the 23 body and foot
  points in units of the body (the reference's limb lengths summed over the dancer's), over
  the input's. A body of other proportions carries its parts' noise at their own scale: a
  bigger head shakes more in body units; see BENCHMARKS.md.

Run:  python bench/retarget.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dancer import (  # noqa: E402
    ADULT,
    CHILD,
    FEET,
    LIMBS,
    NECK,
    acceleration,
    body_scale,
    dance,
    dance_pose,
    face_size,
    frame_of,
    limb_vectors,
    noisy,
    palm_size,
    place,
    rest_pose,
    side_steps,
)

from comfyui_dwpose.retarget import retarget  # noqa: E402

BODY_LIMBS = [i for i, (_, b) in enumerate(LIMBS) if b < 17]  # the 17 OpenPose limbs
HANDS = (slice(91, 112), slice(112, 133))
NOISE = 1.5


# ------------------------------------------------------------------------ the peers


def _with_neck(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[:133], points[[5, 6]].mean(0, keepdims=True)])


def _distance(points: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a] - points[b]))


def musepose(frames: list[np.ndarray], reference: np.ndarray) -> list[np.ndarray]:
    """MusePose's alignment: part ratios from the first frame, children scaled about their
    parents, the face only moved, one translation onto the reference's neck."""
    first, ref = _with_neck(frames[0]), _with_neck(reference)

    def ratio(*pairs) -> float:
        return float(np.mean([_distance(ref, a, b) / _distance(first, a, b) for a, b in pairs]))

    def palm(points, hand):
        p = points[hand]
        return np.linalg.norm(p[[1, 5, 9, 13, 17]] - p[0], axis=1)

    hand_ratio = np.mean(
        np.concatenate([palm(ref, h) / palm(first, h) for h in HANDS])
    )  # MusePose: wrist to the thumb's base and the four knuckles
    scale = {
        "neck": ratio((NECK, 0)),
        "face": ratio((3, 4)),
        "shoulder": ratio((5, 6)),
        "upper_arm": ratio((5, 7), (6, 8)),
        "lower_arm": ratio((7, 9), (8, 10)),
        "body": float(
            np.linalg.norm(ref[NECK] - ref[[11, 12]].mean(0))
            / np.linalg.norm(first[NECK] - first[[11, 12]].mean(0))
        ),
        "upper_leg": ratio((11, 13), (12, 14)),
        "lower_leg": ratio((13, 15), (14, 16)),
    }
    scale["hand"] = (hand_ratio + scale["upper_arm"] + scale["lower_arm"]) / 3
    offset = ref[NECK] - first[NECK]
    out = []
    for frame in frames:
        p = _with_neck(frame)
        q = p.copy()
        q[0] = p[NECK] + scale["neck"] * (p[0] - p[NECK])
        q[[1, 2, 3, 4]] = q[0] + scale["face"] * (p[[1, 2, 3, 4]] - p[0])
        q[[5, 6]] = p[NECK] + scale["shoulder"] * (p[[5, 6]] - p[NECK])
        q[[11, 12]] = p[NECK] + scale["body"] * (p[[11, 12]] - p[NECK])
        for parent, child, part in (
            (5, 7, "upper_arm"), (7, 9, "lower_arm"), (6, 8, "upper_arm"), (8, 10, "lower_arm"),
            (11, 13, "upper_leg"), (13, 15, "lower_leg"), (12, 14, "upper_leg"),
            (14, 16, "lower_leg"),
        ):  # fmt: skip
            q[child] = q[parent] + scale[part] * (p[child] - p[parent])
        for hand, wrist in zip(HANDS, (9, 10)):
            q[hand] = q[wrist] + scale["hand"] * (p[hand] - p[wrist])
        q[17:23] += q[[15, 15, 15, 16, 16, 16]] - p[[15, 15, 15, 16, 16, 16]]  # feet ride along
        out.append(q[:133] + offset)
    return out


def mimicmotion(frames: list[np.ndarray], reference: np.ndarray) -> list[np.ndarray]:
    """MimicMotion's alignment: one least-squares scale and translation for all frames."""
    ids = [0, NECK, 6, 5, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    ref = _with_neck(reference)[ids]
    driving = np.array([_with_neck(f)[ids] for f in frames])
    scale, shift_y = np.polyfit(driving[..., 1].ravel(), np.tile(ref[:, 1], len(frames)), 1)
    shift_x = np.mean(np.tile(ref[:, 0], len(frames)) - scale * driving[..., 0].ravel())
    return [scale * f[:133] + [shift_x, shift_y] for f in frames]


def ours(mode: str, anchor: str = "auto"):
    def run(frames: list[np.ndarray], reference: np.ndarray) -> list[np.ndarray]:
        reference_frame = frame_of([reference], size=(512, 512))
        out = retarget([frame_of([f]) for f in frames], reference_frame, mode=mode, anchor=anchor)
        return [f.keypoints[0] for f in out]

    return run


METHODS = {
    "MusePose (first-frame part ratios)": musepose,
    "MimicMotion (least-squares scale)": mimicmotion,
    "ours, global": ours("global"),
    "ours, bones (anchor neck)": ours("bones", "neck"),
    "ours, bones (auto: ground)": ours("bones"),
}


# ------------------------------------------------------------------------ sequences


def reaching_first(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The same dance, but its first frame reaches towards the camera (both forearms turned
    45 degrees): what a one-frame measurement such as MusePose's meets in many videos."""
    pose = dance_pose(0.0)
    pose.turn.update({9: 45.0, 10: 45.0})
    return [place(ADULT, pose, NECK, frames[0][NECK]), *frames[1:]]


def ideal_lengths(frames: list[np.ndarray]) -> np.ndarray:
    """(frames, limbs): the reference's lengths with each driving limb's foreshortening (as
    shown, noise included: the method is judged on the ratio it applies)."""
    shown = np.linalg.norm([limb_vectors(f) for f in frames], axis=-1)
    true = np.array([ADULT.length(limb) for limb in LIMBS])
    return np.array([CHILD.length(limb) for limb in LIMBS]) * shown / true


def limb_errors(out, driving) -> tuple[float, float, float]:
    """Mean and worst length error (%) over body limbs and frames; worst direction (deg)."""
    got = np.array([limb_vectors(f) for f in out])[:, BODY_LIMBS]
    want = np.array([limb_vectors(f) for f in driving])[:, BODY_LIMBS]
    error = np.abs(np.linalg.norm(got, axis=-1) / ideal_lengths(driving)[:, BODY_LIMBS] - 1)
    cross = got[..., 0] * want[..., 1] - got[..., 1] * want[..., 0]
    turn = np.degrees(np.abs(np.arctan2(cross, (got * want).sum(-1))))
    return 100 * error.mean(), 100 * error.max(), float(turn.max())


def jitter(out, driving) -> float:
    """Mean acceleration of the 17 body points, each over the scale the method gave its part
    (median shown length of the limb into it, over the driving one's), over the input's."""
    into = [next(i for i, (_, b) in enumerate(LIMBS) if b == k) for k in range(17)]
    shown = np.linalg.norm([limb_vectors(f)[into] for f in out], axis=-1)
    scale = np.median(shown / np.linalg.norm([limb_vectors(f)[into] for f in driving], axis=-1), 0)
    return float((acceleration(out)[:17] / scale).mean() / acceleration(driving)[:17].mean())


def part_errors(out) -> tuple[float, float]:
    hands = np.array([[palm_size(f, h) for h in HANDS] for f in out])
    faces = np.array([face_size(f) for f in out])
    return (
        100 * np.abs(hands / CHILD.hand - 1).mean(),
        100 * np.abs(faces / CHILD.face - 1).mean(),
    )


def slide(out, truth, standing) -> float:
    lift = 0.05 * (ADULT.torso + ADULT.thigh + ADULT.shin)
    worst = 0.0
    for start in range(0, len(truth), 24):
        steps = range(start, start + 24)
        stand, kick = list(FEET[standing[start]]), list(FEET[1 - standing[start]])
        planted = [i for i in steps if truth[i][stand, 1].max() - truth[i][kick, 1].max() > lift]
        feet = np.array([out[i][stand] for i in planted])
        worst = max(worst, float(np.linalg.norm(feet - feet[0], axis=-1).max()))
    return worst


def main() -> None:
    reference = place(CHILD, rest_pose(), NECK, (256.0, 140.0))
    dance_frames = dance(ADULT, 120, turn=True)
    reaching = reaching_first(dance_frames)
    steps, standing = side_steps(ADULT, steps=3)
    scale = body_scale(CHILD, ADULT)
    print(
        f"Adult dancer onto a child-like reference (body scale {scale:.3f}); "
        f"noise {NOISE} px for the jitter column.\n"
    )
    print(
        "| method | limb error, mean / worst | first frame reaching | noisy | "
        "direction (deg) | hand | face | foot slide (px) | jitter (x input) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    noisy_dance = noisy(dance_frames, NOISE, seed=0)
    noisy_steps = noisy(steps, NOISE, seed=0)
    for name, method in METHODS.items():
        clean = method(dance_frames, reference)
        mean, worst, turn = limb_errors(clean, dance_frames)
        noisy_mean, noisy_worst, _ = limb_errors(method(noisy_dance, reference), noisy_dance)
        reach_mean, reach_worst, _ = limb_errors(method(reaching, reference), reaching)
        hand, face = part_errors(clean)
        feet = slide(method(steps, reference), steps, standing)
        shaking = [jitter(method(f, reference), f) for f in (noisy_dance, noisy_steps)]
        print(
            f"| {name} | {mean:.2f}% / {worst:.1f}% | {reach_mean:.2f}% / {reach_worst:.1f}% | "
            f"{noisy_mean:.2f}% / {noisy_worst:.1f}% | "
            f"{turn:.1e} | {hand:.1f}% | {face:.1f}% | {feet:.2f} | "
            f"{np.mean(shaking):.3f} |"
        )
    checks(ours("bones"), reference, dance_frames, steps, standing)


def checks(method, reference, dance_frames, steps, standing) -> None:
    """The worst cases behind tests/test_retarget.py's bounds, for ours with bones."""
    out = method(dance_frames, reference)
    _, worst, turn = limb_errors(out, dance_frames)
    forearm = LIMBS.index((7, 9))
    ratio = np.linalg.norm([limb_vectors(f)[forearm] for f in out], axis=-1) / np.linalg.norm(
        [limb_vectors(f)[forearm] for f in dance_frames], axis=-1
    )
    palms = np.array([[palm_size(f, h) for h in HANDS] for f in out])
    faces = np.array([face_size(f) for f in out])
    print(
        f"\nours, bones, worst over the clean dance: limb length {worst:.1e}%, direction "
        f"{turn:.1e} deg, turning forearm's ratio spread {np.ptp(ratio) / ratio.min():.1e}, "
        f"palm {100 * np.abs(palms / CHILD.hand - 1).max():.1e}%, "
        f"face {100 * np.abs(faces / CHILD.face - 1).max():.1e}%; planted foot on the steps "
        f"{slide(method(steps, reference), steps, standing):.4f} px"
    )


if __name__ == "__main__":
    main()
