# Smart-Support. `make serve` installs, builds models/ if missing and serves; `make test` tests.
# The interpreter of .venv: unless given, Debian's /usr/bin/python3.11 where it can make a
# virtual environment (package python3.11-venv, on this machine's image), else python3.11
# from PATH. Debian builds it with profile-guided and link-time optimisation and
# links libpython into the executable; pyenv's default build does neither. The Python around
# the model costs about a fifth less on Debian's (README, "Performance", session 13). An
# existing .venv is kept: `rm -rf .venv && make install` switches.
DEBIAN_PYTHON := /usr/bin/python3.11
PYTHON ?= $(shell $(DEBIAN_PYTHON) -c 'import ensurepip' >/dev/null 2>&1 && echo $(DEBIAN_PYTHON) || echo python3.11)
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
MODEL_DIR ?= models
TRAIN_DATA ?= data/train.jsonl
# Validation = whole authors held out (see data/README.md): calibration and the review
# threshold are fitted on tickets by a writer the model never read.
TRAIN_ARGS ?= --validation-group-field source
TEST_DATA ?= data/test.jsonl
EXTRA_TEST_DATA ?= data/test-b.jsonl data/test-c.jsonl data/test-d.jsonl
HELD_OUT_DATA = $(foreach f,$(TEST_DATA) $(EXTRA_TEST_DATA),--data $(f))
DEV_DATA ?= ../shared/eval/dev_tickets.jsonl
# glibc >= 2.35: large malloc'd blocks (ONNX Runtime's weights and buffers) on transparent huge
# pages, fewer TLB misses: about 3% less CPU per request (README, "Performance"). Read when a
# process starts, so it is set for the server and for `make bench` (both sides of its ratio);
# MALLOC_TUNABLES= turns it off.
MALLOC_TUNABLES ?= glibc.malloc.hugetlb=1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install model serve test evaluate evaluate-ensemble clean-model

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet --no-build-isolation -e '.[test]'
	@touch $@

# The default model is a 3-layer student distilled from a 6-layer teacher: within 0.01 macro-F1
# of the teacher on the held-out files at about twice its speed (README, "Model and accuracy").
# The teacher is kept in $(TEACHER_DIR); `MODEL_DIR=$(TEACHER_DIR) make serve` serves it.
TEACHER_DIR ?= $(MODEL_DIR)/teacher
STUDENT_LAYERS ?= 3
STUDENT_ARGS ?= --distill-weight 0.7 --augment 2
model: install
	@if [ -f $(MODEL_DIR)/metadata.json ]; then \
		echo "model present in $(MODEL_DIR) (delete $(MODEL_DIR)/metadata.json to rebuild)"; \
		for dir in $(MODEL_DIR) $(TEACHER_DIR); do \
			if [ -f $$dir/metadata.json ] && { [ ! -f $$dir/onnx/classifier/encoder.json ] \
					|| [ ! -f $$dir/onnx/storm-encoder/encoder.json ]; }; then \
				echo "exporting $$dir for ONNX Runtime (built before the onnx runtime)"; \
				$(BIN)/smart-support export --model-dir $$dir || exit 1; \
			fi; \
		done; \
	else \
		set -e; \
		if [ -f $(TEACHER_DIR)/metadata.json ]; then \
			echo "teacher present in $(TEACHER_DIR)"; \
		else \
			echo "building the model, step 1/2: the 6-layer teacher into $(TEACHER_DIR) (about 7 to 11 min on 2 cores)"; \
			$(BIN)/smart-support --verbose train --data $(TRAIN_DATA) --out $(TEACHER_DIR) $(TRAIN_ARGS); \
		fi; \
		echo "building the model, step 2/2: the $(STUDENT_LAYERS)-layer student into $(MODEL_DIR) (about 10 to 14 min)"; \
		$(BIN)/smart-support shrink --model-dir $(TEACHER_DIR) --layers $(STUDENT_LAYERS) \
			--out $(MODEL_DIR)/student-base; \
		$(BIN)/smart-support --verbose train --data $(TRAIN_DATA) --out $(MODEL_DIR) \
			--base-model $(MODEL_DIR)/student-base --teacher $(TEACHER_DIR) $(TRAIN_ARGS) $(STUDENT_ARGS); \
	fi
	@if [ ! -f $(MODEL_DIR)/ensemble.json ]; then \
		echo "fitting the transformer + baseline blend on the validation split ($(MODEL_DIR)/ensemble.json, for SMART_SUPPORT_ENSEMBLE)"; \
		$(BIN)/smart-support ensemble --model-dir $(MODEL_DIR); \
	fi

