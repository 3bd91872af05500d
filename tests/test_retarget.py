"""Retargeting on synthetic whole-body dancers with known proportions (tests/dancer.py): an
adult dancer (ADULT) moved onto a child-like reference (CHILD: big head, short legs), whose
every true length, direction, foot contact and foreshortening is known."""

from dataclasses import replace

import numpy as np
import pytest
from dancer import (
    ADULT,
    CHILD,
    FEET,
    LIMBS,
    NECK,
    acceleration,
    body_scale,
    dance,
    face_size,
    frame_of,
    limb_vectors,
    noisy,
    palm_size,
    part_ratios,
    place,
    rest_pose,
    side_steps,
)

from comfyui_dwpose import skeleton
from comfyui_dwpose.retarget import Retargeter, main_track, measure, retarget

LEFT_FOREARM = LIMBS.index((7, 9))
HANDS = (slice(91, 112), slice(112, 133))
REFERENCE_NECK = (256.0, 140.0)


def reference_frame(body=CHILD, **options):
    return frame_of([place(body, rest_pose(), NECK, REFERENCE_NECK)], size=(512, 512), **options)


def frames_of(sequence, ids=None):
    return [frame_of([p], ids=ids) for p in sequence]


def outputs(frames):
    return [f.keypoints[0] for f in frames]


def angles(vectors):
    return np.degrees(np.arctan2(vectors[..., 1], vectors[..., 0]))


def test_the_tree_is_openposes_with_feet():
    assert set(skeleton.BONES) == set(LIMBS)  # dancer.py lists them independently
    assert skeleton.PARENT[91] == skeleton.PARENT[111] == 9  # hands hang from the wrists
    assert skeleton.PARENT[112] == 10 and skeleton.PARENT[23] == skeleton.PARENT[90] == 0


@pytest.fixture(scope="module")
def danced():
    """The dancer moving in the image plane, retargeted with bones; and its input."""
    sequence = dance(ADULT, 60)
    return sequence, outputs(retarget(frames_of(sequence), reference_frame()))


def test_bones_gives_every_limb_the_references_length(danced):
    _, out = danced
    reference = np.array([CHILD.length(limb) for limb in LIMBS])
    lengths = np.linalg.norm([limb_vectors(p) for p in out], axis=-1)  # (frames, limbs)
    error = np.abs(lengths / reference - 1).max()
    assert error < 0.01, error  # measured: 1.4e-15


def test_bones_keeps_every_limbs_direction(danced):
    sequence, out = danced
    turned = angles(np.array([limb_vectors(p) for p in out]))
    driving = angles(np.array([limb_vectors(p) for p in sequence]))
    difference = np.abs((turned - driving + 180) % 360 - 180).max()
    assert difference < 0.5, difference  # measured: 1e-13 degrees


def test_a_limb_turning_towards_the_camera_keeps_its_foreshortening():
    sequence = dance(ADULT, 60, turn=True)
    out = outputs(retarget(frames_of(sequence), reference_frame()))
    shown = np.linalg.norm([limb_vectors(p)[LEFT_FOREARM] for p in out], axis=-1)
    driving = np.linalg.norm([limb_vectors(p)[LEFT_FOREARM] for p in sequence], axis=-1)
    assert driving.min() < 0.51 * driving.max()  # it really turns: cos 60 degrees
    ratio = shown / driving
    assert ratio.max() / ratio.min() - 1 < 0.01  # constant; measured: 2e-15
    assert ratio.mean() == pytest.approx(CHILD.forearm / ADULT.forearm, rel=0.01)


def test_hands_and_faces_take_the_references_sizes(danced):
    _, out = danced
    palms = np.array([[palm_size(p, hand) for hand in HANDS] for p in out])
    faces = np.array([face_size(p) for p in out])
    assert np.abs(palms / CHILD.hand - 1).max() < 0.02  # measured: 1e-15
    assert np.abs(faces / CHILD.face - 1).max() < 0.02
    # ... and stay on their wrists and nose.
    for p in out:
        assert np.allclose(p[[91, 112]], p[[9, 10]]) and face_size(p) > 0


