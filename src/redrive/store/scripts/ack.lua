-- ack: acknowledge a batch of successfully handled entries, fenced.
-- KEYS[1] = stream: the stream the entries were read from (source or retry stream)
-- ARGV[1] = group
-- ARGV[2] = consumer (only entries it still owns are acked)
-- ARGV[3] = delete: '1' to XDEL the acked entries (retry streams), else '0'
-- ARGV[4..] = entry ids
-- Returns {acked, {ids owned by another consumer}, {ids no longer pending}}
local key, group, consumer, delete = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local n = #ARGV - 3
local owned = {}
if n > 8 then
  -- One XPENDING (filtered by consumer) over the span from the batch's first id to its
  -- last instead of one per id. Lanes finish nearly in read order, so that span holds
  -- almost all of the batch; parsing only its two ends (not every id: that was most of
  -- this script's time) keeps the script cheap. Ids it does not list (outside the span,
  -- not pending, or another's) are asked one by one below, so the span is only a hint.
  local a, b = ARGV[4], ARGV[#ARGV]
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  if bms < ams or (bms == ams and bseq < aseq) then a, b = b, a end
  for _, e in ipairs(redis.call('XPENDING', key, group, a, b, n * 4 + 16, consumer)) do
    owned[e[1]] = true
  end
end
local mine, fenced, gone = {}, {}, {}
local m = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local o = owned[id] and 1 or owner(key, group, consumer, id)
  if o == 1 then m = m + 1; mine[m] = id
  elseif o == -1 then fenced[#fenced + 1] = id
  else gone[#gone + 1] = id end
end
if m > 0 then settle(key, group, delete, unpack(mine, 1, m)) end
return {m, fenced, gone}