serve: model
	GLIBC_TUNABLES=$(MALLOC_TUNABLES) HOST=$(HOST) PORT=$(PORT) WORKERS=$(WORKERS) SMART_SUPPORT_MODEL_DIR=$(MODEL_DIR) \
		$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: install
	$(BIN)/python -m pytest

# Our test file and the outside author's, for the served model (and the same model in the torch
# runtime, which the onnx export must match) and, beside it, the teacher it was distilled from;
# then each further held-out file; then the served model against v1 (the teacher as served
# before the student: torch int8), ticket by ticket, on each file and on ours pooled.
evaluate: model
	$(BIN)/smart-support evaluate --data $(TEST_DATA) --model-dir $(MODEL_DIR) --out reports/test.json \
		--plot reports/reliability-test.png
	SMART_SUPPORT_RUNTIME=torch $(BIN)/smart-support evaluate --data $(TEST_DATA) \
		--model-dir $(MODEL_DIR) --out reports/torch-test.json
	@if [ -f $(DEV_DATA) ]; then \
		$(BIN)/smart-support evaluate --data $(DEV_DATA) --model-dir $(MODEL_DIR) --out reports/dev.json \
			--plot reports/reliability-dev.png; \
		SMART_SUPPORT_RUNTIME=torch $(BIN)/smart-support evaluate --data $(DEV_DATA) \
			--model-dir $(MODEL_DIR) --out reports/torch-dev.json; \
	else echo "no $(DEV_DATA): skipping the outside-author evaluation"; fi
	@if [ -f $(TEACHER_DIR)/metadata.json ]; then \
		$(BIN)/smart-support evaluate --data $(TEST_DATA) --model-dir $(TEACHER_DIR) \
			--out reports/teacher-test.json; \
		if [ -f $(DEV_DATA) ]; then $(BIN)/smart-support evaluate --data $(DEV_DATA) \
			--model-dir $(TEACHER_DIR) --out reports/teacher-dev.json; fi; \
		$(BIN)/smart-support compare --data $(TEST_DATA) --model-dir $(MODEL_DIR) \
			--against $(TEACHER_DIR) --against-runtime torch --out reports/against-v1-test.json; \
		if [ -f $(DEV_DATA) ]; then $(BIN)/smart-support compare --data $(DEV_DATA) \
			--model-dir $(MODEL_DIR) --against $(TEACHER_DIR) --against-runtime torch \
			--out reports/against-v1-dev.json; fi; \
	fi
	@set -e; for data in $(EXTRA_TEST_DATA); do \
		name=$$(basename $$data .jsonl); \
		$(BIN)/smart-support evaluate --data $$data --model-dir $(MODEL_DIR) \
			--out reports/$$name.json; \
		if [ -f $(TEACHER_DIR)/metadata.json ]; then \
			$(BIN)/smart-support evaluate --data $$data --model-dir $(TEACHER_DIR) \
				--out reports/teacher-$$name.json; \
			$(BIN)/smart-support compare --data $$data --model-dir $(MODEL_DIR) \
				--against $(TEACHER_DIR) --against-runtime torch --out reports/against-v1-$$name.json; \
		fi; \
	done
	@if [ -f $(TEACHER_DIR)/metadata.json ]; then \
		$(BIN)/smart-support compare $(HELD_OUT_DATA) \
			--model-dir $(MODEL_DIR) --against $(TEACHER_DIR) --against-runtime torch \
			--out reports/against-v1-held-out.json; \
	fi
	$(MAKE) --no-print-directory evaluate-ensemble

