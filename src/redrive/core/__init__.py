"""Pure core: messages, codecs, retry policy, classification, decisions, circuit breaker.

Nothing here performs I/O or reads a clock or RNG of its own: time and randomness are
passed in, so every decision is unit-testable and reproducible with a seed.
"""
