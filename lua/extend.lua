-- extend.lua: a held booking's new deadline, after MySQL recorded it (an extension).
--
-- Only a booking still pending or held takes it (a pending one keeps it in its record
-- for the reconciler's hold to show; a held one also moves in the holds zset). Anything
-- else (confirmed, expired, cancelled, rejected meanwhile) is left alone. Safe to run
-- again.
--
-- KEYS[1]  {e:ID}:b:<bid> booking record
-- KEYS[2]  {e:ID}:holds   zset of held bookings by deadline
-- ARGV[1]  booking id (string)
-- ARGV[2]  the new deadline, ms since the epoch (integer)
--
-- Reply: the booking's status ("held", "pending", ...), or "missing" (no record).
--
-- Example: EVALSHA <sha> 2 {e:wc}:b:0192... {e:wc}:holds 0192... 1767226500000
--   -> "held"

local booking_key, holds_key = KEYS[1], KEYS[2]
local bid, deadline = ARGV[1], ARGV[2]
assert(bid and tonumber(deadline), 'extend.lua: booking id and deadline required')

local status = redis.call('HGET', booking_key, 'status')
if not status then
  return 'missing'
end
if status == 'held' or status == 'pending' then
  redis.call('HSET', booking_key, 'expires_ms', deadline)
  if status == 'held' then
    redis.call('ZADD', holds_key, deadline, bid)
  end
end
return status
