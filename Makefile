# m2fp-batch: `make run INPUT=... OUTPUT=... [MODEL=...]` and `make test` do everything.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MODEL ?= damo/cv_resnet101_image-multiple-human-parsing
INPUT ?=
OUTPUT ?=
CONFIG ?=
DATASET ?= m2fp-$(notdir $(abspath $(OUTPUT)))
PYTEST_ARGS ?=
export RAY_USAGE_STATS_ENABLED ?= 0
export FIFTYONE_DO_NOT_TRACK ?= true

# Label Studio and Datumaro, each in its own venv (their pins never touch $(VENV)); the tests drive
# them as a server / a subprocess.
LS_VENV ?= .venv-ls
DM_VENV ?= .venv-dm
LABEL_STUDIO ?= label-studio==1.23.2
DATUMARO ?= datumaro==1.13.12

.PHONY: install run test lint format bench docs browser-deps review-tools image-deps image wheelhouse image-run clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[all]'
	touch $@

install: $(VENV)/.installed

$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q '$(LABEL_STUDIO)'
	touch $@

$(DM_VENV)/.installed:
	test -x $(DM_VENV)/bin/python || python3 -m venv $(DM_VENV)
	$(DM_VENV)/bin/pip install -q --upgrade pip
	$(DM_VENV)/bin/pip install -q '$(DATUMARO)'
	touch $@

# the review tools the tests start: Label Studio (server) and Datumaro (CVAT's format library)
review-tools: $(LS_VENV)/.installed $(DM_VENV)/.installed

# Chromium for the browser tests (Debian package; Playwright drives it, never downloads one), and
# ffmpeg: FiftyOne reads a video's metadata with ffprobe (`review` of a job output with videos).
browser-deps:
	@{ command -v chromium && command -v ffprobe; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ffmpeg >/dev/null; \
	  else echo "chromium or ffmpeg is missing: sudo apt-get install chromium ffmpeg" >&2; exit 1; fi; }

# The container image (deploy/Containerfile, docs/deploy.md), built without a daemon: buildah,
# podman, mmdebstrap (the Debian base) and runc, Debian packages like browser-deps' Chromium.
IMAGE_TOOLS := buildah podman mmdebstrap runc
MODEL_DIR ?=
ARGS ?=
image-deps:
	@missing=$$(for t in $(IMAGE_TOOLS); do command -v $$t >/dev/null 2>&1 || echo $$t; done); \
	test -z "$$missing" || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(IMAGE_TOOLS) >/dev/null; \
	  else echo "missing: $$missing: sudo apt-get install $(IMAGE_TOOLS)" >&2; exit 1; fi; }

# m2fp-batch:<version>; the base and the wheelhouse are reused while their inputs are unchanged
image: image-deps
	MODEL_DIR="$(MODEL_DIR)" bash deploy/image.sh build

# the wheelhouse alone, for `docker build -f deploy/Containerfile .` elsewhere
wheelhouse:
	bash deploy/image.sh wheelhouse

# make image-run ARGS="parse /data/photo.jpg --model /models/m2fp --out /data/out" IMAGE_OPTS="-v ..."
image-run: image-deps
	bash deploy/image.sh run $(ARGS)

run: install
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make run INPUT=images/ OUTPUT=out/ [MODEL=dir-or-modelscope-id] [CONFIG=job.yaml]" >&2; exit 2; }
	$(VENV)/bin/m2fp-batch run --input "$(INPUT)" --out "$(OUTPUT)" --model "$(MODEL)" $(if $(CONFIG),--config "$(CONFIG)")
	$(VENV)/bin/m2fp-batch review "$(OUTPUT)" --dataset "$(DATASET)"

test: install browser-deps review-tools image-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check m2fp_batch jobs tests benchmarks
	$(VENV)/bin/ruff format --check m2fp_batch jobs tests benchmarks

format: install
	$(VENV)/bin/ruff check --fix m2fp_batch jobs tests benchmarks
	$(VENV)/bin/ruff format m2fp_batch jobs tests benchmarks

bench: install
	$(PY) benchmarks/bench_inference.py

# docs/cli.md from the parsers (tests/test_cli_docs.py checks it is current)
docs: install
	$(PY) -m m2fp_batch.cli_docs > docs/cli.md.tmp && mv docs/cli.md.tmp docs/cli.md

clean:
	rm -rf $(VENV) $(LS_VENV) $(DM_VENV) .pytest_cache build *.egg-info .image
