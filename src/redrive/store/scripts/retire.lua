-- retire: remove a consumer from its group, but only when it has nothing pending.
-- KEYS[1] = stream: a stream the consumer reads
-- ARGV[1] = group
-- ARGV[2] = consumer
-- Deleting a consumer discards its pending entries for good (XGROUP DELCONSUMER), so the check and
-- the delete happen in one step. Returns 1 when deleted, 0 when it still owns entries.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
