"""Sweeps as Ray Tune trials: the spec, the plan of trials, the runner and the budget-matched analysis."""