def test_global_is_one_scale_and_a_translation():
    sequence = dance(ADULT, 30)
    out = outputs(retarget(frames_of(sequence), reference_frame(), mode="global"))
    scale = body_scale(CHILD, ADULT)
    for driving, shown in zip(sequence, out):
        offset = shown - scale * driving[:133]
        assert np.abs(offset - offset.mean(0)).max() < 1e-9


def test_ground_planted_feet_do_not_slide():
    sequence, standing = side_steps(ADULT, steps=4, frames_per_step=24)
    frames = frames_of(sequence)
    reference = place(CHILD, rest_pose(), NECK, REFERENCE_NECK)
    height = 0.05 * (ADULT.torso + ADULT.thigh + ADULT.shin)
    for mode in ("bones", "global"):
        out = outputs(retarget(frames, reference_frame(), mode=mode, anchor="ground"))
        slides = []
        for step in range(4):
            steps = range(24 * step, 24 * step + 24)
            stand, kick = list(FEET[standing[steps[0]]]), list(FEET[1 - standing[steps[0]]])
            assert np.ptp([sequence[i][stand] for i in steps], axis=0).max() < 1e-9
            # The frames where the kicking foot is clearly off the floor (5% of the height).
            lifted = [
                i
                for i in steps
                if sequence[i][stand, 1].max() - sequence[i][kick, 1].max() > height
            ]
            assert len(lifted) >= 10
            feet = np.array([out[i][stand] for i in lifted])
            slides.append(np.linalg.norm(feet - feet[0], axis=-1).max())
        assert max(slides) <= 1.0, (mode, slides)  # measured: bones 0.004 px, global 0
        # On the first frame the lowest foot point stands on the reference's foot line.
        assert out[0][15:23, 1].max() == pytest.approx(reference[15:23, 1].max(), abs=1.0)


def test_retargeting_adds_no_jitter():
    """Noisy input (1.5 px). Ratios are constant, so every limb is the driving limb times a
    constant (its acceleration is the input's times that constant) and the neck anchor moves
    exactly as the driving neck, scaled: nothing new shakes."""
    sequence, _ = side_steps(ADULT, steps=3)
    driving = noisy(sequence, 1.5, seed=1)
    frames = frames_of(driving)
    out = outputs(retarget(frames, reference_frame(), anchor="neck"))
    ratios = np.linalg.norm([limb_vectors(p) for p in out], axis=-1) / np.linalg.norm(
        [limb_vectors(p) for p in driving], axis=-1
    )
    assert np.ptp(ratios, axis=0).max() < 1e-9
    turned = angles(np.array([limb_vectors(p) for p in out]))
    assert np.abs(turned - angles(np.array([limb_vectors(p) for p in driving]))).max() < 1e-9
    moved = np.array([p[[5, 6]].mean(0) for p in out]) - out[0][[5, 6]].mean(0)
    driven = np.array([p[[5, 6]].mean(0) - driving[0][[5, 6]].mean(0) for p in driving])
    scale = (moved * driven).sum() / (driven**2).sum()
    assert np.abs(moved - scale * driven).max() < 1e-9
    assert scale == pytest.approx(body_scale(CHILD, ADULT), rel=0.02)
    # Every body point's acceleration, in units of its own part's size (the reference's
    # length of the bone into it over the dancer's): as the input's. Ground anchoring moves
    # the body from the noisy feet, which costs about 1%.
    part = part_ratios(CHILD, ADULT)
    for anchor, bound in (("neck", 1.0), ("hips", 1.0), ("ground", 1.02)):
        out = outputs(retarget(frames, reference_frame(), anchor=anchor))
        ratio = (acceleration(out) / part).mean() / acceleration(driving).mean()
        assert ratio <= bound, (anchor, ratio)  # measured: neck 0.992, hips 0.991, ground 1.006


