"""Speed of the whole pipeline on the CPU: ours against peers and against the compute floor.

What it measures: one image in, whole-body keypoints out, with DWPose's compute (YOLOX-L at
640x640, DWPose-l / RTMPose-l at 384x288), for an image with 1 person and a frame with 6.

Contenders, all in this process, on the same ONNX files and the same images:
- ours: `comfyui_dwpose.DWPose` (people of an image batched into one pose call);
- ours, fitted detector input: the same with `fit_detector_input=True` on a dynamic-size
  export of the same detector (`dwpose convert --dynamic-size`): the detector computes only
  the letterbox canvas cut to the frame's shape (1280x720: 640x384); the plant is added
  after the network, as for the torch backend. Less work, not less
  overhead; off by default until measured on real weights (README);
- ours, torch backend: the same on `backend="torch"` (CPU, float32), the same weights read
  from safetensors files (its detector output is planted after the network);
- rtmlib: rtmlib 0.0.16's `Wholebody` (YOLOX + RTMPose, onnxruntime on the CPU; one crop
  per pose call);
- upstream loop: DWPose's own structure written from SPEC.md: letterbox, detector, then one
  `session.run` per crop with float64 normalisation, as the ControlNet annotator does;
- floor: plain `session.run` of the detector on a prepared input plus one batched
  `session.run` of the pose model on prepared crops; no pre- or post-processing at all.
Every contender runs the models in onnxruntime CPU sessions with ours' options (one
intra-op thread per usable core, one inter-op thread; rtmlib's sessions are re-created so),
so the comparison is between pipelines, not settings.

Models: the official architectures from `comfyui_dwpose.nets` with seeded random weights,
exported with the official signatures (detector `images [1,3,640,640] -> output [1,8400,85]`,
a fixed batch of 1 like DWPose's `yolox_l.onnx`; pose `input [N,3,384,288] -> simcc_x,
simcc_y`). Random weights detect random things, so the detector file's output is planted:
output = real output x 1e-3 + a constant that puts person boxes on chosen anchors. The
whole YOLOX-L still runs (its output feeds the sum); every contender finds exactly the
planted people. Files are cached in bench/.cache/ (git-ignored).

Timing: each contender is warmed up, then the contenders take turns (a different order in
every round, to spread drift and neighbours' load). A round starts only once a probe
convolution runs at --quiet (85%) of its best speed, waiting at most 10 s: on a shared
machine this keeps most rounds out of other tenants' bursts. The table gives the median
and the min-max range over the rounds, the ratio to the floor and to the fastest peer
(rtmlib or the upstream loop), both as medians of within-round ratios, and the share of the
machine's compute limit reached: model FLOPs (from `torch.utils.flop_counter`) over the
median time, against the best float32 throughput measured here on all usable cores (a
2048² matmul by torch and by onnxruntime, and a 3x3 convolution by onnxruntime, the layer
these models are made of; the best of them). Last, each contender runs again with its
sessions answering at once with a copy of their first outputs ("own ms"): its pre- and
post-processing alone, what it adds to session.run whatever the machine's load.

Batch scaling: the pose stage alone (`DWPose.pose_on_boxes`) on 1, 8 and 32 given boxes of
the 6-person frame, on both backends, against one `session.run` per crop (upstream) and one
batched `session.run` (the floor): time per call and per person. Each timed call follows an
untimed one of the same contender: a session's run right after another session's shares
the 2 cores with that one's still-spinning onnxruntime threads, which costs ~20-30 ms, as
much as 1 person's differences.

Run:  python bench/speed.py [--rounds N] [--batch-rounds N] [--only cases|batch]
Needs torch, safetensors, onnx, onnxruntime and rtmlib. rtmlib's metadata requires opencv-python and
opencv-contrib-python, which would overwrite opencv-python-headless's cv2/ folder, so
install it without its dependencies (it needs only numpy, opencv, onnxruntime and tqdm):
    pip install --no-deps rtmlib==0.0.16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    CACHE,
    DET_SIZE,
    PLANT_FACTOR,
    POSE_SIZE,
    SEED,
    machine_line,
    plant,
    planted_onnx,
    seeded_nets,
)

from comfyui_dwpose import DWPose, detect, pose  # noqa: E402
from comfyui_dwpose.images import load_image  # noqa: E402
from comfyui_dwpose.runtime import cpu_threads  # noqa: E402

# ---------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    """One image and the boxes (image pixels, x1y1x2y2) the planted detector reports on it."""

    name: str
    image: np.ndarray  # RGB uint8
    boxes: np.ndarray
    detector: Path = dataclasses.field(default=Path())  # fixed 640x640, planted

    @property
    def fitted_size(self) -> tuple[int, int]:
        return detect.fitted_size(self.image.shape[:2], DET_SIZE)

    @property
    def people(self) -> int:
        return len(self.boxes)


def make_cases() -> list[Case]:
    skier = load_image(ROOT / "assets" / "skier.jpg")  # 640x425
    frame = cv2.resize(skier, (1280, 720), interpolation=cv2.INTER_LINEAR)
    one = np.array([[200.0, 40.0, 440.0, 410.0]])
    six = np.array([[20.0 + 210.0 * i, 100.0, 200.0 + 210.0 * i, 680.0] for i in range(6)])
    return [
        Case(f"1 person, {skier.shape[1]}x{skier.shape[0]}", skier, one),
        Case(f"6 people, {frame.shape[1]}x{frame.shape[0]}", frame, six),
    ]


# ---------------------------------------------------------------------------- models


@dataclasses.dataclass
class Files:
    """The same seeded weights as ONNX (onnxruntime) and safetensors (torch backend) files."""

    raw_detector: Path  # ONNX, output not yet planted
    raw_dynamic_detector: Path  # the same exported with dynamic height and width
    pose: Path  # ONNX
    torch_detector: Path  # safetensors, output planted at run time (`planted_torch`)
    torch_pose: Path  # safetensors


def export_models(detector, pose_net) -> Files:
    """The raw detector and the pose model as ONNX and safetensors files (cached)."""
    from comfyui_dwpose.nets import NetConfig, export_onnx
    from comfyui_dwpose.nets.checkpoint import save_safetensors

    files = Files(
        CACHE / "yolox_l_raw.onnx",
        CACHE / "yolox_l_raw_dynamic.onnx",
        CACHE / "rtmpose_l_384x288.onnx",
        CACHE / "yolox_l.safetensors",
        CACHE / "rtmpose_l_384x288.safetensors",
    )
    if not files.raw_detector.exists():
        export_onnx(detector, files.raw_detector, DET_SIZE, dynamic_batch=False)
    if not files.raw_dynamic_detector.exists():
        export_onnx(
            detector, files.raw_dynamic_detector, DET_SIZE, dynamic_batch=False, dynamic_size=True
        )
    if not files.pose.exists():
        export_onnx(pose_net, files.pose)
    if not files.torch_detector.exists():
        save_safetensors(detector, NetConfig("yolox-l", DET_SIZE), files.torch_detector)
    if not files.torch_pose.exists():
        save_safetensors(pose_net, NetConfig("rtmpose-l", POSE_SIZE), files.torch_pose)
    return files


def planted_detector(raw: Path, case: Case, index: int) -> Path:
    """A copy of the raw detector that finds exactly the case's people (cached)."""
    _, ratio = detect.letterbox(case.image, DET_SIZE)
    path = CACHE / f"yolox_l_planted_{index}_{case.people}.onnx"
    return planted_onnx(raw, plant(case.boxes, ratio), path)


