"""The simulator: fault injection, load, chaos against real workers, and reconciliation.

- :mod:`~redrive.simulate.faults` — middleware injecting seeded errors, latency, crashes;
- :mod:`~redrive.simulate.traffic` and :mod:`~redrive.simulate.producer` — the load, and
  a producer that knows whether each XADD took effect;
- :mod:`~redrive.simulate.scenario` — TOML scenarios (shipped in ``scenarios/``);
- :mod:`~redrive.simulate.proxy`, :mod:`~redrive.simulate.workers`,
  :mod:`~redrive.simulate.chaos` — the faults run against real processes;
- :mod:`~redrive.simulate.accounting`, :mod:`~redrive.simulate.report` — the verdict;
- :mod:`~redrive.simulate.runner` — ``redrive simulate`` end to end.

Example::

    from redrive.simulate.runner import run_simulation
    from redrive.simulate.scenario import load_scenario

    report = run_simulation(load_scenario("chaos").with_overrides(messages=5000, seed=1))
    assert report.lost == 0
"""
