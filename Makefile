# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
DEMO_PATIENTS ?= 12
WORKERS ?= 2
SEED ?= 0

.PHONY: setup demo test test-fast lint format bench clean

setup:
	@VENV=$(VENV) bash scripts/bootstrap.sh

## The main job on the embedded default data: phantom archive -> curated dataset -> arterial
## frames -> autoencoder -> latent diffusion model -> samples per condition beside real frames ->
## the paper's 400 reader-study samples -> evaluation -> reader study (simulated raters) -> analysis
## -> contrast-free translation (a vessel segmenter, then tiny CAS-GAN and the AttentionGAN baseline:
## the phantom's no-contrast twins -> angiograms) -> their evaluation side by side against the
## phantom's paired truth.
## The phantom's patients are pseudonymised with a fixed demo key, so the splits repeat.
demo: setup
	$(BIN)/angiosynth phantom $(DEMO_DIR)/archive --patients $(DEMO_PATIENTS) --seed $(SEED) --workers $(WORKERS) --preview --pairs --overwrite
	rm -rf $(DEMO_DIR)/dataset
	$(BIN)/angiosynth curate $(DEMO_DIR)/archive/dicom --out $(DEMO_DIR)/dataset --seed $(SEED) --workers $(WORKERS) --key-file configs/phantom-demo.pseudonym-key
	$(BIN)/angiosynth phase train $(DEMO_DIR)/dataset --annotations $(DEMO_DIR)/archive/annotations.csv --out $(DEMO_DIR)/phase-model --seed $(SEED) --overwrite
	$(BIN)/angiosynth phase select $(DEMO_DIR)/dataset --model $(DEMO_DIR)/phase-model
	$(BIN)/angiosynth train vae $(DEMO_DIR)/dataset --config configs/tiny.yaml --out $(DEMO_DIR)/vae --seed $(SEED) --overwrite
	$(BIN)/angiosynth train ldm $(DEMO_DIR)/dataset --vae $(DEMO_DIR)/vae --config configs/tiny.yaml --out $(DEMO_DIR)/ldm --seed $(SEED) --overwrite
	rm -rf $(DEMO_DIR)/samples
	$(BIN)/angiosynth sample $(DEMO_DIR)/ldm --design conditions --n 4 --seed $(SEED) --real $(DEMO_DIR)/dataset --out $(DEMO_DIR)/samples
	rm -rf $(DEMO_DIR)/study-samples $(DEMO_DIR)/eval $(DEMO_DIR)/study $(DEMO_DIR)/analysis
	$(BIN)/angiosynth sample $(DEMO_DIR)/ldm --design reader-study --seed $(SEED) --out $(DEMO_DIR)/study-samples
	$(BIN)/angiosynth evaluate --real $(DEMO_DIR)/dataset --fake $(DEMO_DIR)/study-samples --out $(DEMO_DIR)/eval --seed $(SEED)
	$(BIN)/angiosynth reader-study create $(DEMO_DIR)/study-samples --screener SR --raters NR1,NR2,NS,IM --out $(DEMO_DIR)/study --seed $(SEED) > $(DEMO_DIR)/study-links.txt
	$(BIN)/angiosynth reader-study simulate $(DEMO_DIR)/study --raters 4 --seed $(SEED)
	$(BIN)/angiosynth reader-study export $(DEMO_DIR)/study --out $(DEMO_DIR)/study/ratings.csv
	$(BIN)/angiosynth reader-study analyze $(DEMO_DIR)/study/ratings.csv --out $(DEMO_DIR)/analysis --subset NR1 --subset NR2 --subset NS --subset-name "domain experts" --prevalence $(DEMO_DIR)/dataset
	$(BIN)/angiosynth train segmenter $(DEMO_DIR)/dataset --config configs/translate-tiny.yaml --out $(DEMO_DIR)/segmenter --seed $(SEED) --overwrite
	$(BIN)/angiosynth train translate $(DEMO_DIR)/dataset --method casgan --segmenter $(DEMO_DIR)/segmenter --config configs/translate-tiny.yaml --out $(DEMO_DIR)/translate-casgan --seed $(SEED) --overwrite
	$(BIN)/angiosynth translate $(DEMO_DIR)/translate-casgan $(DEMO_DIR)/dataset --out $(DEMO_DIR)/translated-casgan --overwrite
	$(BIN)/angiosynth train translate $(DEMO_DIR)/dataset --method attentiongan --config configs/translate-tiny.yaml --out $(DEMO_DIR)/translate --seed $(SEED) --overwrite
	$(BIN)/angiosynth translate $(DEMO_DIR)/translate $(DEMO_DIR)/dataset --out $(DEMO_DIR)/translated --overwrite
	rm -rf $(DEMO_DIR)/translate-eval
	$(BIN)/angiosynth evaluate --translated $(DEMO_DIR)/translated-casgan --compare $(DEMO_DIR)/translated --segmenter $(DEMO_DIR)/segmenter --real $(DEMO_DIR)/dataset --out $(DEMO_DIR)/translate-eval --seed $(SEED)
	@echo "demo: preview $(DEMO_DIR)/archive/preview.png, curation report $(DEMO_DIR)/dataset/report.md, samples $(DEMO_DIR)/samples/grid.png, evaluation $(DEMO_DIR)/eval/report.html, reader study $(DEMO_DIR)/analysis/report.html (links: $(DEMO_DIR)/study-links.txt), translation $(DEMO_DIR)/translate-eval/report.html"

## The whole test suite, slow tests included (what CI runs).
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -m "slow or not slow"

## The fast default suite, for the edit-test loop.
test-fast: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/phantom.py
	$(BIN)/python benchmarks/curate.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/sampler_quality.py
	$(BIN)/python benchmarks/translation.py $(DEMO_DIR)/dataset --segmenter $(DEMO_DIR)/segmenter --ablation

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