# ---------------------------------------------------------------------------- contenders


@dataclasses.dataclass
class Contender:
    name: str
    run: Callable[[], int]  # one image through the pipeline; returns the number of people
    sessions: list[tuple[object, str]]  # (owner, attribute) of each onnxruntime session it uses
    peer: bool = False
    det_size: tuple[int, int] = DET_SIZE  # the detector input it computes

    def replay_models(self) -> None:
        """From now on every model call gets its first answer back at once: what is left to
        time is the contender's own pre- and post-processing."""
        for owner, attribute in self.sessions:
            model = getattr(owner, attribute)
            replay = ReplayCall(model) if callable(model) else ReplaySession(model)
            setattr(owner, attribute, replay)


class ReplaySession:
    """An onnxruntime session stand-in that answers each run with (a copy of) the outputs the
    real session gave on its first run."""

    def __init__(self, session):
        self.session, self.outputs = session, None

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, output_names, feed, run_options=None) -> list[np.ndarray]:
        if self.outputs is None:
            self.outputs = self.session.run(output_names, feed, run_options)
        return [o.copy() for o in self.outputs]


class ReplayCall:
    """The same for a torch model's `run(batch)`."""

    def __init__(self, run: Callable[[np.ndarray], list[np.ndarray]]):
        self.real_run, self.outputs = run, None

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.outputs is None:
            self.outputs = self.real_run(batch)
        return [o.copy() for o in self.outputs]


