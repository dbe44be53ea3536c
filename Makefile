# gmmcli: every target works on a fresh clone (it creates .venv when needed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GMMCLI := $(BIN)/gmmcli
OUT := out

.PHONY: demo test lint format bench bench-commits bench-hc bench-missing bench-kernels bench-onedal-2024 bench-predict bench-scale bench-stream sample-data clean

$(GMMCLI): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(GMMCLI)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: install, then generate -> fit -> classify -> score (-> plot) into out/: rows drawn from a
## known mixture, fitted, labelled and scored beside the true mixture; and a weighted fit of sample_data/
demo: $(GMMCLI)
	mkdir -p $(OUT)
	$(GMMCLI) generate -k 3 -d 2 -n 500 --seed 7 -o $(OUT)/generated.csv --truth $(OUT)/truth.json
	$(GMMCLI) fit $(OUT)/generated.csv -k 3 --n-init 3 -o $(OUT)/model.json
	$(GMMCLI) classify $(OUT)/generated.csv --model $(OUT)/model.json -o $(OUT)/classified.csv
	$(GMMCLI) score $(OUT)/generated.csv --model $(OUT)/model.json --per-sample $(OUT)/scores.csv > $(OUT)/score.json
	$(GMMCLI) score $(OUT)/generated.csv --model $(OUT)/truth.json > $(OUT)/truth-score.json
	$(GMMCLI) fit sample_data/weighted.csv -k 3 --weight-column count -q -o $(OUT)/weighted-model.json
	@if $(BIN)/python -c 'import matplotlib' 2>/dev/null; then \
		set -x; $(GMMCLI) plot $(OUT)/generated.csv --model $(OUT)/model.json -q -o $(OUT)/fit.png; \
	else \
		echo "no picture: for $(OUT)/fit.png install the plot extra: $(BIN)/pip install -e '.[plot]'"; \
	fi
	@echo "results in $(OUT)/: generated.csv truth.json (the true mixture) model.json (its fit)" \
		"classified.csv (component beside true_component) score.json scores.csv" \
		"truth-score.json (the truth's score, to compare) weighted-model.json" \
		"and, with the plot extra, fit.png"

## test: the whole suite, with the dev extras
test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -n 2

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/.bench: $(GMMCLI)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

## bench: EM speed against scikit-learn and oneDAL, mclust's structures against the nearest of the four
## (OpenBLAS reads these variables at load)
bench: $(VENV)/.bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_em.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_structures.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_missing.py

## bench-missing: EM through 10% missing cells against complete data (1M x 10, K = 10, full)
bench-missing: $(VENV)/.bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_missing.py

## bench-onedal-2024: the older, faster oneDAL in a venv of its own (bench uses it if present)
bench-onedal-2024:
	$(PYTHON) -m venv benchmarks/.venv-onedal2024
	benchmarks/.venv-onedal2024/bin/pip install --quiet daal4py==2024.7.0 'scikit-learn<1.6' packaging numpy

## bench-commits: EM time per iteration of two commits taking turns (OLD=rev NEW=rev ROUNDS=5)
OLD ?= HEAD~1
NEW ?= HEAD
ROUNDS ?= 5
bench-commits: $(GMMCLI)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_commits.py \
		$(OLD) $(NEW) --rounds $(ROUNDS)

## bench-kernels: the E-step's tile sizes and kernel forms, µs per row on one thread
bench-kernels: $(GMMCLI)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_kernels.py

## bench-hc: seconds to build the hc start's tree on 2,000 rows at D = 10 and D = 50
bench-hc: $(GMMCLI)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_hc.py

## bench-predict: predict_proba + score_samples against scikit-learn's (1M x 10, K = 10), and
## where the time of classify (1M x 10 Parquet to Parquet) goes
bench-predict: $(VENV)/.bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_predict.py

## bench-scale: a ~4 GB Parquet file fitted streamed, peak RSS below 1 GB
bench-scale: $(GMMCLI)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_scale.py

## bench-stream: a 2M x 10 Parquet file fitted streamed and in memory, rows/s per iteration (ROUNDS=5)
bench-stream: $(GMMCLI)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_stream.py \
		--rounds $(ROUNDS)

## sample-data: rebuild the committed sample_data/ (fixed seeds, same bytes every time)
sample-data: $(GMMCLI)
	$(GMMCLI) generate -k 3 -d 2 -n 600 --seed 2026 -q -o sample_data/blobs.csv
	$(GMMCLI) generate -k 3 -d 2 -n 600 --seed 2026 -q -o sample_data/blobs.parquet
	$(GMMCLI) generate -k 3 -d 2 -n 200 --seed 2027 --weight-column count -q -o sample_data/weighted.csv

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
