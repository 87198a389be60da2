"""kittenFS: an actually simple distributed key value store.

The public names are the client, its exceptions and the version.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
