"""digest: turn a folder of dated content into a monthly email digest, and send it exactly once."""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)
