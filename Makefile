# make run: set up everything and start the whole service.
# make test: run the whole suite (it starts the Redis it needs itself).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
ARTIFACT := classifier/artifacts/minilm-humaid/model.safetensors
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test venv redis model db lint train train-head evaluate fuzz soak

run: venv redis model db
	@echo ""
	@echo "AICrisisAlert API: http://$${AICRISISALERT_HOST:-127.0.0.1}:$${AICRISISALERT_PORT:-8000}"
	@echo "Flower:            http://127.0.0.1:5555 (basic auth: AICRISISALERT_FLOWER_BASIC_AUTH)"
	@echo "Make a key:        $(BIN)/flask --app wsgi keys create --name me --role operator"
	@echo ""
	exec $(BIN)/honcho start -f Procfile

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

redis:
	scripts/start-redis $${AICRISISALERT_REDIS_PORT:-6379}

# The trained artifact ships in the repository; train only if it is gone.
model: venv
	test -f $(ARTIFACT) || $(BIN)/python -m classifier.train

db: venv
	$(BIN)/flask --app wsgi init-db

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The shipped model: every weight fine-tuned with a class-weighted loss
# (about 20-35 minutes an epoch on two CPU cores), then one more epoch with
# an unweighted loss at a lower rate; each stage ends by blending in the
# word n-gram model and fitting the temperature on dev. Last, both stages
# run again on train and dev together with what dev chose (bfloat16 steps:
# about 40 minutes on a CPU with AVX-512 BF16).
train: venv
	$(BIN)/python -m classifier.train --method finetune --epochs 2
	$(BIN)/python -m classifier.train --method refine --epochs 1 --lr 2e-5
	$(BIN)/python -m classifier.train --method refit --bf16

# Minutes instead of an hour: the frozen encoder with a linear head.
train-head: venv
	$(BIN)/python -m classifier.train --method head

evaluate: venv
	$(BIN)/python -m classifier.evaluate --data ../shared/data/humaid/test.tsv

# The long fuzz run against the service `make run` started (an admin key):
# 29 operations x 450 generated requests, no 5xx, responses match the spec.
fuzz: venv
	$(BIN)/python -m bench.fuzz --url $${AICRISISALERT_URL:-http://127.0.0.1:8000} --key $${AICRISISALERT_KEY:?set AICRISISALERT_KEY to an admin key} --examples $${FUZZ_EXAMPLES:-450}

# The levelling run at full size: 10,000 jobs measured (two rounds of 5,000
# after a warm-up), Redis keys and a worker's memory compared between them.
soak: venv
	AICRISISALERT_SOAK_HALF_JOBS=5000 $(BIN)/python -m pytest -s -p no:cacheprovider \
		tests/faults/test_workers.py -k levels_off
