"""The harness: suites, the runner, pruned-model and trained-part providers, scale-out."""
