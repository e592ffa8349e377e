"""Benchmarks: serving (`make bench`), tuning (`make bench-tune`), storage, and the load generator.

Run as modules from the repository root, e.g. `python -m benchmarks.serving --config ...`. They use
the package (`mlops`) as any caller would; the package never imports them, and the image does not
contain them.
"""
