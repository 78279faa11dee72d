"""Developer tooling behind `make run`, `make test`, `make bench` and `make soak`: the launcher
with embedded backing servers, the test environment, benchmarks, the soak. Not part of the
product: nothing in the apps imports it, and the image leaves it out (.dockerignore)."""