def test_missing_points_stay_unseen_and_do_not_break_their_children():
    sequence = dance(ADULT, 40)
    frames = frames_of(sequence)
    whole = outputs(retarget(frames, reference_frame()))
    rng = np.random.default_rng(0)
    for i in range(10, 20):  # the left elbow is lost: a low score and a wild place
        frames[i].scores[0, 7] = 0.05
        frames[i].keypoints[0, 7] += rng.normal(0, 80, 2)
    for i in range(25, 30):  # the right shoulder too: no neck
        frames[i].scores[0, 6] = 0.0
    out = retarget(frames, reference_frame())
    arm = CHILD.upper_arm + CHILD.forearm
    for i, frame in enumerate(out):
        assert np.array_equal(frame.scores, frames[i].scores)  # unseen stays unseen
        seen = frame.scores[0] > 0.3
        shown, expected = frame.keypoints[0], whole[i]
        if i in range(10, 20):
            # The wrist hangs from the shoulder through the lost elbow, the hand on it.
            assert np.linalg.norm(shown[9] - expected[9]) < 0.05 * arm
            assert palm_size(shown, HANDS[0]) == pytest.approx(CHILD.hand, rel=0.02)
            unaffected = np.ones(133, bool)
            unaffected[[7, 9, *range(91, 112)]] = False
            assert np.allclose(shown[unaffected], expected[unaffected])
        else:
            # Seen limbs keep the reference's lengths, with or without the neck.
            vectors = limb_vectors(shown)
            for (a, b), v in zip(LIMBS, vectors):
                if a != NECK and b != NECK and seen[a] and seen[b]:
                    assert np.linalg.norm(v) == pytest.approx(CHILD.length((a, b)), rel=1e-6)
        assert np.isfinite(shown).all()


def test_a_person_entering_mid_sequence():
    first = dance(ADULT, 40)
    second = [p - [200, -30] for p in dance(replace(ADULT, thigh=110), 40)]
    frames = [
        frame_of([first[i], second[i]] if i >= 20 else [first[i]], ids=[0, 1] if i >= 20 else [0])
        for i in range(40)
    ]
    reference = frame_of(
        [place(CHILD, rest_pose(), NECK, REFERENCE_NECK),
         place(ADULT, rest_pose(), NECK, (400.0, 100.0))],
        size=(512, 512),
    )  # fmt: skip
    out = retarget(frames, reference, anchor="neck", person=[0, 1], reference_person=[0, 1])
    assert [len(f) for f in out] == [1] * 20 + [2] * 20
    assert out[25].track_ids.tolist() == [0, 1]
    # The newcomer's first frame lands its neck on the second reference person's neck ...
    neck = out[20].keypoints[1][[5, 6]].mean(0)
    assert np.allclose(neck, (400.0, 100.0))
    # ... with that person's sizes, and the first dancer is not disturbed by it.
    assert np.linalg.norm(limb_vectors(out[30].keypoints[1])[LIMBS.index((11, 13))]) == (
        pytest.approx(ADULT.thigh)
    )
    alone = retarget(frames, reference, anchor="neck", person=0, reference_person=0)
    assert all(np.allclose(a.keypoints[0], b.keypoints[0]) for a, b in zip(alone, out))
    # By default the main dancer (largest over the sequence) goes onto the largest person.
    assert main_track(frames) == 0
    default = retarget(frames, reference)
    assert [len(f) for f in default] == [1] * 40 and default[30].track_ids.tolist() == [0]


def test_streaming_with_given_or_running_proportions():
    sequence = dance(ADULT, 30)
    frames = frames_of(sequence)
    batch = retarget(frames, reference_frame())
    given = Retargeter(reference_frame(), proportions=measure(frames))
    running = Retargeter(reference_frame())  # in the image plane every frame shows all sizes
    for frame, expected in zip(frames, batch):
        assert np.array_equal(given(frame).keypoints, expected.keypoints)
        assert np.allclose(running(frame).keypoints, expected.keypoints)


def test_typical_sizes_resist_noise_and_foreshortening():
    frames = frames_of(noisy(dance(ADULT, 120, turn=True), 1.0))
    proportions = measure(frames)
    true = np.array([ADULT.length(bone) for bone in skeleton.BONES])
    long = true > 40
    assert np.abs(proportions.bones[long] / true[long] - 1).mean() < 0.01  # measured 0.3%
    assert proportions.hand == pytest.approx(ADULT.hand, rel=0.03)
    assert proportions.face == pytest.approx(ADULT.face, rel=0.03)


