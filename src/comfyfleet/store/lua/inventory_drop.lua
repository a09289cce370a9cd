-- inventory_drop: forget an inventory digest no registered node has had for a while
-- (store/inventory.py sweep): its inventory, its entry among the known digests, its place
-- in the coverage of every capability class, and its serve sets. Nothing routes to it
-- afterwards; a node that comes back with it publishes it again (node/monitor.py).
--
-- KEYS[1]  {ns}:inventory:<digest>
-- KEYS[2]  {ns}:inventories           the known digests
-- KEYS[3]  {ns}:inventories:unused    digest -> since when unused
-- KEYS[4]  {ns}:classes               every listed capability class
-- KEYS[5]  {ns}:depth                 pool -> queued jobs: every pool jobs were queued in,
--                                     which are the only pools a serve set can be in
-- A (inventory.DropArgs)  digest, cover_prefix, serve_prefix, any_class
--
-- Returns how many classes' coverage was looked at.
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], A.digest)
redis.call('HDEL', KEYS[3], A.digest)
local classes = redis.call('ZRANGE', KEYS[4], 0, -1)
classes[#classes + 1] = A.any_class  -- every node covers it; it is never listed
for _, cls in ipairs(classes) do
  redis.call('SREM', A.cover_prefix .. cls, A.digest)
end
for _, pool in ipairs(redis.call('HKEYS', KEYS[5])) do
  redis.call('DEL', A.serve_prefix .. pool .. ':' .. A.digest)
end
return #classes
