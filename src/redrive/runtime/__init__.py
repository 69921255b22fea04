"""The consumer runtime: the loop of docs/concepts.md, scheduling, recovery, the worker process."""
