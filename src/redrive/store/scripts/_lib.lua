-- Shared prelude, prepended to every script by store/scripts.py.
--
-- owner(key, group, consumer, id) is the fence (docs/concepts.md#fencing): XACK does not check who
-- owns an entry, so every move first asks XPENDING. Returns
--    1  the entry is pending and owned by `consumer`
--    0  the entry is not pending (acked already, or never delivered)
--   -1  the entry is pending but owned by another consumer (it was reclaimed)
local function owner(key, group, consumer, id)
  local p = redis.call('XPENDING', key, group, id, id, 1)
  local e = p[1]
  if not e then return 0 end
  if e[2] ~= consumer then return -1 end
  return 1
end

-- settle(key, group, delete, id, ...) acknowledges entries and, on redrive's own retry
-- streams (delete == '1'), deletes them (their content now lives elsewhere or is done),
-- so retry streams never grow.
local function settle(key, group, delete, ...)
  redis.call('XACK', key, group, ...)
  if delete == '1' then redis.call('XDEL', key, ...) end
end

-- owned_among(key, group, consumer, from, to) returns a set of those ids among
-- ARGV[from..to] that XPENDING lists as `consumer`'s, with one XPENDING over the span from
-- ARGV[from] to ARGV[to] instead of one per id. Lanes finish nearly in read order, so
-- that span holds almost all of a batch; parsing only its two ends (not every id: that
-- was most of a batch script's time) keeps it cheap. Ids it does not list (outside the
-- span, not pending, or another's) must be asked one by one (owner()): a hint, not a
-- verdict. Batches of at most 8 ids skip it.
local function owned_among(key, group, consumer, from, to)
  local owned = {}
  local n = to - from + 1
  if n <= 8 then return owned end
  local a, b = ARGV[from], ARGV[to]
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  if bms < ams or (bms == ams and bseq < aseq) then a, b = b, a end
  for _, e in ipairs(redis.call('XPENDING', key, group, a, b, n * 4 + 16, consumer)) do
    owned[e[1]] = true
  end
  return owned
end
