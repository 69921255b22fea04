"""Lua scripts: loaded once from ``scripts/*.lua``, called by SHA with a NOSCRIPT fallback.

Every move of a message between keys is one script call, so a crash at any point leaves
the message in exactly one place. ``_lib.lua`` (the fence) is prepended to each script.
Call them through :mod:`redrive.store.calls` (keyword arguments, typed results); the
positional ``Script(client, keys, args)`` form stays for callers not yet converted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from redrive.store.cluster import is_cluster

Arg = str | bytes | int | float

NAMES = (
    "ack",
    "schedule_retry",
    "dead_letter",
    "promote_due",
    "renew",
    "retire",
    "replay",
    "purge",
    "heartbeat",
    "import_dead_letters",
    "replay_begin",
    "replay_copy",
    "replay_finish",
    "ack_done",
    "idem_claim",
    "idem_release",
    "commit",
    "publish_dedupe",
    "job_lease",
    "job_step",
    "job_state",
)


class Script:
    """One Lua script: its source and SHA1."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run by SHA; on NOSCRIPT (a restarted or flushed server) load it and run again."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Arg]) -> None:
        """Add a call to a pipeline; the caller handles a NOSCRIPT result (see ``reload``)."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


def _read(name: str) -> str:
    return (resources.files("redrive.store") / "scripts" / f"{name}.lua").read_text("utf-8")


class Scripts:
    """The set of scripts, loaded from package data once per process."""

    def __init__(self) -> None:
        prelude = _read("_lib")
        self.by_name = {name: Script(name, prelude + "\n" + _read(name)) for name in NAMES}
        self.ack = self.by_name["ack"]
        self.schedule_retry = self.by_name["schedule_retry"]
        self.dead_letter = self.by_name["dead_letter"]
        self.promote_due = self.by_name["promote_due"]
        self.renew = self.by_name["renew"]
        self.retire = self.by_name["retire"]
        self.replay = self.by_name["replay"]
        self.purge = self.by_name["purge"]
        self.heartbeat = self.by_name["heartbeat"]
        self.import_dead_letters = self.by_name["import_dead_letters"]
        self.replay_begin = self.by_name["replay_begin"]
        self.replay_copy = self.by_name["replay_copy"]
        self.replay_finish = self.by_name["replay_finish"]
        self.ack_done = self.by_name["ack_done"]
        self.idem_claim = self.by_name["idem_claim"]
        self.idem_release = self.by_name["idem_release"]
        self.commit = self.by_name["commit"]
        self.publish_dedupe = self.by_name["publish_dedupe"]
        self.job_lease = self.by_name["job_lease"]
        self.job_step = self.by_name["job_step"]
        self.job_state = self.by_name["job_state"]

    async def load_all(self, client: Redis) -> None:
        """SCRIPT LOAD every script (at start and after a reconnect)."""
        if is_cluster(client):
            # A cluster pipeline cannot fan out; the client sends SCRIPT LOAD to every
            # primary. (A promoted replica lacks them: EVALSHA's NOSCRIPT reloads them.)
            for script in self.by_name.values():
                await client.script_load(script.source)
            return
        pipe = client.pipeline(transaction=False)
        for script in self.by_name.values():
            pipe.script_load(script.source)
        await pipe.execute()


_SCRIPTS: Scripts | None = None


def scripts() -> Scripts:
    """The process-wide script set (read from disk on first use)."""
    global _SCRIPTS  # noqa: PLW0603 - a read-only cache of package data
    if _SCRIPTS is None:
        _SCRIPTS = Scripts()
    return _SCRIPTS
