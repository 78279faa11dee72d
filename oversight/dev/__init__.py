"""Developer tooling behind `make run`, `make test` and `make bench`; not imported by the app."""
