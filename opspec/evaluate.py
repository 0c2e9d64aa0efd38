"""`python -m opspec.evaluate CHECKPOINT`: the evaluation CLI (the work is in `opspec.training.evaluate`)."""
from opspec.training.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
