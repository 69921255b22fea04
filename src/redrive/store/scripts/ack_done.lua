-- ack_done: acknowledge a batch of entries whose idempotent runs succeeded and mark each
-- one's idempotency key done, fenced: "effect happened" and "acked" in one step.
-- KEYS[1] = stream: the stream the entries were read from (source or retry stream)
-- KEYS[2] = the group's done marks (sorted set), KEYS[3] = its claims (hash)
-- ARGV[1] = group
-- ARGV[2] = consumer (only entries it still owns are acked)
-- ARGV[3] = delete: '1' to XDEL the acked entries (retry streams), else '0'
-- ARGV[4] = how long a done mark is kept, ms ('0': for good)
-- ARGV[5..n+4] = entry ids, then ARGV[n+5..2n+4] = the idempotency key of each, in order
-- Returns {acked, {ids owned by another consumer}, {ids no longer pending}}, as ack.
-- A fenced entry's key is marked done too: its run did happen, here; the consumer that
-- reclaimed the entry then finds the key done and acks it without running it again.
local key, group, consumer, delete, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = (#ARGV - 4) / 2
local owned = owned_among(key, group, consumer, 5, n + 4)
local mine, fenced, gone, ks = {}, {}, {}, {}
local m = 0
for i = 5, n + 4 do
  local id = ARGV[i]
  local o = owned[id] and 1 or owner(key, group, consumer, id)
  if o == 0 then gone[#gone + 1] = id
  else
    if o == 1 then m = m + 1; mine[m] = id else fenced[#fenced + 1] = id end
    ks[#ks + 1] = ARGV[i + n]
  end
end
if #ks > 0 then mark_done(KEYS[2], KEYS[3], ttl, now_ms(), ks) end
if m > 0 then settle_all(key, group, delete, mine) end
return {m, fenced, gone}
