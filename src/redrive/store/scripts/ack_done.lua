-- ack_done: acknowledge a batch of entries whose idempotent runs succeeded and mark each
-- one's idempotency key done, fenced: "effect happened" and "acked" in one step.
-- KEYS[1] = stream: the stream the entries were read from (source or retry stream)
-- KEYS[2..n+1] = the idempotency key of each entry, in the order of the ids
-- ARGV[1] = group
-- ARGV[2] = consumer (only entries it still owns are acked)
-- ARGV[3] = delete: '1' to XDEL the acked entries (retry streams), else '0'
-- ARGV[4] = how long a done key is kept, ms ('0': for good)
-- ARGV[5..n+4] = entry ids
-- Returns {acked, {ids owned by another consumer}, {ids no longer pending}}, as ack.
-- A fenced entry's key is marked done too: its run did happen, here; the consumer that
-- reclaimed the entry then finds the key done and acks it without running it again.
local key, group, consumer, delete, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local owned = owned_among(key, group, consumer, 5, #ARGV)
local mine, fenced, gone = {}, {}, {}
local m = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local o = owned[id] and 1 or owner(key, group, consumer, id)
  if o == 0 then gone[#gone + 1] = id
  else
    if o == 1 then m = m + 1; mine[m] = id else fenced[#fenced + 1] = id end
    if ttl == '0' then redis.call('SET', KEYS[i - 3], 'd:' .. id)
    else redis.call('SET', KEYS[i - 3], 'd:' .. id, 'PX', ttl) end
  end
end
if m > 0 then settle(key, group, delete, unpack(mine, 1, m)) end
return {m, fenced, gone}
