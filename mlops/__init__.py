"""The shared library behind `scripts/`: one module per pipeline stage (see README.md)."""
