-- commit: a run's Redis effects, its idempotency key marked done, and the ack of its entry,
-- in one step, fenced: the effects happen exactly when the entry is acked.
-- KEYS[1] = stream: the stream the entry was read from (source or retry stream)
-- KEYS[2] = the group's done marks (sorted set), KEYS[3] = its claims (hash); both the
--           stream again when the handler has no idempotency
-- KEYS[4..] = the keys the effects write
-- ARGV[1] = group, ARGV[2] = consumer, ARGV[3] = delete ('1': XDEL, retry streams)
-- ARGV[4] = entry id
-- ARGV[5] = '1' when the handler has idempotency, else '0'
-- ARGV[6] = how long a done mark is kept, ms ('0': for good)
-- ARGV[7] = the idempotency key
-- ARGV[8..] = the effects, each: command, index of its key in KEYS, number of
--             arguments n, then the n arguments
-- Returns  1 committed;  0 the entry is not pending (nothing done);
--         -1 another consumer owns the entry (nothing done);
--          2 the key was done already: acked, effects not applied (a duplicate);
--          3 another run holds the key's claim: nothing done, the entry stays pending
-- Each effect command, and the type its key must have (or not exist): checked for every
-- effect before the first is applied, as a script's writes are not rolled back on error.
local WRITES = {INCRBY = 'string', INCRBYFLOAT = 'string', HINCRBY = 'hash',
  HINCRBYFLOAT = 'hash', HSET = 'hash', SET = '', SADD = 'set', SREM = 'set', ZADD = 'zset',
  ZINCRBY = 'zset', RPUSH = 'list', LPUSH = 'list', XADD = 'stream', PFADD = 'string',
  EXPIRE = '', PEXPIRE = '', DEL = ''}
local key, group, consumer, delete, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local o = owner(key, group, consumer, id)
if o ~= 1 then return o end
local keyed, now = ARGV[5] == '1', 0
if keyed then
  now = now_ms()
  if is_done(redis.call('ZSCORE', KEYS[2], ARGV[7]), now) then
    settle(key, group, delete, id)
    return 2
  end
  if claim_left(redis.call('HGET', KEYS[3], ARGV[7]), consumer .. ':' .. id, now) > 0 then
    return 3
  end
end
local i = 8
while i <= #ARGV do
  local cmd, k, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  local want = WRITES[cmd]
  if not want then return redis.error_reply('ERR commit: ' .. cmd .. ' is not an effect') end
  local has = redis.call('TYPE', k)['ok']
  if want ~= '' and has ~= 'none' and has ~= want then
    return redis.error_reply('WRONGTYPE commit: ' .. cmd .. ' on ' .. k .. ', a ' .. has)
  end
  i = i + 3 + n
end
i = 8
while i <= #ARGV do
  local cmd, k, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  redis.call(cmd, k, unpack(ARGV, i + 3, i + 2 + n))
  i = i + 3 + n
end
if keyed then mark_done(KEYS[2], KEYS[3], ARGV[6], now, {ARGV[7]}) end
settle(key, group, delete, id)
return 1
