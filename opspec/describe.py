"""`python -m opspec.describe`: one row per parameter and its optimizer treatment (`opspec.training.describe`)."""
from opspec.training.describe import main

if __name__ == "__main__":
    raise SystemExit(main())
