# Two commands are the contract: `make demo` and `make test`. Each sets up what it needs from nothing.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; GPU users: make demo TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'
TORCH_SPEC ?= torch==2.13.0
DEMO ?= demo
DEMO_MINUTES ?= 9
BIN := $(VENV)/bin

.PHONY: demo test bench audit bench-serve clean-demo help

help:
	@echo "make demo   train on MNI152, export to ONNX, segment the test scans (CPU, ~13 min)"
	@echo "make test   run the test suite"
	@echo "make bench  psf-bench on the demo bundle -> benchmarks/cpu-demo.{json,md}"
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
	$(BIN)/psf-train $(DEMO)/data -o $(DEMO)/model.pt --minutes $(DEMO_MINUTES) --threads 2
	$(BIN)/psf-export $(DEMO)/model.pt -o $(DEMO)/bundle --calibration $(DEMO)/data/train/images
	$(BIN)/psf-infer --engine $(DEMO)/bundle/map.onnx $(DEMO)/data/test/images -o $(DEMO)/out --overwrite \
		--report $(DEMO)/out/run.json
	@$(BIN)/psf score $(DEMO)/out $(DEMO)/data/test/labels --run-report $(DEMO)/out/run.json --prefix demo:

test: $(BIN)/.psf-installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.psf-installed
	$(BIN)/psf-bench $(DEMO)/bundle --json benchmarks/cpu-demo.json --markdown benchmarks/cpu-demo.md

# The audit needs the demo model and a U-Net trained with the same data, augmentation and budget.
$(DEMO)/model.pt:
	$(MAKE) demo

$(DEMO)/unet.pt: $(DEMO)/model.pt
	$(BIN)/psf-train $(DEMO)/data --baseline unet -o $(DEMO)/unet.pt --minutes $(DEMO_MINUTES) --threads 2

audit: $(BIN)/.psf-installed $(DEMO)/unet.pt
	$(BIN)/psf-audit $(DEMO)/model.pt $(DEMO)/data --baseline $(DEMO)/unet.pt -o $(DEMO)/audit --threads 2

bench-serve: $(BIN)/.psf-installed
	$(BIN)/psf-bench $(DEMO)/bundle --load --json benchmarks/serve-load-cpu.json --markdown benchmarks/serve-load-cpu.md

clean-demo:
	rm -rf $(DEMO)
