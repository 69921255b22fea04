-- schedule_retry: move a failed entry into the retry schedule, fenced, in one step.
-- KEYS[1] = stream: the stream the entry was read from (source or retry stream)
-- KEYS[2] = due: retry:{S}:<group>:due (sorted set, score = due time in ms)
-- KEYS[3] = retry: retry:{S}:<group> (optional; needed when due_ms is 'now')
-- ARGV[1] = group
-- ARGV[2] = consumer (must still own the entry)
-- ARGV[3] = entry id
-- ARGV[4] = due_ms: due time, ms since the epoch; 'now': XADD to the retry stream at once
--           (a retry without delay skips the schedule and the promotion round trip)
-- ARGV[5] = delete: '1' to XDEL the entry after XACK (retry streams), else '0'
-- ARGV[6..] = field, value, ... of the retry entry (producer fields + redrive-* metadata)
-- Returns 1 when scheduled, else the fence code (0 not pending, -1 owned by another).
local key, group, consumer, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local o = owner(key, group, consumer, id)
if o ~= 1 then return o end
if ARGV[4] == 'now' then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
else
  -- msgpack is binary-safe, so non-UTF-8 payloads survive the round trip.
  redis.call('ZADD', KEYS[2], ARGV[4], cmsgpack.pack({unpack(ARGV, 6)}))
end
settle(key, group, ARGV[5], id)
return 1
