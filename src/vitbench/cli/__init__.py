"""The vitbench command line, one module per command group."""
