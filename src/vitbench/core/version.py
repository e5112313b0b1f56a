"""The vitbench release, recorded in every result and cache key (equal to pyproject's version)."""

VERSION = "0.1.0"

#: Version of the GMACs counter (:mod:`vitbench.measure.gmacs`), recorded as ``gmacs_counter``;
#: here, free of torch, so that reading a store does not import the counter.
GMACS_COUNTER_VERSION = "2"
