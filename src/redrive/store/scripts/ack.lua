-- ack: acknowledge a batch of successfully handled entries, fenced.
-- KEYS[1] = stream: the stream the entries were read from (source or retry stream)
-- ARGV[1] = group
-- ARGV[2] = consumer (only entries it still owns are acked)
-- ARGV[3] = delete: '1' to XDEL the acked entries (retry streams), else '0'
-- ARGV[4..] = entry ids
-- Returns {acked, {ids owned by another consumer}, {ids no longer pending}}
local key, group, consumer, delete = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local mine, fenced, gone = {}, {}, {}
local owned = {}
local n = #ARGV - 3
if n > 8 then
  -- One XPENDING over the batch's id range (filtered by consumer) instead of one per id;
  -- ids it does not list (not pending, or another's) are asked one by one below.
  local lo, hi
  for i = 4, #ARGV do
    local ms, seq = string.match(ARGV[i], '^(%d+)-(%d+)$')
    local v = {tonumber(ms), tonumber(seq)}
    if not lo or v[1] < lo[1] or (v[1] == lo[1] and v[2] < lo[2]) then lo = v end
    if not hi or v[1] > hi[1] or (v[1] == hi[1] and v[2] > hi[2]) then hi = v end
  end
  local p = redis.call('XPENDING', key, group, string.format('%.0f-%.0f', lo[1], lo[2]),
    string.format('%.0f-%.0f', hi[1], hi[2]), n * 4 + 16, consumer)
  for _, e in ipairs(p) do owned[e[1]] = true end
end
for i = 4, #ARGV do
  local id = ARGV[i]
  local o = owned[id] and 1 or owner(key, group, consumer, id)
  if o == 1 then mine[#mine + 1] = id
  elseif o == -1 then fenced[#fenced + 1] = id
  else gone[#gone + 1] = id end
end
if #mine > 0 then settle(key, group, delete, unpack(mine)) end
return {#mine, fenced, gone}
