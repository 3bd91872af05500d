# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
# Each installs into $(VENV) once: a stamp file there records the install and is redone
# only when pyproject.toml or requirements.txt change, so later runs need no package index
# (`PIP_NO_INDEX=1 HF_HUB_OFFLINE=1 make demo` works once the weights are cached).
VENV ?= .venv
ifeq ($(OS),Windows_NT)
PYTHON ?= python
BIN := $(VENV)/Scripts
else
PYTHON ?= python3
BIN := $(VENV)/bin
endif
# Recipes stay valid for sh and for cmd.exe: double quotes, no touch.
STAMP = $(BIN)/python -c "import pathlib, sys; [pathlib.Path(p).touch() for p in sys.argv[1:]]"
DETECTOR ?= yolox_l.onnx
POSE_MODEL ?= dw-ll_ucoco_384.onnx
DEPENDENCIES := pyproject.toml requirements.txt

.PHONY: demo test install dev lint

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# What a user gets from `pip install -e ".[onnx]"`: the runtime alone.
$(VENV)/.installed-onnx: $(DEPENDENCIES) | $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install -q -e ".[onnx]"
	$(STAMP) $@

# torch first, pinned to the CPU wheel, so that nothing pulls a CUDA build; then the tests' tools.
# xtcocotools (COCO-WholeBody evaluation, dwpose eval): its 1.14.3 wheels are built for numpy 1
# and fail to import under numpy 2, so it is built from source against the installed numpy.
$(VENV)/.installed-dev: $(DEPENDENCIES) | $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[onnx,dev]"
	$(BIN)/python -m pip install -q cython setuptools
	$(BIN)/python -m pip install -q --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3
	$(STAMP) $@ $(VENV)/.installed-onnx

install: $(VENV)/.installed-onnx

dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-onnx
	$(BIN)/dwpose pose assets/skier.jpg -o out/demo --detector $(DETECTOR) --pose-model $(POSE_MODEL)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/pytest -q
