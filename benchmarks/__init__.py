"""Side-by-side performance runs of sched and its peers (see benchmarks/README.md).

Not part of the test suite: `python -m benchmarks.run` runs them all and prints one table.
"""
