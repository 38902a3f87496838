-- mark.lua: on a Redis Cluster, mark the primary that serves an event's slot, on that
-- primary alone.
--
-- A claim on a cluster carries the mark its gateway expects (`<run_id>:<sync_full>` of
-- the primary it verified the event on) and claim.lua refuses it ("fenced") unless the
-- node it runs on holds that mark. The mark is written here with replication off
-- (`REPL_NONE`: it reaches neither the replicas nor the AOF), so a replica promoted
-- after a failover does not have it, and a claim the cluster client retried across the
-- failover is refused there instead of being acknowledged on data that may have lost
-- writes. A full resync copies every key to the replica, the mark too; so the mark
-- names the primary's count of full resyncs, and a new one changes what gateways
-- expect. The mark expires (PX) unless refreshed, so a node restarted from an RDB
-- snapshot a while old holds none.
--
-- KEYS[1]  {e:ID}:mark   string: the mark
-- ARGV[1]  run_id of the primary the caller verified the event on
-- ARGV[2]  the mark: "<run_id>:<sync_full>"
-- ARGV[3]  its time to live, ms
--
-- Reply: 1 when written; 0 when this node is not the primary ARGV[1] names (the slot
-- moved or failed over since the caller looked): nothing written.

local info = redis.call('INFO', 'server')
if string.match(info, 'run_id:(%x+)') ~= ARGV[1] then
  return 0
end
redis.set_repl(redis.REPL_NONE)
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
