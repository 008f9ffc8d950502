# The two commands of the README. Both set up .venv first (bash setup.sh: a no-op when it is current).
#   make        set up, then the main job: train the runs of the cpu preset that runs/ lacks (a fresh clone
#               lacks none), build the book from runs/, print the path of its index.html
#   make test   set up, then the tests: pytest --nbval-lax (the library and every notebook)
SHELL := /bin/bash
ACTIVATE := source .venv/bin/activate

.PHONY: all setup book book-no-train test
all: book

setup:
	@bash setup.sh

book: setup
	$(ACTIVATE) && lsnc book

book-no-train: setup
	$(ACTIVATE) && lsnc book --no-train

test: setup
	$(ACTIVATE) && pytest --nbval-lax
