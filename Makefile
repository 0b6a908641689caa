# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test deps bench

CARGO ?= cargo

deps:
	@./scripts/setup.sh

## A local cluster: a master on 127.0.0.1:5050 and two agents, until Ctrl-C.
run: deps
	$(CARGO) run --release -p keel-actors --bin keel -- local --agents 2 --port 5050

## Format, lint and the whole test suite.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

## The kernel benchmark (two processes on loopback).
bench: deps
	$(CARGO) run --release -p keel-kernel --example bench