def ort_session(path: Path):
    """An onnxruntime CPU session with the options ours uses: one intra-op thread per usable
    core, one inter-op thread. Every contender runs its models in such sessions."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def ours(case: Case, files: Files) -> Contender:
    estimator = DWPose(case.detector, files.pose, backend="onnxruntime", device="cpu")
    sessions = [(estimator.detector.model, "session"), (estimator.pose.model, "session")]
    return Contender("ours", lambda: len(estimator(case.image)), sessions)


def ours_fitted(case: Case, files: Files) -> Contender:
    """Ours with `fit_detector_input` on a dynamic-size export of the same detector: less
    work (the padding), not less overhead; off by default (see README)."""
    estimator = DWPose(
        files.raw_dynamic_detector, files.pose, backend="onnxruntime", device="cpu",
        fit_detector_input=True,
    )  # fmt: skip
    planted_run(estimator.detector.model, case, case.fitted_size)
    sessions = [(estimator.detector.model, "session"), (estimator.pose.model, "session")]
    h, w = case.fitted_size
    name = f"ours, fitted detector input ({w}x{h})"
    return Contender(name, lambda: len(estimator(case.image)), sessions, det_size=(h, w))


def ours_torch(case: Case, files: Files) -> Contender:
    """Ours on the torch backend (CPU, float32): the same weights from safetensors files;
    the detector's output is planted after the network, as in the ONNX file."""
    estimator = DWPose(files.torch_detector, files.torch_pose, backend="torch", device="cpu")
    planted_run(estimator.detector.model, case)
    sessions = [(estimator.detector.model, "run"), (estimator.pose.model, "run")]
    return Contender("ours, torch backend", lambda: len(estimator(case.image)), sessions)


def planted_run(model, case: Case, size: tuple[int, int] = DET_SIZE) -> None:
    """Make a raw detector model answer like the planted ONNX file of `case`, the plant
    added after the network (laid out for input `size`; fitting keeps the 640x640 ratio)."""
    _, ratio = detect.letterbox(case.image, DET_SIZE)
    planted, real_run = plant(case.boxes, ratio, size), model.run
    model.run = lambda batch: [real_run(batch)[0] * np.float32(PLANT_FACTOR) + planted]


def rtmlib_peer(case: Case, files: Files) -> Contender:
    try:
        from rtmlib import Wholebody
    except ImportError:
        raise SystemExit("rtmlib is missing: pip install --no-deps rtmlib==0.0.16") from None

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per model loaded
        wholebody = Wholebody(
            det=os.fspath(case.detector),
            det_input_size=DET_SIZE,
            pose=os.fspath(files.pose),
            pose_input_size=POSE_SIZE[::-1],  # rtmlib takes (w, h)
            backend="onnxruntime",
            device="cpu",
        )
    # rtmlib makes its sessions with onnxruntime's default options; use ours' instead
    wholebody.det_model.session = ort_session(case.detector)
    wholebody.pose_model.session = ort_session(files.pose)
    bgr = np.ascontiguousarray(case.image[:, :, ::-1])  # rtmlib takes cv2's BGR frames

    def run() -> int:
        keypoints, _ = wholebody(bgr)
        return len(keypoints)

    sessions = [(wholebody.det_model, "session"), (wholebody.pose_model, "session")]
    return Contender("rtmlib 0.0.16", run, sessions, peer=True)


