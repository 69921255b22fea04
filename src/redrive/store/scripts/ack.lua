-- ack: acknowledge a batch of successfully handled entries, fenced.
-- KEYS[1] = stream: the stream the entries were read from (source or retry stream)
-- ARGV[1] = group
-- ARGV[2] = consumer (only entries it still owns are acked)
-- ARGV[3] = delete: '1' to XDEL the acked entries (retry streams), else '0'
-- ARGV[4..] = entry ids
-- Returns {acked, {ids owned by another consumer}, {ids no longer pending}}
local key, group, consumer, delete = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local owned = owned_among(key, group, consumer, 4, #ARGV)
local mine, fenced, gone = {}, {}, {}
local m = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local o = owned[id] and 1 or owner(key, group, consumer, id)
  if o == 1 then m = m + 1; mine[m] = id
  elseif o == -1 then fenced[#fenced + 1] = id
  else gone[#gone + 1] = id end
end
if m > 0 then settle_all(key, group, delete, mine) end
return {m, fenced, gone}
