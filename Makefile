# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test deps bench

CARGO ?= cargo

deps:
	@./scripts/setup.sh

## A local demo: two kernel nodes in two processes exchanging traced messages.
run: deps
	$(CARGO) run --release -p keel-actors --bin keel -- demo

## Format, lint and the whole test suite.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

## The kernel benchmark (two processes on loopback).
bench: deps
	$(CARGO) run --release -p keel-kernel --example bench