def upstream_loop(case: Case, files: Files) -> Contender:
    """DWPose's annotator structure (SPEC.md): one detector call, then one pose call per crop,
    each crop normalised in float64 and cast, as upstream does."""
    models = types.SimpleNamespace(det=ort_session(case.detector), pose=ort_session(files.pose))
    mean, std = np.array(pose.MEAN), np.array(pose.STD)

    def run() -> int:
        canvas, ratio = detect.letterbox(case.image, DET_SIZE)
        blob = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        output = models.det.run(None, {"images": blob})[0][0]
        boxes, scores = detect.decode(output, DET_SIZE, ratio)
        candidates = scores > detect.CANDIDATE_SCORE
        boxes, scores = boxes[candidates], scores[candidates]
        keep = detect.nms(boxes, scores, 0.45)
        boxes = boxes[keep][scores[keep] > 0.3]
        people = []
        for box in boxes:
            center, scale = pose.box_center_scale(box[None], POSE_SIZE)
            crop = pose.crop(case.image, center[0], scale[0], POSE_SIZE)
            crop = (crop - mean) / std
            blob = crop.transpose(2, 0, 1)[None].astype(np.float32)
            simcc_x, simcc_y = models.pose.run(None, {"input": blob})
            locs, kp_scores = pose.decode(simcc_x, simcc_y)
            people.append((pose.to_image(locs, center, scale, POSE_SIZE), kp_scores))
        return len(people)

    return Contender("upstream loop", run, [(models, "det"), (models, "pose")], peer=True)


def floor(case: Case, files: Files) -> Contender:
    """Plain session.run of both models on prepared inputs, the pose model batched."""
    models = types.SimpleNamespace(det=ort_session(case.detector), pose=ort_session(files.pose))
    canvas, _ = detect.letterbox(case.image, DET_SIZE)
    det_input = np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], np.float32)
    center, scale = pose.box_center_scale(case.boxes, POSE_SIZE)
    crops = np.stack([pose.crop(case.image, c, s, POSE_SIZE) for c, s in zip(center, scale)])
    pose_input = pose.normalize(crops)

    def run() -> int:
        models.det.run(None, {"images": det_input})
        return len(models.pose.run(None, {"input": pose_input})[0])

    return Contender("floor (session.run only)", run, [(models, "det"), (models, "pose")])


CONTENDERS = (ours, ours_fitted, ours_torch, rtmlib_peer, upstream_loop, floor)


def own_seconds(contender: Contender, people: int, repeats: int = 30) -> float:
    """Median time of a contender with its models replayed (call it after the real timing)."""
    contender.replay_models()
    if contender.run() != people:
        raise SystemExit(f"{contender.name} lost people when its models were replayed")
    return float(np.median([_seconds(contender.run) for _ in range(repeats)]))


# ---------------------------------------------------------------------------- batch scaling

BATCH_PEOPLE = (1, 8, 32)


def spread_boxes(people: int, shape: tuple[int, int], seed: int = SEED) -> np.ndarray:
    """`people` person-shaped boxes (x1y1x2y2) at seeded places inside an (h, w) frame."""
    rng = np.random.default_rng(seed)
    h, w = shape
    heights = rng.uniform(0.3, 0.9, people) * h
    widths = heights * rng.uniform(0.3, 0.5, people)
    x1 = rng.uniform(0, w - widths)
    y1 = rng.uniform(0, h - heights)
    return np.stack([x1, y1, x1 + widths, y1 + heights], axis=1)


def batch_contenders(files: Files, frame: np.ndarray, people: int) -> list[Contender]:
    """The pose stage alone on `people` given boxes of one frame: ours (people batched) on
    both backends, one crop per session.run (upstream), and one batched session.run."""
    boxes = spread_boxes(people, frame.shape[:2])
    on_ort = DWPose(None, files.pose, backend="onnxruntime", device="cpu")
    on_torch = DWPose(None, files.torch_pose, backend="torch", device="cpu")
    session, floor_session = ort_session(files.pose), ort_session(files.pose)
    center, scale = pose.box_center_scale(boxes, POSE_SIZE)
    crops = np.stack([pose.crop(frame, c, s, POSE_SIZE) for c, s in zip(center, scale)])
    batch = pose.normalize(crops)

    def one_per_call() -> int:
        for c, s in zip(center, scale):
            crop = pose.normalize(pose.crop(frame, c, s, POSE_SIZE)[None])
            session.run(None, {"input": crop})
        return people

    return [
        Contender("ours", lambda: len(on_ort.pose_on_boxes([frame], [boxes])[0]), []),
        Contender(
            "ours, torch backend", lambda: len(on_torch.pose_on_boxes([frame], [boxes])[0]), []
        ),
        Contender("one crop per call", one_per_call, []),
        Contender(
            "floor (session.run only)",
            lambda: len(floor_session.run(None, {"input": batch})[0]),
            [],
        ),
    ]


