"""The training wing: the Trainer (the one loop), its assembly from a config, checkpoints, evaluation,
schedules, precision, loggers, torchrun helpers and plots. The CLIs at `opspec/train.py`,
`opspec/evaluate.py` and `opspec/describe.py` are thin entry points into it."""
