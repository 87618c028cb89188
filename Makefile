# The two commands of the course (see README.md):
#   make course   run every chapter notebook at this machine's profile (PROFILE=auto|smoke|cpu|gpu), outputs in OUT/
#                 (with a static HTML copy of the executed notebooks in OUT/<profile>/site/);
#                 PROFILE=gpu REHEARSAL=1 rehearses the gpu profile in minutes on any machine
#   make test     run the test suite (smoke-profile notebooks, unit tests, nbdev sync check, browser test)
#   make figures  redraw the README's figures (docs/figures/) from a cpu course run in OUT/cpu
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
REHEARSAL ?=
OUT ?= outputs
PYTEST_ARGS ?= -n 2

.PHONY: course test figures install-course install-dev

install-course:
	tools/install.sh $(VENV) course

install-dev:
	tools/install.sh $(VENV) dev --browser

course: install-course
	$(VENV)/bin/gaussdiff course --profile $(PROFILE) --out $(OUT) $(if $(REHEARSAL),--rehearsal)

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS) tests

figures:
	$(PY) tools/make_figures.py --from $(OUT)/cpu