def test_anchors_place_the_first_frame_on_the_reference():
    sequence = dance(ADULT, 5)
    reference = place(CHILD, rest_pose(), NECK, REFERENCE_NECK)
    out = retarget(frames_of(sequence), reference_frame(), anchor="neck")
    assert np.allclose(out[0].keypoints[0][[5, 6]].mean(0), REFERENCE_NECK)
    out = retarget(frames_of(sequence), reference_frame(), anchor="hips")
    assert np.allclose(out[0].keypoints[0][[11, 12]].mean(0), reference[[11, 12]].mean(0))
    # auto: ground when both show feet, the neck when the reference shows none.
    auto = retarget(frames_of(sequence), reference_frame())
    ground = retarget(frames_of(sequence), reference_frame(), anchor="ground")
    assert np.array_equal(auto[3].keypoints, ground[3].keypoints)
    scores = np.ones((1, 133))
    scores[0, 13:23] = 0  # knees down out of the picture: a portrait
    portrait = reference_frame(scores=scores)
    auto = retarget(frames_of(sequence), portrait)
    assert np.allclose(auto[0].keypoints[0][[5, 6]].mean(0), REFERENCE_NECK)
    # Motion follows the driving neck, scaled by the body scale (of the limbs both show).
    shown = [limb for limb in LIMBS if not set(limb) & set(range(13, 23))]
    scale = sum(CHILD.length(limb) for limb in shown) / sum(ADULT.length(limb) for limb in shown)
    moved = auto[4].keypoints[0][[5, 6]].mean(0) - auto[0].keypoints[0][[5, 6]].mean(0)
    assert np.allclose(moved, scale * (sequence[4][NECK] - sequence[0][NECK]))


def test_output_lives_on_the_reference_canvas_and_keeps_people_apart():
    frames = frames_of(dance(ADULT, 3))
    frames.insert(1, frame_of([]))  # nobody in this frame
    out = retarget(frames, reference_frame())
    assert [(f.width, f.height, len(f)) for f in out] == [(512, 512, 1), (512, 512, 0)] + [
        (512, 512, 1)
    ] * 2
    box = out[0].boxes[0]
    points = out[0].keypoints[0]
    assert (box[:2] <= points.min(0)).all() and (box[2:] >= points.max(0)).all()


def test_bad_options_and_inputs_say_what_is_wrong():
    frames = frames_of(dance(ADULT, 3))
    with pytest.raises(ValueError, match="mode must be one of"):
        retarget(frames, reference_frame(), mode="bone")
    with pytest.raises(ValueError, match="anchor must be one of"):
        retarget(frames, reference_frame(), anchor="feet")
    with pytest.raises(ValueError, match="reference pose shows nobody"):
        retarget(frames, frame_of([]))
    with pytest.raises(ValueError, match="needs tracked frames"):
        retarget(frames, reference_frame(), person=3)
    with pytest.raises(ValueError, match="reference_person 2 is out of range"):
        retarget(frames, reference_frame(), reference_person=2)
    with pytest.raises(TypeError, match="reference must be a PoseFrame"):
        retarget(frames, np.zeros((512, 512, 3)))
    assert retarget([], reference_frame()) == []


# -------------------------------------------------------------- CLI and preprocessor


