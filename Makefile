# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DETECTOR ?= yolox_l.onnx
POSE_MODEL ?= dw-ll_ucoco_384.onnx

.PHONY: demo test install dev lint xtcocotools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[onnx]'

# torch is installed first, pinned to the CPU wheel, so that nothing pulls a CUDA build.
dev: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[onnx,dev]'
	$(MAKE) xtcocotools

# COCO-WholeBody evaluation (dwpose eval). xtcocotools 1.14.3's wheels are built for numpy 1
# and fail to import under numpy 2: build it from source against the installed numpy.
xtcocotools: $(BIN)/python
	$(BIN)/pip install -q cython setuptools
	$(BIN)/pip install -q --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3

demo: install
	$(BIN)/dwpose pose assets/skier.jpg -o out/demo --detector $(DETECTOR) --pose-model $(POSE_MODEL)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: dev
	$(BIN)/ruff check .
	$(BIN)/pytest -q
