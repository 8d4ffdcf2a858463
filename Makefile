# Entry points; scripts/test.sh does the work so CI and developers run the same thing.
.PHONY: test test-oldest lint demo package complement

# make test PYTEST_ARGS='-k smoke -x'
PYTEST_ARGS ?=

test:
	bash scripts/test.sh $(PYTEST_ARGS)

# The handshake, ferry, expansion and worker tests on the oldest supported
# Synapse, in .venv-oldest.
test-oldest:
	bash scripts/test-oldest.sh

lint:
	bash scripts/test.sh --lint

# DEMO_ONCE=1 make demo: stop by itself; exit 0 only if messages crossed.
demo:
	bash scripts/demo.sh

# Wheel and sdist built and checked, the demo run against the installed wheel.
package:
	bash scripts/check-package.sh

# Complement tests (MSC2923 and an upstream selection) against Synapse processes;
# needs .venv (make lint creates it) and root. See complement/README.md.
complement:
	bash scripts/complement.sh
