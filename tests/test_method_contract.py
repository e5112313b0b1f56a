"""Conformance of every registered method (token and channel), through the kit :mod:`vitbench.testing`."""

from __future__ import annotations

from vitbench.methods import METHODS
from vitbench.testing import conformance_tests

test_builtin_method = conformance_tests(*METHODS.names())
