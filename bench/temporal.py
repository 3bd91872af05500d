"""Smoothing and tracking quality on synthetic people with known truth (tests/synthetic.py):
the numbers behind tests/test_temporal.py's bounds, as a table.

Smoothing: a whole-body skeleton walking at 150 px/s and swinging its arms (50 degrees,
1 Hz), 200 px tall, 30 fps, 150 frames; noise 3 px (body, hands) and 1.5 px (face); then
arms swinging 60 degrees at 2.5 Hz (fast), 120 frames. Error: mean distance to the truth; jitter:
mean frame-to-frame acceleration |x[t+1] - 2x[t] + x[t-1]|; lag: the time shift of the
wrists' path that best matches the truth. Tracking: id switches on crossings.

Run:  python bench/temporal.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_temporal import (  # noqa: E402
    CROSSINGS,
    WALKER,
    WRISTS,
    Person,
    errors,
    id_switches,
    keypoints_of,
    lag_frames,
    sequence,
    smoothed,
    tracked_ids,
)


def smoothing_rows() -> list[str]:
    rows = []
    fast = Person((300, 180), height=200, swing_hz=2.5, swing_deg=60)
    cases = (("walking, arms 1 Hz", WALKER, 0, 150), ("arms 2.5 Hz", fast, 1, 120))
    for name, person, seed, count in cases:
        frames, truth, who = sequence([person], count, seed=seed)
        true = np.array([t[0] for t in truth])
        raw = keypoints_of(frames, who)
        raw_error, raw_jitter = errors(raw, true)
        raw_wrist = np.linalg.norm(raw[:, WRISTS] - true[:, WRISTS], axis=-1).max()
        for mode, options in (
            ("whole sequence", {"lookahead": None}),
            ("look-ahead 20", {"lookahead": 20}),
            ("streaming", {"lookahead": 0, "max_gap": 0}),
        ):
            out = np.array([f.keypoints[0] for f in smoothed(frames, **options)])
            error, jitter = errors(out, true)
            wrist = np.linalg.norm(out[:, WRISTS] - true[:, WRISTS], axis=-1).max()
            rows.append(
                f"| {name} | {mode} | {error / raw_error:.2f} | {jitter / raw_jitter:.2f} | "
                f"{lag_frames(out, person, count) + 0.0:+.2f} | {wrist:.1f} (raw {raw_wrist:.1f}) |"
            )
    return rows


def tracking_rows() -> list[str]:
    rows = []
    for case, people in sorted(CROSSINGS.items()):
        frames, _, who = sequence(people, 90)
        rows.append(f"| {case} | {id_switches(who, tracked_ids(frames))} |")
    frames, _, who = sequence(
        CROSSINGS["sizes"], 90, present=lambda p, i: p == 0 or not 35 <= i < 43
    )
    rows.append(f"| sizes, one hidden 8 frames | {id_switches(who, tracked_ids(frames))} |")
    return rows


def main() -> None:
    print("| motion | mode | error / raw | jitter / raw | lag (frames) | worst wrist error px |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(smoothing_rows()))
    print()
    print("| crossing | id switches |")
    print("|---|---:|")
    print("\n".join(tracking_rows()))


if __name__ == "__main__":
    main()
