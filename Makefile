# poai developer commands.  `make install` then `make test` on a fresh machine.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install build test test-fast bench lint selftest model sdist clean

# Editable install with the test extras; builds the C extension in place.
install:
	$(PIP) install -e ".[test]"
	$(PYTHON) -m poai.cli models pull smollm2

# Rebuild only the extension (after editing ext/).
build:
	$(PYTHON) setup.py build_ext --inplace

test:
	$(PYTHON) -m pytest -q -rs

# Everything but the whole-model / llama.cpp runs.
test-fast:
	$(PYTHON) -m pytest -q -rs -m "not slow"

selftest:
	$(PYTHON) -m poai.cli selftest

# Every row: each kernel and llama.cpp on SmolLM2, the dot-product peaks and the
# TinyLlama-shaped scale row (its 670 MiB synthetic model is written once, then reused).
bench:
	$(PYTHON) -m poai.cli bench --scale

lint:
	$(PYTHON) -m ruff check poai tests tools
	mkdir -p build
	$(PYTHON) -m cython -X language_level=3 --warning-errors -o build/_native_lint.c ext/_native.pyx

# The source distribution (tests, vectors, docs and tools included) in dist/.
sdist:
	$(PYTHON) -m build --sdist

clean:
	rm -rf build dist *.egg-info poai/*.so ext/_native.c .pytest_cache
