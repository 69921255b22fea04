-- replay_copy: second step of a replay into another slot: copy the message, at most once.
-- KEYS[1] = target: the stream given with --to (another slot than dlq:{S})
-- KEYS[2] = marker: redrive:replay-copy:{T}:S@ID (string: the copy's id, same slot)
-- ARGV[1 ..] = fields: field, value, ... of the replayed message
-- Returns the id of the copy in target: the earlier copy's when this dead letter was
-- copied before (a re-run after a crash between the steps, or a concurrent replay of the
-- same entry, adds nothing). The caller lets the marker expire once the entry is deleted.
local known = redis.call('GET', KEYS[2])
if known then return known end
local new_id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
redis.call('SET', KEYS[2], new_id)
return new_id
