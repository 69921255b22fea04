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
