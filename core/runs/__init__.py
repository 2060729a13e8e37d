"""Runs: a run folder's rules and files, the run's stages, comparisons, grids, reloading a run."""
