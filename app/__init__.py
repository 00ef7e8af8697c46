"""The inventory service."""

from importlib.metadata import version

# The installed distribution's version: pyproject.toml says it once.
__version__ = version("inventory")
