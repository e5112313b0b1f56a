from vitbench.testing import conformance_tests

test_normtop = conformance_tests("normtop")
