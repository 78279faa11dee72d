"""The demo that `make run` seeds: people with every role and tier, agents, and their
requests, budgets and policies. The top layer: it uses every other app, and none uses it."""
