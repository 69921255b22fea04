-- replay_copy: second step of a replay into another slot: copy the message, at most once.
-- KEYS[1] = target: the stream given with --to (another slot than dlq:{S})
-- KEYS[2] = copies: redrive:replay-copies:{T} (hash: S@ID -> id in target, same slot)
-- ARGV[1] = ref: S@ID of the dead letter
-- ARGV[2 ..] = fields: field, value, ... of the replayed message
-- Returns the id of the copy in target: the earlier copy's when this dead letter was
-- copied before (a re-run after a crash between the steps adds nothing).
local target, copies, ref = KEYS[1], KEYS[2], ARGV[1]
local known = redis.call('HGET', copies, ref)
if known then return known end
local new_id = redis.call('XADD', target, '*', unpack(ARGV, 2))
redis.call('HSET', copies, ref, new_id)
return new_id
