"""`python -m opspec.train`: the training CLI (the Trainer lives in `opspec.training.trainer`)."""
from opspec.training.trainer import main

if __name__ == "__main__":
    raise SystemExit(main())
