# Two commands are the contract: `make demo` and `make test`. Each sets up what it needs from nothing.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; GPU users: make demo TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'
TORCH_SPEC ?= torch==2.13.0
DEMO ?= demo
# Extra flags for the demo's training and export (tests/test_readme.py runs `make demo` with tiny budgets).
DEMO_TRAIN_FLAGS ?=
DEMO_EXPORT_FLAGS ?=
DEMO_MINUTES ?= 9
BIN := $(VENV)/bin
# Benchmarks write to benchmarks/results/<date>-<topic>/ with a run.json (commit, command, host, versions).
RESULTS := benchmarks/results/$(shell date -u +%Y-%m-%d)

.PHONY: demo test bench audit bench-serve clean-demo help

help:
	@echo "make demo   train on MNI152, export to ONNX, segment the test scans (CPU, ~13 min)"
	@echo "make test   run the test suite"
	@echo "make bench  psf-bench on the demo bundle -> benchmarks/results/<date>-cpu-demo/"
	@echo "make audit  psf-audit on the demo model (+ a U-Net baseline, same budget) -> demo/audit/audit.json"
	@echo "make bench-serve  psf-bench --load: 8 clients x 200 slices against loopback psf-serve"

$(BIN)/.psf-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[train,dev]"
	touch $@

demo: $(BIN)/.psf-installed
	$(BIN)/psf data mni152 $(DEMO)/data
	$(BIN)/psf-train $(DEMO)/data -o $(DEMO)/model.pt --threads 2 $(DEMO_TRAIN_FLAGS)
	$(BIN)/psf-export $(DEMO)/model.pt -o $(DEMO)/bundle --calibration $(DEMO)/data/train/images $(DEMO_EXPORT_FLAGS)
	$(BIN)/psf-infer --engine $(DEMO)/bundle/map.onnx $(DEMO)/data/test/images -o $(DEMO)/out --overwrite \
		--report $(DEMO)/out/run.json
	@$(BIN)/psf score $(DEMO)/out $(DEMO)/data/test/labels --run-report $(DEMO)/out/run.json --prefix demo:

test: $(BIN)/.psf-installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.psf-installed
	$(BIN)/psf-bench $(DEMO)/bundle --json $(RESULTS)-cpu-demo/result.json --markdown $(RESULTS)-cpu-demo/result.md

# The audit needs the demo model and a U-Net trained with the same data, augmentation and budget.
$(DEMO)/model.pt:
	$(MAKE) demo

$(DEMO)/unet.pt: $(DEMO)/model.pt
	$(BIN)/psf-train $(DEMO)/data --baseline unet -o $(DEMO)/unet.pt --minutes $(DEMO_MINUTES) --threads 2

audit: $(BIN)/.psf-installed $(DEMO)/unet.pt
	$(BIN)/psf-audit $(DEMO)/model.pt $(DEMO)/data --baseline $(DEMO)/unet.pt -o $(DEMO)/audit --threads 2

bench-serve: $(BIN)/.psf-installed
	$(BIN)/psf-bench $(DEMO)/bundle --load --json $(RESULTS)-serve-load-cpu/result.json --markdown $(RESULTS)-serve-load-cpu/result.md

clean-demo:
	rm -rf $(DEMO)

# Three demo hospitals and a hub as separate NVIDIA FLARE processes (PoC mode: provisioned certificates,
# mutual TLS on loopback). demo/federation/report.json: per center the federated Dice and the Dice of
# that center alone with the same per-participant budget, bytes sent/received per task, NVFlare version.
FED_STEPS ?= image_ae=100,mask_ae=60,mapping=600
.PHONY: federation
federation: $(BIN)/.psf-installed
	rm -rf $(DEMO)/federation $(DEMO)/federation-data
	$(BIN)/psf data mni152 $(DEMO)/federation-data --centers 3
	OMP_NUM_THREADS=1 $(BIN)/psf fed poc center_a=$(DEMO)/federation-data/center_a \
		center_b=$(DEMO)/federation-data/center_b center_c=$(DEMO)/federation-data/center_c \
		-o $(DEMO)/federation --steps $(FED_STEPS) --views 4 --rounds 4 --task-timeout 1800 --compare-alone -q

# Faults, for real (PoC processes, ~5 min): center_c is killed while it trains round 2 (the others go on,
# --min-clients 2), center_b while it trains round 3 (the run stops), then --resume finishes from the hub's
# round 2. Checks and figures: $(DEMO)/federation-faults/faults.json (benchmarks/federation_faults.py).
.PHONY: federation-faults
federation-faults: $(BIN)/.psf-installed
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.federation_faults --out $(DEMO)/federation-faults
