"""Compression methods; importing this package registers the built-in ones."""

from vitbench.methods import baselines, channel_baselines, dynamicvit, evit, lfe, lfs, nvit, tome, tps, vtclfc  # noqa: F401  (registration side effects)
from vitbench.methods.base import METHODS, ChannelMethod, Method, TokenMethod
from vitbench.methods.patch import Handle

__all__ = ["METHODS", "ChannelMethod", "Handle", "Method", "TokenMethod"]
