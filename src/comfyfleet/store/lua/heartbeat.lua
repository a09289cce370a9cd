-- heartbeat: a node's record (with a TTL) and its last-seen score, stamped with the fleet's
-- clock (never the node's), its entry in the ready index of each pool it serves while it
-- is ready, and its lost mark cleared (it is back).
--
-- KEYS[1]  {ns}:node:<id>      the node's record (JSON, without last_seen_ms: readers take
--                              it from KEYS[2])
-- KEYS[2]  {ns}:nodes          node id -> last heartbeat (ms)
-- KEYS[3]  {ns}:lost           node id -> when it was marked lost
-- KEYS[4]  {ns}:clock          the test suite's steering of the clock (see _clock.lua)
-- KEYS[5..] {ns}:ready:<pool>  one per pool the node serves
-- A (nodes.HeartbeatArgs)  node_id, record (JSON), record_ttl_ms, ready, inventory_key (the
--                          node's published inventory, '' while it has none)
--
-- Returns {now (ms): the node compares it with its own clock (skew), 1 when inventory_key
-- is gone (the reaper dropped it while the node was away: it must publish it again)}.
local now = clock_ms(KEYS[4])
redis.call('SET', KEYS[1], A.record, 'PX', A.record_ttl_ms)
redis.call('ZADD', KEYS[2], now, A.node_id)
redis.call('ZREM', KEYS[3], A.node_id)
for i = 5, #KEYS do
  if A.ready then
    redis.call('ZADD', KEYS[i], now, A.node_id)
  else
    redis.call('ZREM', KEYS[i], A.node_id)
  end
end
local missing = A.inventory_key ~= '' and redis.call('EXISTS', A.inventory_key) == 0
return { now, missing and 1 or 0 }