# SMART_SUPPORT_ENSEMBLE: the blend on our test file and the outside author's, then against
# the same model alone and against v1, ticket by ticket, on our held-out files pooled and on
# the outside author's.
evaluate-ensemble: model
	SMART_SUPPORT_ENSEMBLE=true $(BIN)/smart-support evaluate --data $(TEST_DATA) \
		--model-dir $(MODEL_DIR) --out reports/ensemble-test.json
	SMART_SUPPORT_ENSEMBLE=true $(BIN)/smart-support compare $(HELD_OUT_DATA) \
		--model-dir $(MODEL_DIR) --against $(MODEL_DIR) --out reports/ensemble-against-alone-held-out.json
	@if [ -f $(DEV_DATA) ]; then \
		SMART_SUPPORT_ENSEMBLE=true $(BIN)/smart-support evaluate --data $(DEV_DATA) \
			--model-dir $(MODEL_DIR) --out reports/ensemble-dev.json; \
		SMART_SUPPORT_ENSEMBLE=true $(BIN)/smart-support compare --data $(DEV_DATA) \
			--model-dir $(MODEL_DIR) --against $(MODEL_DIR) --out reports/ensemble-against-alone-dev.json; \
	fi
	@if [ -f $(TEACHER_DIR)/metadata.json ]; then \
		SMART_SUPPORT_ENSEMBLE=true $(BIN)/smart-support compare $(HELD_OUT_DATA) \
			--model-dir $(MODEL_DIR) --against $(TEACHER_DIR) --against-runtime torch \
			--out reports/ensemble-against-v1-held-out.json; \
		if [ -f $(DEV_DATA) ]; then SMART_SUPPORT_ENSEMBLE=true $(BIN)/smart-support compare \
			--data $(DEV_DATA) --model-dir $(MODEL_DIR) --against $(TEACHER_DIR) \
			--against-runtime torch --out reports/ensemble-against-v1-dev.json; fi; \
	fi

clean-model:
	rm -rf $(MODEL_DIR)/classifier $(MODEL_DIR)/*.pkl $(MODEL_DIR)/*.json $(MODEL_DIR)/student-base \
		$(TEACHER_DIR)

# `make bench`: the model's in-process limit, the server as deployed under wrk, a seed-shaped
# reference server, memory and accuracy against v1, in one run (8 to 13 min by host; BENCH_ARGS=--quick: about 3 min).
# Writes bench/results/{report.md,plot.png,results.json}; see bench/README.md.
BENCH_ARGS ?=
.PHONY: bench
bench: model
	@command -v wrk >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing wrk (apt-get install wrk)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq wrk >/dev/null 2>&1 || \
			{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } || \
			echo "could not install wrk: the HTTP part will be skipped"; \
		else \
			echo "wrk is missing and this is not root: the HTTP part will be skipped (apt-get install wrk)"; \
		fi; }
	GLIBC_TUNABLES=$(MALLOC_TUNABLES) $(BIN)/python bench/run.py \
		--accuracy-data $(TEST_DATA) $(EXTRA_TEST_DATA) --outside-data $(DEV_DATA) $(BENCH_ARGS)

# `make faults`: load and fault scenarios on loopback, gunicorn as deployed behind nginx
# (deploy/nginx.conf): sustained load, a killed worker, memory over 50,000 requests, broken
# model directories, a failing transformer, the body-size limit. About 8 min; FAULTS_ARGS=--quick:
# about 2 min. Installs nginx/wrk with apt-get when missing and root. See bench/faults/README.md.
FAULTS_ARGS ?=
.PHONY: faults
faults:
	GLIBC_TUNABLES=$(MALLOC_TUNABLES) $(BIN)/python bench/faults/run.py $(FAULTS_ARGS)

# `make storms`: storm detection measured (quiet traffic vs storms, threshold sweep, speed).
# About 2 minutes; writes bench/results/storms.{md,json}. See README, "Storm detection".
.PHONY: storms
storms: install
	$(BIN)/python bench/storms.py
