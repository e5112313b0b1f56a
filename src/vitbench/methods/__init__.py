"""Compression methods: one module per method, found by :data:`vitbench.core.registry.METHODS`.

Every module of this package is imported the first time a method name is looked up, so a new
method is one module here plus its card (``vitbench/cards/methods/<name>.yaml``). Shared machinery:
:mod:`vitbench.methods.patching` (token methods) and :mod:`vitbench.methods.slimming` (channel
methods); the contract every method implements: :mod:`vitbench.methods.base`.
"""

from vitbench.methods.base import METHODS, ChannelMethod, Method, TokenMethod
from vitbench.methods.patching.patch import Handle

__all__ = ["METHODS", "ChannelMethod", "Handle", "Method", "TokenMethod"]
