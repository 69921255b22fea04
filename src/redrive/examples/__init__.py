"""Example applications built on redrive.

- :mod:`redrive.examples.ecommerce` — an orders service and a payments service whose
  faults (timeouts, declines, bad payloads) are controllable per message, used by
  ``redrive demo`` and the simulator. Run it with
  ``redrive worker redrive.examples.ecommerce:app``.
"""
