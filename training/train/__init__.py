"""The training run: the loop, data loading, distributed plumbing, where a run starts."""
