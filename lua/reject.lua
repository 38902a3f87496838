-- reject.lua: a claim cannot be persisted; reject it and put its seats back in line
-- with MySQL.
--
-- The reconciler runs this while it still holds the seats' rows locked FOR UPDATE in
-- MySQL, so the states it passes are MySQL's truth at this instant. Only seats still
-- held by this claim ("pending:<bid>") change: a seat MySQL has booked for another
-- booking becomes "booked:<other>", a free one goes back to the available set. A
-- booking that is no longer pending (confirmed after a COMMIT, or cancelled) is never
-- rejected. Safe to run again. A freed seat goes back into avail at its ordinal, read
-- from the booking record (see ordinal_of).
--
-- A claim whose record Redis lost (an eviction, a restart from older data, a failover;
-- the reconciler then rejects it `lost_in_redis_failover`, or repeats the rejection
-- MySQL recorded) is rejected all the same: its seats still pending on it take the
-- truth passed in, the counters follow, its entry leaves the user's tally, and a
-- rejected record is written from the arguments (user, seats, reason), so a GET served
-- from Redis says what MySQL says. Without a record no ordinal is known: a freed seat
-- is looked up in the order list. If the event's seats hash itself is gone (the
-- event's keys were lost; a warm rebuilds them from MySQL), nothing is written.
--
-- KEYS[1]  {e:ID}:meta    hash (pending / booked counters)
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[4]  {e:ID}:order   list of seat ids in ordinal order (fallback, see ordinal_of)
-- KEYS[5]  {e:ID}:user:U  hash booking id -> seats held
-- KEYS[6]  {e:ID}:b:<bid> booking record
-- ARGV[1]  booking id (string)
-- ARGV[2]  reason (snake_case string, shown to the client)
-- ARGV[3]  user id U (string; written into a record Redis had lost)
-- ARGV[4..] pairs: seat, MySQL state ("available" or "booked:<other bid>"), one per
--           seat of the booking
--
-- Reply: the booking's status afterwards: "rejected" (also when Redis had no record:
-- one is written), "confirmed" / "cancelled" when it was no longer pending (nothing
-- changes), or "missing" when Redis has neither the record nor the event's seats
-- (nothing is written).
--
-- Example: EVALSHA <sha> 6 {e:wc}:meta {e:wc}:seats {e:wc}:avail {e:wc}:order
--            {e:wc}:user:alice {e:wc}:b:0192... 0192... seats_taken alice
--            A1 booked:0191... A2 available
--   -> "rejected"   (A1 is "booked:0191...", A2 is available again)

local meta_key, seats_key, avail_key, order_key, user_key, booking_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local bid, reason, user = ARGV[1], ARGV[2], ARGV[3]
assert(bid and reason and user and #ARGV % 2 == 1,
  'reject.lua: booking id, reason, user and seat/state pairs')

local status = redis.call('HGET', booking_key, 'status')
if not status then
  if redis.call('EXISTS', seats_key) == 0 then
    return 'missing'
  end
elseif status ~= 'pending' then
  return status
end

-- ordinal_of(booking_key, order_key): lua/lib/ordinals.lua, which src/claims/scripts.rs
-- puts in front of this script.

local ordinal = ordinal_of(booking_key, order_key)
local pending = 'pending:' .. bid
local freed, booked = 0, 0
local seats = {}
for i = 4, #ARGV, 2 do
  local seat, truth = ARGV[i], ARGV[i + 1]
  seats[#seats + 1] = seat
  if redis.call('HGET', seats_key, seat) == pending then
    redis.call('HSET', seats_key, seat, truth)
    if truth == 'available' then
      local ord = ordinal(seat)
      if ord then
        redis.call('ZADD', avail_key, ord, seat)
      end
      freed = freed + 1
    else
      booked = booked + 1
    end
  end
end
-- `0 - n`, not `-n`: for n = 0, Lua's -n is -0, which Redis reads as "-0" and HINCRBY refuses.
redis.call('HINCRBY', meta_key, 'pending', 0 - (freed + booked))
redis.call('HINCRBY', meta_key, 'booked', booked)
if not status then
  -- cjson encodes an empty table as an object; a booking's seats are a list.
  local seats_json = #seats > 0 and cjson.encode(seats) or '[]'
  redis.call('HSET', booking_key, 'user', user, 'seats', seats_json)
end
redis.call('HSET', booking_key, 'status', 'rejected', 'reason', reason)
redis.call('HDEL', user_key, bid)
return 'rejected'
