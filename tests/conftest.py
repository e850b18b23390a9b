"""Shared by every test: hypothesis without per-example deadlines. The CI machine has
two shared, noisy cores; a deadline there measures the neighbours, not the code."""

from hypothesis import settings

settings.register_profile("shadowroute", deadline=None)
settings.load_profile("shadowroute")
