# Entry points; scripts/test.sh does the work so CI and developers run the same thing.
.PHONY: test lint demo complement

# make test PYTEST_ARGS='-k smoke -x'
PYTEST_ARGS ?=

test:
	bash scripts/test.sh $(PYTEST_ARGS)

lint:
	bash scripts/test.sh --lint

demo:
	bash scripts/demo.sh

# Complement tests (MSC2923 and an upstream selection) against Synapse processes;
# needs .venv (make lint creates it) and root. See complement/README.md.
complement:
	bash scripts/complement.sh
