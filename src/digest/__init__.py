"""digest: turn a folder of dated content into a monthly email digest, and send it exactly once."""

__version__ = "0.1.0"
