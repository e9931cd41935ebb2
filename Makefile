.DEFAULT_GOAL := help
VENV := .venv/bin

help: ## List the everyday commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: ## Create .venv and install opendts with test extras
	python3 -m venv .venv && $(VENV)/pip install -q -e '.[test]'

serve: ## Start opendts with embedded defaults (SQLite in ./opendts-data)
	$(VENV)/opendts serve

test: ## Lint, format check, types and the whole test suite
	bash scripts/test.sh

fmt: ## Format and auto-fix
	$(VENV)/ruff format src tests bench && $(VENV)/ruff check --fix src tests bench

bench: ## API benchmark (prints ratios against a bare endpoint)
	$(VENV)/python bench/api.py

bench-engine: ## Engine benchmark: 3,650-day backfill next to a bare SQL loop
	$(VENV)/python bench/engine.py --parallel 256 --concurrency 64 --rounds 3

bench-smoke: ## Every benchmark at tiny sizes, both backends (seconds; the tests run it too)
	$(VENV)/python bench/api.py --smoke && $(VENV)/python bench/engine.py --smoke && $(VENV)/python bench/load.py --smoke

worker: ## Run a worker (set OPENDTS_DATABASE_URL to PostgreSQL)
	$(VENV)/opendts worker
