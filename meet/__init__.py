"""meet — a self-hosted video meeting server in one Python process."""

__version__ = "0.1.0"
