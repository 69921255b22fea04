-- replay_begin: first step of a replay into another slot: note where the dead letter goes.
-- KEYS[1] = dlq: dlq:{S}
-- KEYS[2] = moving: redrive:replay-moving:{S} (hash: DLQ id -> target, same slot as dlq:{S})
-- ARGV[1] = dead_id: the dead-letter id
-- ARGV[2] = target: the stream it is to be copied to
-- Returns the target it moves to (an earlier, unfinished replay's target wins, so a re-run
-- never copies it to a second stream), or false when the dead letter is gone.
local dlq, moving, id = KEYS[1], KEYS[2], ARGV[1]
if #redis.call('XRANGE', dlq, id, id) == 0 then
  redis.call('HDEL', moving, id)
  return false
end
local begun = redis.call('HGET', moving, id)
if begun then return begun end
redis.call('HSET', moving, id, ARGV[2])
return ARGV[2]