def batch_table(files: Files, frame: np.ndarray, rounds: int, gauge: Gauge) -> list[str]:
    """Markdown rows: time per call and per person for 1, 8 and 32 people in one call."""
    lines = [
        "| people | contender | median ms | ms per person | × floor |",
        "|---:|---|---:|---:|---:|",
    ]
    for people in BATCH_PEOPLE:
        contenders = batch_contenders(files, frame, people)
        for contender in contenders:
            if contender.run() != people:
                raise SystemExit(f"{contender.name} lost people in the batch of {people}")
        times = time_round_robin(
            contenders, rounds * max(1, 8 // people), gauge, warmup=0, settle=True
        )
        floor_times = times[-1]
        for contender, t in zip(contenders, times):
            m = float(np.median(t))
            lines.append(
                f"| {people} | {contender.name} | {m * 1e3:.0f} | {m * 1e3 / people:.0f} | "
                f"{np.median(t / floor_times):.3f} |"
            )
    return lines


# ---------------------------------------------------------------------------- timing


class Gauge:
    """How busy the machine is: a probe's time against its best. `wait` holds each round
    until the probe runs at `threshold` of its best speed so far (or `patience` s passed)."""

    def __init__(self, probe: Probe, threshold: float, patience: float = 10.0):
        self.probe, self.threshold, self.patience = probe, threshold, patience
        self.seconds: list[float] = []  # every probe run
        self.at_rounds: list[float] = []  # the run that let each round start

    def calibrate(self, repeats: int = 10) -> None:
        self.probe.run()
        self.seconds += [_seconds(self.probe.run) for _ in range(repeats)]

    def wait(self) -> None:
        deadline = time.monotonic() + self.patience
        while True:
            self.seconds.append(_seconds(self.probe.run))
            if min(self.seconds) / self.seconds[-1] >= self.threshold:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.at_rounds.append(self.seconds[-1])

    def quietness(self) -> list[float]:
        """Speed at the start of each round as a share of the best speed seen."""
        return sorted(min(self.seconds) / t for t in self.at_rounds)


def time_round_robin(
    contenders: list[Contender], rounds: int, gauge: Gauge, warmup: int = 2, settle: bool = False
) -> np.ndarray:
    """Seconds per call, [contender, round].

    Every round waits for a quiet machine, then runs each contender once, in a rotated
    order, so that all of them see the same drift; ratios are taken within a round.
    `settle`: each timed call comes right after an untimed one of the same contender.
    """
    for contender in contenders:
        for _ in range(warmup):
            contender.run()
    times = np.zeros((len(contenders), rounds))
    for r in range(rounds):
        gauge.wait()
        for k in range(len(contenders)):
            i = (k + r) % len(contenders)
            if settle:
                contenders[i].run()
            times[i, r] = _seconds(contenders[i].run)
    return times


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def count_flops(detector, pose_net) -> tuple[float, float]:
    """FLOPs of one detector pass (640x640) and of one pose crop (384x288)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    flops = []
    for net, size in ((detector, DET_SIZE), (pose_net, POSE_SIZE)):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            net(torch.zeros(1, 3, *size))
        flops.append(float(counter.get_total_flops()))
    return flops[0], flops[1]


@dataclasses.dataclass
class Probe:
    """A float32 kernel of known FLOPs on all usable cores: its best speed is the limit."""

    name: str
    flops: float
    run: Callable[[], object]

    def rate(self, seconds: float) -> float:
        return self.flops / seconds


def throughput_probes(n: int = 2048, channels: int = 256, side: int = 80) -> list[Probe]:
    """The machine's throughput: an n² matmul by torch (MKL) and by onnxruntime (MLAS), and a
    3x3 convolution (channels in and out, side² pixels) by onnxruntime, the kind of layer
    that makes up nearly all of both models' FLOPs. The last one also gauges, round by round,
    how busy the machine is."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    torch.set_num_threads(cpu_threads())
    rng = np.random.default_rng(SEED)
    a, b = rng.standard_normal((2, n, n), np.float32)
    mm_a, mm_b = torch.from_numpy(a), torch.from_numpy(b)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = cpu_threads(), 1

    def session(node, inputs, output, weights=()):
        graph = helper.make_graph(
            [node],
            node.op_type,
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
            [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, output)],
            [numpy_helper.from_array(w, name) for name, w in weights],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    matmul = session(
        helper.make_node("MatMul", ["a", "b"], ["c"]), {"a": [n, n], "b": [n, n]}, [n, n]
    )
    weight = rng.standard_normal((channels, channels, 3, 3), np.float32) * 0.02
    shape = [1, channels, side, side]
    conv = session(
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
        {"x": shape},
        shape,
        [("w", weight)],
    )
    image = rng.standard_normal(shape, np.float32)
    return [
        Probe(f"torch.mm {n}²", 2 * n**3, lambda: torch.mm(mm_a, mm_b)),
        Probe(f"onnxruntime MatMul {n}²", 2 * n**3, lambda: matmul.run(None, {"a": a, "b": b})),
        Probe(
            f"onnxruntime Conv 3x3 {channels}->{channels} ch at {side}x{side}",
            2 * channels * channels * 9 * side * side,
            lambda: conv.run(None, {"x": image}),
        ),
    ]


def best_seconds(probe: Probe, repeats: int = 10) -> float:
    probe.run()
    return min(_seconds(probe.run) for _ in range(repeats))


def versions() -> dict[str, str]:
    import onnxruntime

    return {
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "OpenCV": cv2.__version__,
    }


def torch_version() -> str:
    import torch

    return torch.__version__


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# ---------------------------------------------------------------------------- report


@dataclasses.dataclass
class Result:
    """One case: each contender's seconds per round and its own processing time."""

    case: Case
    names: list[str]
    peers: list[bool]
    det_sizes: list[tuple[int, int]]
    times: np.ndarray  # [contender, round]
    own: list[float]  # seconds, models replayed

    @property
    def floor(self) -> int:
        return next(i for i, name in enumerate(self.names) if name.startswith("floor"))


def run_case(case: Case, files: Files, rounds: int, gauge: Gauge) -> Result:
    contenders = [make(case, files) for make in CONTENDERS]
    for contender in contenders:
        found = contender.run()
        if found != case.people:
            raise SystemExit(f"{contender.name} found {found} people on {case.name!r}")
    times = time_round_robin(contenders, rounds, gauge)
    own = [own_seconds(contender, case.people) for contender in contenders]
    return Result(
        case,
        [c.name for c in contenders],
        [c.peer for c in contenders],
        [c.det_size for c in contenders],
        times,
        own,
    )


HEADER = [
    "| case | contender | median ms | min-max ms | × floor | × fastest peer "
    "| own ms (models replayed) | GFLOP/s (of limit) |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]


def table_rows(result: Result, det_flops: float, pose_flops: float, limit: float) -> list[str]:
    """Markdown rows: median and range, and ratios taken round by round (median of them).

    A contender's FLOPs: the detector's at its input size (YOLOX is convolutional, so in
    proportion to the area) plus the pose model's per person."""
    times = result.times
    medians = np.median(times, axis=1)
    peers = [i for i, peer in enumerate(result.peers) if peer]
    fastest_peer = times[min(peers, key=lambda i: medians[i])]
    rows = []
    for name, size, t, m, own in zip(result.names, result.det_sizes, times, medians, result.own):
        area = size[0] * size[1] / (DET_SIZE[0] * DET_SIZE[1])
        achieved = (det_flops * area + result.case.people * pose_flops) / m
        rows.append(
            f"| {result.case.name} | {name} | {m * 1e3:.0f} | {t.min() * 1e3:.0f}-"
            f"{t.max() * 1e3:.0f} | {np.median(t / times[result.floor]):.3f} | "
            f"{np.median(t / fastest_peer):.3f} | {own * 1e3:.1f} | "
            f"{achieved / 1e9:.0f} ({achieved / limit:.0%}) |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds per case (>= 5)")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.85,
        help="start a round only when a probe runs at this share of its best speed (0: never wait)",
    )
    parser.add_argument(
        "--batch-rounds", type=int, default=5, help="timed rounds per batch size (pose stage)"
    )
    parser.add_argument(
        "--only", choices=("cases", "batch"), help="run one part: the pipelines or batch scaling"
    )
    args = parser.parse_args(argv)

    CACHE.mkdir(parents=True, exist_ok=True)
    detector, pose_net = seeded_nets()
    det_flops, pose_flops = count_flops(detector, pose_net)
    files = export_models(detector, pose_net)
    del detector, pose_net
    cases = make_cases()
    for i, case in enumerate(cases):
        case.detector = planted_detector(files.raw_detector, case, i)
    probes = throughput_probes()
    gauge = Gauge(probes[-1], args.quiet)
    gauge.calibrate()
    best = {p.name: best_seconds(p) for p in probes[:-1]}  # again at the end: keep the best

    results = [] if args.only == "batch" else [
        run_case(case, files, args.rounds, gauge) for case in cases
    ]  # fmt: skip
    batch_lines = [] if args.only == "cases" else batch_table(
        files, cases[-1].image, args.batch_rounds, gauge
    )  # fmt: skip

    print(f"Machine: {machine_line(**versions())}")
    if results:
        limits = {p.name: p.rate(min(best[p.name], best_seconds(p))) for p in probes[:-1]}
        limits[gauge.probe.name] = gauge.probe.rate(min(gauge.seconds))
        limit = max(limits.values())
        lines = list(HEADER)
        for result in results:
            lines += table_rows(result, det_flops, pose_flops, limit)
        print()
        print("\n".join(lines))
        print()
        print(
            f"onnxruntime sessions of every contender: {cpu_threads()} intra-op threads, 1 "
            "inter-op thread, CPU provider, default graph optimisations (rtmlib's two sessions "
            "are re-created with these options; its pipeline code runs unchanged)."
        )
        print(
            f"Compute limit: YOLOX-L 640 = {det_flops / 1e9:.1f} GFLOP, DWPose-l 384x288 = "
            f"{pose_flops / 1e9:.1f} GFLOP per person (torch.utils.flop_counter); machine "
            f"{limit / 1e9:.0f} GFLOP/s = best float32 speed measured on {cpu_threads()} cores ("
            + ", ".join(f"{name} {value / 1e9:.0f}" for name, value in limits.items())
            + ")."
        )
        print(
            "Own ms: the contender's median time (30 calls) with every model call answered at "
            "once by a copy of its first output: letterbox, decoding, NMS, crops, "
            "normalisation, SimCC decoding, and the copy itself (the floor's figure)."
        )
        print(
            f"{args.rounds} interleaved rounds per case after 2 warm-up calls each; ratios are "
            "medians of per-round ratios."
        )
    if batch_lines:
        print()
        print(
            "Batch scaling, the pose stage alone (DWPose-l 384x288), boxes of the 1280x720 frame:"
        )
        print()
        print("\n".join(batch_lines))
        print()
        print(
            f"{args.batch_rounds} interleaved rounds per batch size ({8 * args.batch_rounds} for "
            "1 person); in each, every contender runs once untimed and then once timed, so "
            "that no contender pays for the previous one's spinning onnxruntime threads. torch "
            f"{torch_version()} on the CPU in float32 with {torch_threads()} threads."
        )
    quiet = gauge.quietness()
    print(
        f"Each round waited (up to {gauge.patience:.0f} s) for the Conv probe to run at "
        f"{args.quiet:.0%} of its best speed; at the start of the rounds it ran at "
        f"{quiet[len(quiet) // 2]:.0%} (median; lowest {quiet[0]:.0%})."
    )


if __name__ == "__main__":
    main()
