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

-- now_ms() is the server's clock in ms. Scripts replicate their effects, so reading the
-- clock is safe, and every consumer measures leases and TTLs on one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- many(cmd, key, list) runs `cmd key list...` in calls of at most 1,000 arguments (Lua's
-- unpack stops near 8,000) and returns the replies' items joined (or their counts summed).
-- Pairs stay whole.
local function many(cmd, key, list)
  local n = #list
  if n <= 1000 then return redis.call(cmd, key, unpack(list)) end
  local out, count = {}, 0
  for i = 1, n, 1000 do
    local r = redis.call(cmd, key, unpack(list, i, math.min(i + 999, n)))
    if type(r) == 'table' then
      for j = 1, #r do out[#out + 1] = r[j] end
    else
      count = count + r
    end
  end
  if #out == 0 then return count end  -- a count (HSET, HDEL, ZADD): the sum
  return out
end

-- settle_all(key, group, delete, ids) is settle() of a list of ids, 1,000 a call.
local function settle_all(key, group, delete, ids)
  local n = #ids
  for i = 1, n, 1000 do settle(key, group, delete, unpack(ids, i, math.min(i + 999, n))) end
end

-- Idempotency (runtime/idempotency.py). A group's done marks are one sorted set, key ->
-- until when (ms; 'inf': for good); its claims one hash, key -> '<until ms>:<run>', where
-- a run is '<consumer>:<entry id>'. A handful of calls per batch, not a key per message.

-- is_done(score, now): whether a done mark's score (ZSCORE/ZMSCORE) still holds.
local function is_done(score, now)
  return score and (score == 'inf' or tonumber(score) > now)
end

-- claim_left(v, run, now): the ms claim `v` (an HGET) of another run still holds; 0 when
-- there is none, it has ended, or it is `run`'s own.
local function claim_left(v, run, now)
  if not v then return 0 end
  local e, who = string.match(v, '^(%d+):(.*)$')
  if who == run then return 0 end
  local left = (tonumber(e) or 0) - now
  return left > 0 and left or 0
end

-- mark_done(done, claims, ttl, now, keys): mark `keys` done for `ttl` ms ('0': for good),
-- drop their claims, and forget the oldest marks that have ended (1,000 at most a call,
-- more than any call adds, so the set never holds many ended ones).
local function mark_done(done, claims, ttl, now, ks)
  local score = ttl == '0' and 'inf' or tostring(now + tonumber(ttl))
  local marks = {}
  for i = 1, #ks do
    marks[2 * i - 1] = score
    marks[2 * i] = ks[i]
  end
  many('ZADD', done, marks)
  many('HDEL', claims, ks)
  local first = redis.call('ZRANGE', done, 0, 0, 'WITHSCORES')[2]
  if first and first ~= 'inf' and tonumber(first) <= now then
    local ended = redis.call('ZCOUNT', done, '-inf', now)
    redis.call('ZREMRANGEBYRANK', done, 0, math.min(ended, 1000) - 1)
  end
end
