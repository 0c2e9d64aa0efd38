"""What every wing shares and nothing else: errors and the CLI wrapper, atomic file writes, grid coordinates.

`core` imports no other opspec package, so `data`, `models`, `optim` and `training` may all use it.
"""