def test_cli_retargets_onto_a_json_or_an_image_reference(tmp_path, coco_images, standins):
    import json

    from PIL import Image

    from comfyui_dwpose import DWPose, DWPosePreprocessor, render_pose, to_pose_keypoint
    from comfyui_dwpose.cli import main
    from comfyui_dwpose.images import load_image
    from comfyui_dwpose.render import map_size
    from comfyui_dwpose.result import from_pose_keypoint, save_json

    frames = frames_of(dance(ADULT, 6))
    save_json(to_pose_keypoint(frames), tmp_path / "dance.json")
    save_json(to_pose_keypoint(reference_frame()), tmp_path / "child.json")
    code = main([
        "retarget", str(tmp_path / "dance.json"), "--reference", str(tmp_path / "child.json"),
        "-o", str(tmp_path / "out.json"), "--anchor", "hips", "--render", str(tmp_path / "maps"),
        "--resolution", "256", "--feet",
    ])  # fmt: skip
    assert code == 0
    got = from_pose_keypoint(json.loads((tmp_path / "out.json").read_text()))
    expected = retarget(frames, reference_frame(), anchor="hips")
    assert [(f.width, f.height) for f in got] == [(512, 512)] * 6
    assert all(np.allclose(g.keypoints, e.keypoints) for g, e in zip(got, expected))
    maps = sorted((tmp_path / "maps").iterdir())
    assert [m.name for m in maps] == [f"out_{i:05d}.png" for i in range(6)]
    assert np.array_equal(
        np.asarray(Image.open(maps[2])), render_pose(got[2], *map_size(512, 512, 256), feet=True)
    )
    # An image reference goes through DWPose first (here the golden stand-in models).
    image = coco_images["000000000785"]
    models = ["--detector", str(standins["det"]), "--pose-model", str(standins["pose"])]
    code = main([
        "retarget", str(tmp_path / "dance.json"), "--reference", str(image), "-o",
        str(tmp_path / "on_image.json"), *models,
    ])  # fmt: skip
    assert code == 0
    got = from_pose_keypoint(json.loads((tmp_path / "on_image.json").read_text()))
    found = DWPose(standins["det"], standins["pose"])(load_image(image))
    expected = retarget(frames, found)
    assert (got[0].width, got[0].height) == (640, 425)
    assert all(np.allclose(g.keypoints, e.keypoints) for g, e in zip(got, expected))

    # The preprocessor draws the retargeted poses on the reference's canvas.
    pre = DWPosePreprocessor(standins["det"], standins["pose"], reference=load_image(image))
    assert np.array_equal(pre.reference.keypoints, found.keypoints)
    driving = [load_image(coco_images[i]) for i in ("000000040083", "000000196141")]
    maps, poses = pre(driving, image_resolution=64, output_type="np", return_keypoints=True)
    expected = retarget(DWPose(standins["det"], standins["pose"])(driving), found)
    assert maps.shape == (2, 64, 96, 3)  # 640x425 -> 96x64, whatever the driving images' shape
    for pose, want, control in zip(poses, expected, maps):
        assert np.array_equal(pose.keypoints, want.keypoints)
        assert np.array_equal(np.rint(control * 255).astype(np.uint8), render_pose(pose, 96, 64))
    frame_reference = DWPosePreprocessor(standins["det"], standins["pose"], reference=found)
    assert frame_reference.reference is found


def test_cli_errors_say_what_is_wrong(tmp_path, capsys):
    from comfyui_dwpose import to_pose_keypoint
    from comfyui_dwpose.cli import main
    from comfyui_dwpose.result import save_json

    save_json(to_pose_keypoint(frames_of(dance(ADULT, 3))), tmp_path / "dance.json")
    save_json(to_pose_keypoint(reference_frame()), tmp_path / "child.json")
    save_json(to_pose_keypoint(frame_of([])), tmp_path / "empty.json")
    (tmp_path / "broken.json").write_text('[{"people": ')
    out = str(tmp_path / "out.json")
    assert (
        main(
            [
                "retarget",
                str(tmp_path / "broken.json"),
                "--reference",
                str(tmp_path / "child.json"),
                "-o",
                out,
            ]
        )
        == 1
    )
    assert "cannot read POSE_KEYPOINT JSON" in capsys.readouterr().err
    assert (
        main(
            [
                "retarget",
                str(tmp_path / "dance.json"),
                "--reference",
                str(tmp_path / "empty.json"),
                "-o",
                out,
            ]
        )
        == 1
    )
    assert "nobody found in the reference" in capsys.readouterr().err
    assert (
        main(
            [
                "retarget",
                str(tmp_path / "dance.json"),
                "--reference",
                str(tmp_path / "child.json"),
                "-o",
                out,
                "--person",
                "3",
            ]
        )
        == 2
    )
    assert "needs tracked frames" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
