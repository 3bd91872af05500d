"""``dwpose train stage1|stage2``, ``dwpose eval`` and ``dwpose export``.

Registered by ``comfyui_dwpose.cli`` through ``add_parsers``. Nothing here imports torch or
xtcocotools before a command runs, so ``dwpose --help`` works without the ``train`` extra.
Multi-GPU and multi-node: the same command under ``torchrun --nproc-per-node N -m
comfyui_dwpose.cli train ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import files
from .augment import PRESETS as AUGMENT_PRESETS
from .presets import PRESETS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TRAIN_EXTRA = 'the trainer needs PyTorch: pip install -e ".[train]"'


def add_parsers(commands: argparse._SubParsersAction) -> None:
    _add_train(commands)
    _add_eval(commands)
    _add_export(commands)


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="DWPose distillation: stage 1 (teacher -> student) or stage 2 (head self-distillation)",
        description="Train with a released preset, any setting overridable. Resumes the run "
        "found in --out. Many GPUs or nodes: torchrun --nproc-per-node N -m comfyui_dwpose.cli train ...",
    )
    stage = train.add_subparsers(dest="stage", required=True)
    for number in (1, 2):
        names = [n for n, c in PRESETS.items() if c.stage == number]
        parser = stage.add_parser(
            f"stage{number}",
            help="frozen teacher -> student"
            if number == 1
            else "student head on the stage-1 model's features",
        )
        parser.add_argument(
            "--preset",
            required=True,
            choices=names,
            help="released setting (T-S-H: teacher, student, input height)",
        )
        parser.add_argument(
            "--teacher",
            type=Path,
            help="teacher weights (.pth, .safetensors): the released RTMPose teacher; "
            "stage 2: the stage-1 model (dwpose export)",
        )
        parser.add_argument(
            "--student-init",
            type=Path,
            help="start weights of the student (whole model or backbone)",
        )
        parser.add_argument(
            "--ann", type=Path, required=True, help="COCO-WholeBody-style annotation JSON"
        )
        parser.add_argument(
            "--images", type=Path, required=True, help="folder of the annotation's images"
        )
        parser.add_argument(
            "--ubody",
            type=Path,
            metavar="DIR",
            help="also train on UBody (DIR/annotations/<scene>/train_annotations.json, DIR/images)",
        )
        parser.add_argument(
            "--out", type=Path, required=True, help="run folder: checkpoint, metrics, model"
        )
        parser.add_argument("--teacher-arch", help="override the preset's teacher (e.g. rtmpose-l)")
        parser.add_argument("--student-arch", help="override the preset's student (e.g. rtmpose-t)")
        parser.add_argument("--epochs", type=int)
        parser.add_argument(
            "--batch-size", type=int, help="global batch (the learning rate scales with it)"
        )
        parser.add_argument(
            "--lr", type=float, help="peak learning rate at the preset's batch size"
        )
        parser.add_argument("--input-size", type=_size, metavar="HxW")
        parser.add_argument(
            "--augment",
            choices=AUGMENT_PRESETS,
            help="augmentation pair (default coco-ubody, as the released models)",
        )
        parser.add_argument("--warmup-iters", type=int, help="linear warm-up length (default 1000)")
        parser.add_argument(
            "--frozen-teacher", action="store_true", help="keep the teacher in eval mode"
        )
        parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
        parser.add_argument("--seed", type=int)
        parser.add_argument(
            "--workers", type=int, help="data loading processes per training process"
        )
        parser.add_argument(
            "--iterations", type=int, help="stop after N iterations (the schedule keeps its length)"
        )
        parser.add_argument("--checkpoint-every", type=int, default=500, metavar="N")
        parser.add_argument("--log-every", type=int, default=10, metavar="N")
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
        parser.set_defaults(run=_run_train)


def _add_eval(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="COCO-WholeBody AP/AR per part (xtcocotools), of a predictions file or of a model",
        description="With --model, first predicts every box of --ann (or of --boxes) into "
        "--predictions; then evaluates that file.",
    )
    evaluate.add_argument("--ann", type=Path, required=True, help="COCO-WholeBody annotation JSON")
    evaluate.add_argument("--predictions", type=Path, required=True, help="results-format JSON")
    evaluate.add_argument("--out", type=Path, required=True, help="METRICS.json to write")
    evaluate.add_argument(
        "--rescore", action="store_true", help="mmpose's metric: box x keypoint score, OKS-NMS 0.9"
    )
    evaluate.add_argument(
        "--model", type=Path, help="pose model (.safetensors, .pth, .onnx) to predict with"
    )
    evaluate.add_argument(
        "--images", type=Path, help="with --model: folder of the annotation's images"
    )
    evaluate.add_argument(
        "--boxes", type=Path, help="with --model: person detections JSON (default: GT boxes)"
    )
    evaluate.add_argument("--no-flip-test", dest="flip_test", action="store_false")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(run=_run_eval)


def _add_export(commands) -> None:
    export = commands.add_parser(
        "export", help="a training run's model as .safetensors or .onnx (official signature)"
    )
    export.add_argument("source", type=Path, help="run folder, its last.pt, or a model file")
    export.add_argument(
        "-o", "--output", type=Path, required=True, help="OUT.safetensors or OUT.onnx"
    )
    export.add_argument(
        "--register", action="store_true", help="also copy it into the local models folder"
    )
    export.add_argument("--models-dir", type=Path, help="models folder for --register")
    export.set_defaults(run=_run_export)


def _run_train(args: argparse.Namespace) -> int:
    try:
        from .annotations import concat, load_coco_wholebody, load_ubody
        from .data import training_set
        from .export import read_weights
        from .loop import TrainingError, train
        from .presets import preset
    except ImportError as exc:
        return _fail(f"{TRAIN_EXTRA} ({exc})", EXIT_USAGE)

    stage = int(args.stage[-1])
    config = preset(args.preset, stage)
    overrides = {
        "teacher": args.teacher_arch,
        "student": args.student_arch,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "input_size": args.input_size,
        "augment": args.augment,
        "warmup_iters": args.warmup_iters,
        "precision": args.precision,
        "seed": args.seed,
        "workers": args.workers,
    }
    config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.batch_size is not None and args.lr is None:
        print(f"learning rate {config.peak_lr:.3g} (linear scaling to batch {config.batch_size})")
    if args.frozen_teacher:
        config = config.replace(frozen_teacher=True)
    try:
        teacher = read_weights(args.teacher, "student") if args.teacher else None
        student = read_weights(args.student_init) if args.student_init else None
        records = load_coco_wholebody(args.ann, args.images)
        if args.ubody is not None:
            records = concat([records, load_ubody(args.ubody)])
        dataset = training_set(records, config)
        result = train(
            config,
            dataset,
            args.out,
            teacher,
            student,
            iterations=args.iterations,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            device=args.device,
        )
    except (TrainingError, ValueError, OSError) as exc:
        return _fail(str(exc), EXIT_FAILED)
    print(f"{result.iterations} iterations; model: {result.model}; checkpoint: {result.checkpoint}")
    return EXIT_OK


def _run_eval(args: argparse.Namespace) -> int:
    from .coco_eval import evaluate, load_predictions

    written = [args.out, args.predictions] if args.model is not None else [args.out]
    read = [p for p in (args.ann, args.boxes, args.model) if p is not None]
    if args.model is None:
        read.append(args.predictions)
    try:
        files.refuse_inputs(written, read, ": choose another output file")
    except files.OutputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        if args.model is not None:
            if args.images is None:
                return _fail("--model needs --images", EXIT_USAGE)
            _write_predictions(args)
        metrics = evaluate(args.ann, load_predictions(args.predictions), rescore=args.rescore)
    except ImportError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (ValueError, OSError) as exc:  # EvaluationError, AnnotationError, ImageError
        return _fail(str(exc), EXIT_FAILED)
    _write_json(args.out, metrics)
    print(f"{'part':<10} " + " ".join(f"{n:>6}" for n in next(iter(metrics.values()))))
    for part, values in metrics.items():
        print(f"{part:<10} " + " ".join(f"{v:6.3f}" for v in values.values()))
    return EXIT_OK


def _write_predictions(args: argparse.Namespace) -> None:
    try:
        from ..nets import load_net
        from .annotations import load_coco_wholebody
        from .data import TopDownDataset
        from .predict import predict
    except ImportError as exc:
        raise ImportError(f"{TRAIN_EXTRA} ({exc})") from exc

    net = load_net(args.model)
    size = net.config.input_size
    dataset = TopDownDataset(load_coco_wholebody(args.ann, args.images, args.boxes), size)
    results = predict(net.module, dataset, size, args.flip_test, device=args.device)
    _write_json(args.predictions, results)


def _run_export(args: argparse.Namespace) -> int:
    try:
        from .export import export_checkpoint, register
    except ImportError as exc:
        return _fail(f"{TRAIN_EXTRA} ({exc})", EXIT_USAGE)
    source = args.source / "last.pt" if args.source.is_dir() else args.source
    if args.output.suffix.lower() not in (".safetensors", ".onnx"):
        return _fail(f"{args.output}: the output must end in .safetensors or .onnx", EXIT_USAGE)
    try:
        files.refuse_inputs([args.output], [source], ": choose another output (-o)")
    except files.OutputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        if source.suffix.lower() == ".pt" and source.name == "last.pt":
            written = export_checkpoint(source, args.output)
        else:
            from ..nets import load_net, save_net

            written = save_net(load_net(source), args.output)
    except (ValueError, OSError, KeyError) as exc:
        return _fail(f"{source}: {exc}", EXIT_FAILED)
    print(f"{source} -> {written}")
    if args.register:
        print(f"registered: {register(written, args.models_dir)}")
    return EXIT_OK


def _write_json(path: Path, data) -> None:
    files.make_folder(path.parent)
    files.write_text(path, json.dumps(data, indent=1))


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x192, got {text!r}") from None
    return height, width


def _fail(message: str, code: int) -> int:
    print(f"dwpose: error: {message}", file=sys.stderr)
    return code
