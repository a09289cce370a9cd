-- cover: record that nodes of one inventory digest can run some capability classes, and
-- list those of them with queued jobs in the digest's serve set of each given pool (so a
-- node that can run a class with work waiting finds it at its next claim).
--
-- With n = #A.classes and p = #A.pools:
-- KEYS[1..n]            {ns}:cover:<class>          one per class, in A.classes order
-- KEYS[n+1..n+n*p]      {ns}:fair:<pool>:<class>    class-major: class 1 in every pool, ...
-- KEYS[n+n*p+1..]       {ns}:serve:<pool>:<digest>  one per pool, in A.pools order
-- A (routing.CoverArgs)  digest, classes, pools
--
-- Returns how many (class, pool) pairs had work waiting.
local n, p = #A.classes, #A.pools
local listed = 0
for i, cls in ipairs(A.classes) do
  redis.call('SADD', KEYS[i], A.digest)
  for j = 1, p do
    local head = redis.call('ZRANGE', KEYS[n + (i - 1) * p + j], 0, 0, 'WITHSCORES')
    if head[1] then
      redis.call('ZADD', KEYS[n + n * p + j], head[2], cls)
      listed = listed + 1
    end
  end
end
return listed
