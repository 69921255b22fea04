"""The consumer runtime: the loop of DESIGN §4, scheduling, recovery and the worker process."""
