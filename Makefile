# Entry points; scripts/test.sh does the work so CI and developers run the same thing.
.PHONY: test lint demo

# make test PYTEST_ARGS='-k smoke -x'
PYTEST_ARGS ?=

test:
	bash scripts/test.sh $(PYTEST_ARGS)

lint:
	bash scripts/test.sh --lint

demo:
	bash scripts/demo.sh
