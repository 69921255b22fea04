-- promote_due: move retries whose time has come from the schedule to the retry stream.
-- KEYS[1] = due: retry:{S}:<group>:due (sorted set, score = due ms, member = msgpack fields)
-- KEYS[2] = retry: retry:{S}:<group> (stream read by the group)
-- ARGV[1] = now_ms: now, ms since the epoch
-- ARGV[2] = limit: at most this many members per call
-- Returns {moved, score of the next member or false}.
-- Safe with many workers: the script is atomic, so each member moves exactly once.
-- Nothing due (the idle poll): one ZRANGE, nothing else.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] == nil or tonumber(first[2]) > tonumber(ARGV[1]) then
  return {0, first[2] or false}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cmsgpack.unpack(member)))
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}
