-- publish_dedupe: XADD a message unless one with the same dedupe id was published (the
-- fallback of Redis 8.6's XADD ... IDMP on older servers).
-- KEYS[1] = stream, KEYS[2] = redrive:dedupe:{S}:<dedupe id>
-- ARGV[1] = how long the dedupe id is remembered, ms
-- ARGV[2] = MAXLEN ~ bound, or '' for none
-- ARGV[3..] = field, value, ...
-- Returns {1, new id} when published, {0, id of the earlier entry} when a duplicate.
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id
if ARGV[2] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
