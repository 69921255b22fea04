-- dead_letter: move an entry to its dead-letter stream, fenced, in one step.
-- KEYS[1] = stream: the stream the entry was read from (source or retry stream)
-- KEYS[2] = dlq: dlq:{S}
-- ARGV[1] = group
-- ARGV[2] = consumer (must still own the entry)
-- ARGV[3] = entry id
-- ARGV[4] = delete: '1' to XDEL the entry after XACK (retry streams), else '0'
-- ARGV[5..] = field, value, ... of the dead letter (producer fields + redrive-* metadata)
-- Returns {1, dead-letter id} when moved, else {fence code, false} (0 not pending,
-- -1 owned by another consumer).
-- No MAXLEN: the retention loop (store/retention.py) trims the DLQ, warning before it
-- evicts and keeping an audit; trimming on every write would drop dead letters silently.
local key, group, consumer, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local o = owner(key, group, consumer, id)
if o ~= 1 then return {o, false} end
local dead_id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
settle(key, group, ARGV[4], id)
return {1, dead_id}
