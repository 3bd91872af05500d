"""The COCO-WholeBody keypoint layout and the OpenPose vocabulary used to draw and export it.

Everything here is a fact of the formats (SPEC.md), kept in one place so that the
renderer, the JSON codecs and the trainer agree on indices and colours.
"""

NUM_KEYPOINTS = 133

# COCO-WholeBody index ranges.
BODY = slice(0, 17)
FEET = slice(17, 23)  # left big toe, left small toe, left heel, right ..., right heel
FACE = slice(23, 91)  # 68 points, iBUG order
LEFT_HAND = slice(91, 112)  # wrist, then 4 points per finger, thumb first
RIGHT_HAND = slice(112, 133)

# OpenPose-18 joint j is COCO-WholeBody point OPENPOSE18_FROM_COCO[j]. The neck has no
# COCO point: it is the mean of the two shoulders (NECK marks it).
NECK = -1
OPENPOSE18_FROM_COCO = (0, NECK, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
LEFT_SHOULDER, RIGHT_SHOULDER = 5, 6
LEFT_WRIST, RIGHT_WRIST = 9, 10
LEFT_HIP, RIGHT_HIP = 11, 12
NOSE = 0
# Left/right counterparts among the body and foot points (COCO-WholeBody's flip pairs).
MIRROR_PAIRS = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
    (17, 20), (18, 21), (19, 22),
)  # fmt: skip
OP18_R_EYE, OP18_L_EYE = 14, 15
OP18_R_ANKLE, OP18_L_ANKLE = 10, 13

# Body limbs in OpenPose-18 indices; limb k is drawn in BODY_COLORS[k].
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# RGB colour of OpenPose-18 joint j (and of limb j).
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# Hand edges in hand-local indices (0 = wrist), finger by finger from the wrist.
HAND_EDGES = tuple(
    (0 if step == 0 else 1 + 4 * finger + step - 1, 1 + 4 * finger + step)
    for finger in range(5)
    for step in range(4)
)
HAND_MCPS = (5, 9, 13, 17)  # hand-local knuckles of the four fingers: the palm's extent
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)

# Feet in OpenPose BODY_25 style, in indices of OpenPose-18 followed by the 6 foot points
# (18..23): each ankle joins its big toe and heel, the big toe joins the small toe.
# Colours are BODY_25's: left foot blue, right foot cyan.
FOOT_LIMBS = (
    (OP18_L_ANKLE, 18), (18, 19), (OP18_L_ANKLE, 20),
    (OP18_R_ANKLE, 21), (21, 22), (OP18_R_ANKLE, 23),
)  # fmt: skip
FOOT_COLORS = ((0, 0, 255),) * 3 + ((0, 255, 255),) * 3

# Mirror symmetry, for flip augmentation and flip test: after a horizontal flip, point i
# takes the label FLIP_INDICES[i] (COCO-WholeBody's left/right pairs over all 133 points).
_FACE_PAIRS = (
    *((i, 16 - i) for i in range(8)),  # jaw line
    *((i, 43 - i) for i in range(17, 22)),  # eyebrows
    (31, 35), (32, 34),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lips
    (60, 64), (61, 63), (65, 67),  # inner lips
)  # fmt: skip
_MIRROR_PAIRS = (
    *MIRROR_PAIRS,  # body and feet
    *((FACE.start + a, FACE.start + b) for a, b in _FACE_PAIRS),
    *((LEFT_HAND.start + i, RIGHT_HAND.start + i) for i in range(21)),
)
FLIP_INDICES = tuple(
    next((b if i == a else a for a, b in _MIRROR_PAIRS if i in (a, b)), i)
    for i in range(NUM_KEYPOINTS)
)
# Half-body augmentation keeps the upper (head, arms) or the lower (hips, legs, feet) points.
UPPER_BODY_IDS = tuple(range(11))
LOWER_BODY_IDS = tuple(range(11, 23))
