# Tuneboard's two entry points, and the steps they share (Dockerfile and .ci/run call the same targets).
#   make run    start the dashboard on the embedded default (tiny local model + bundled sample data)
#   make test   run the whole test suite: lint, engine, UI and browser tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: run test setup setup-dev browser lint demo bench bench-memory clean

run: setup
	$(BIN)/python app.py --host $(HOST) --port $(PORT)

test: setup-dev browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=15 -n 2 --dist loadgroup

demo: setup  ## the engine alone: train presets/demo.yaml on the CLI
	$(BIN)/python -m finetune train presets/demo.yaml

bench: setup-dev browser  ## plain TRL vs the CLI vs the dashboard, interleaved (ARGS="--quick" or "--repeats 3")
	$(BIN)/python bench/run.py $(ARGS)

bench-memory: setup-dev browser  ## the page under big uploads and hostile templates (REF=HEAD~1 to compare)
	$(BIN)/python bench/bench_memory.py $(if $(REF),--against $(REF))

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# One install script for make, CI and the Dockerfile (scripts/install.sh), so CI runs the image's steps.
$(VENV)/.installed: requirements.txt scripts/install.sh
	VENV=$(VENV) PY=$(PY) scripts/install.sh
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	VENV=$(VENV) PY=$(PY) scripts/install.sh --dev
	touch $@

# Browser tests drive Debian's chromium (playwright's own browser download cannot work offline);
# a Japanese font keeps the Japanese UI legible in the screenshots the tests save.
browser:
	@test -x /usr/bin/chromium -a -d /usr/share/fonts/opentype/ipafont-gothic || \
	  (apt-get update -qq && apt-get install -y -qq chromium fonts-ipafont-gothic >/dev/null)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/.artifacts
