"""The ``redrive`` command line: thin layers that parse, call the library and render."""
