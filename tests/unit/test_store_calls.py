"""Typed script calls build the EVALSHA their Lua contract names, and read its replies.

Pure: no Redis. Each expected tuple is written out by hand from the contract comment of
``store/scripts/<name>.lua``, so a shifted ARGV shows up here.
"""

from __future__ import annotations

import pytest

from redrive.store import calls
from redrive.store.calls import (
    AckResult,
    DeadLetterResult,
    Fence,
    HeartbeatResult,
    PromoteResult,
)
from redrive.store.keys import AUDIT_MAXLEN
from redrive.store.scripts import scripts


def sha(name: str) -> str:
    return scripts().by_name[name].sha


def test_ack_sends_group_consumer_delete_flag_then_ids() -> None:
    call = calls.ack(stream="s", group="g", consumer="c1", delete=True, ids=[b"1-0", b"2-0"])
    assert call.command() == ("EVALSHA", sha("ack"), 1, "s", "g", "c1", "1", b"1-0", b"2-0")
    assert call.keys == ("s",)
    assert call.args == ("g", "c1", "1", b"1-0", b"2-0")
    assert call.script is scripts().ack
    kept = calls.ack(stream="s", group="g", consumer="c1", delete=False, ids=[b"1-0"])
    assert kept.args[2] == "0"


def test_schedule_retry_puts_due_ms_before_the_delete_flag_and_fields() -> None:
    call = calls.schedule_retry(stream="s", due="s:due", group="g", consumer="c1",
                                entry_id="1-0", due_ms=1234, delete=False,
                                fields=["data", b"{}"])  # fmt: skip
    assert call.command() == ("EVALSHA", sha("schedule_retry"), 2, "s", "s:due",
                              "g", "c1", "1-0", 1234, "0", "data", b"{}")  # fmt: skip


def test_dead_letter_has_no_maxlen_argument_any_more() -> None:
    call = calls.dead_letter(stream="s", dlq="dlq:{s}", group="g", consumer="c1",
                             entry_id="1-0", delete=True, fields=["data", "{}"])  # fmt: skip
    # ARGV: group, consumer, id, delete, then the fields (ARGV[5..]) - no 0 in between.
    assert call.command() == ("EVALSHA", sha("dead_letter"), 2, "s", "dlq:{s}",
                              "g", "c1", "1-0", "1", "data", "{}")  # fmt: skip
    assert call.keys == ("s", "dlq:{s}")


def test_promote_renew_retire_arguments() -> None:
    promote = calls.promote_due(due="r:due", retry="r", now_ms=99, limit=100)
    assert promote.command() == ("EVALSHA", sha("promote_due"), 2, "r:due", "r", 99, 100)
    renew = calls.renew(stream="s", group="g", consumer="c1", ids=[b"1-0"])
    assert renew.command() == ("EVALSHA", sha("renew"), 1, "s", "g", "c1", b"1-0")
    retire = calls.retire(stream="s", group="g", consumer="c1")
    assert retire.command() == ("EVALSHA", sha("retire"), 1, "s", "g", "c1")


def test_replay_counts_the_message_fields_so_the_record_can_follow() -> None:
    call = calls.replay(dlq="dlq:{s}", target="t", audit="a", dead_id="5-0",
                        fields=["data", "{}", "redrive-attempt", "1"],
                        record=["by", "ops"])  # fmt: skip
    assert call.command() == ("EVALSHA", sha("replay"), 3, "dlq:{s}", "t", "a", "5-0",
                              AUDIT_MAXLEN, 4, "data", "{}", "redrive-attempt", "1",
                              "by", "ops")  # fmt: skip
    capped = calls.replay(dlq="d", target="t", audit="a", dead_id="5-0", fields=[],
                          record=[], audit_maxlen=10)  # fmt: skip
    assert capped.args == ("5-0", 10, 0)


def test_purge_counts_the_record_fields_so_the_ids_can_follow() -> None:
    call = calls.purge(dlq="d", audit="a", record=["by", "ops", "stream", "s"],
                       ids=["1-0", "2-0"])  # fmt: skip
    assert call.command() == ("EVALSHA", sha("purge"), 2, "d", "a", AUDIT_MAXLEN, 4,
                              "by", "ops", "stream", "s", "1-0", "2-0")  # fmt: skip


def test_heartbeat_sends_the_replaced_token_only_for_take() -> None:
    claim = calls.heartbeat(lease="l", op="claim", token="h 1 ab", ttl_ms=5000)
    assert claim.command() == ("EVALSHA", sha("heartbeat"), 1, "l", "claim", "h 1 ab", 5000)
    take = calls.heartbeat(lease="l", op="take", token="h 1 ab", ttl_ms=5000,
                           replacing="h 2 cd")  # fmt: skip
    assert take.args == ("take", "h 1 ab", 5000, "h 2 cd")


def test_fence_codes_are_the_ones_the_lua_returns() -> None:
    assert [calls.parse_fence(code) for code in (1, 0, -1)] == [
        Fence.MOVED,
        Fence.NOT_PENDING,
        Fence.FENCED,
    ]
    assert Fence.MOVED == 1 and Fence.FENCED == -1  # an int still compares as before
    with pytest.raises(KeyError):
        calls.parse_fence(2)  # a contract drift is loud, not a silent "moved"


def test_replies_are_parsed_into_typed_results() -> None:
    ack = calls.ack(stream="s", group="g", consumer="c", delete=False, ids=[])
    assert ack.parse([2, [b"3-0"], [b"4-0"]]) == AckResult(2, [b"3-0"], [b"4-0"])
    dead = calls.dead_letter(stream="s", dlq="d", group="g", consumer="c", entry_id="1-0",
                             delete=False, fields=[])  # fmt: skip
    assert dead.parse([1, b"9-0"]) == DeadLetterResult(Fence.MOVED, b"9-0")
    assert dead.parse([-1, None]) == DeadLetterResult(Fence.FENCED, None)
    promote = calls.promote_due(due="d", retry="r", now_ms=0, limit=1)
    assert promote.parse([3, b"1700000000000"]) == PromoteResult(3, 1_700_000_000_000.0)
    assert promote.parse([0, None]) == PromoteResult(0, None)
    retire = calls.retire(stream="s", group="g", consumer="c")
    assert (retire.parse(1), retire.parse(0)) == (True, False)
    replay = calls.replay(dlq="d", target="t", audit="a", dead_id="1-0", fields=[], record=[])
    assert (replay.parse(b"7-0"), replay.parse(None)) == ("7-0", None)
    beat = calls.heartbeat(lease="l", op="claim", token="t", ttl_ms=1)
    assert beat.parse([1]) == HeartbeatResult(True)
    assert beat.parse([0, b"h 2 cd", 4000]) == HeartbeatResult(False, "h 2 cd", 4000)
    assert beat.parse([0]) == HeartbeatResult(False)  # release of a lease not ours
