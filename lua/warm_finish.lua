-- warm_finish.lua: recount an event's seats after warm.lua chunks, store its meta,
-- and (for warm) put it on sale.
--
-- The counters in meta let GET /v1/events/{id} answer in O(1); the scripts that move
-- seats keep them up to date, and this recount makes them exact again after a warm or
-- a repair.
--
-- KEYS[1]  {e:ID}:meta    hash
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:avail   zset of available seats
-- ARGV[1]  name (string)
-- ARGV[2]  per-user limit (integer)
-- ARGV[3]  seats total (integer)
-- ARGV[4]  "1" to put the event on sale, "0" to leave the flag as it is
-- ARGV[5]  the event's hold in seconds (integer; 0: no holds)
--
-- Reply: {seats_total, available, pending, booked, held} (integers).
--
-- Example: EVALSHA <sha> 3 {e:wc}:meta {e:wc}:seats {e:wc}:avail "WordCamp" 4 2 1 0
--   -> {2, 1, 0, 1, 0}

local meta_key, seats_key, avail_key = KEYS[1], KEYS[2], KEYS[3]
local name, limit, total, on_sale = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local hold = tonumber(ARGV[5])
assert(name and limit and total and on_sale and hold,
  'warm_finish.lua: name, limit, total, on_sale, hold')

local pending, held, booked = 0, 0, 0
for _, state in ipairs(redis.call('HVALS', seats_key)) do
  local kind = string.sub(state, 1, 5)
  if kind == 'pendi' then
    pending = pending + 1
  elseif kind == 'held:' then
    held = held + 1
  elseif kind == 'booke' then
    booked = booked + 1
  end
end
redis.call('HSET', meta_key, 'name', name, 'limit', limit, 'seats_total', total,
  'pending', pending, 'held', held, 'booked', booked, 'hold', hold)
if on_sale == '1' then
  redis.call('HSET', meta_key, 'on_sale', '1')
end
return {total, redis.call('ZCARD', avail_key), pending, booked, held}
