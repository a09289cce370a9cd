-- claim: pop up to `capacity` jobs (priority, then FIFO, across the given pools) and lease
-- them to one node, after moving due delayed jobs back into their queues. A job whose
-- `avoid_node` is this node (its last attempt failed here with a node fault) is passed over
-- while another node that serves its pool is ready; with no such node it is taken anyway.
-- A job whose owner (its tenant, {ns}:tenant:<owner>) runs its max_running jobs is passed
-- over too.
-- Each queue is looked at from its head for at most `scan` entries, so a claim stays cheap.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:running               running jobs (score lease deadline ms)
-- KEYS[7]     {ns}:delayed               backing-off jobs (score ready ms)
-- KEYS[8]     {ns}:owned:<node>          the claiming node's jobs
-- KEYS[9]     {ns}:stats                 counters
-- KEYS[10..]  {ns}:queue:<pool>          one per pool the node serves
-- A (ClaimArgs)  node_id, capacity (most jobs to claim), lease_ms (the deadline is
--             now + lease), promote_limit (most delayed jobs to promote in this call),
--             ready_within_ms (a node last seen ready longer ago does not count), scan
--             (most entries looked at per queue to find one this node should take).
--             Popped ids are not known in advance, so their job, event, queue and ready
--             keys are built from NS prefixes (same hash tag, still Cluster-legal).
--
-- Returns a list of the claimed jobs' fields (HGETALL form), best first.
local now, node_id = NOW, A.node_id
local capacity, deadline = A.capacity, NOW + A.lease_ms
local job_prefix, events_prefix, queue_prefix = NS.job_prefix, NS.events_prefix, NS.queue_prefix
local ready_prefix, ready_since, scan = NS.ready_prefix, NOW - A.ready_within_ms, A.scan

if promote_due(KEYS[7], now, A.promote_limit) > 0 then
  redis.call('PUBLISH', NS.wake_channel, '')
end

-- Is another node ready to serve this queue's pool? Asked at most once per queue per call.
local others = {}
local function others_ready(queue_key)
  if others[queue_key] == nil then
    local ready_key = ready_prefix .. string.sub(queue_key, #queue_prefix + 1)
    local count = redis.call('ZCOUNT', ready_key, ready_since, '+inf')
    local mine = redis.call('ZSCORE', ready_key, node_id)
    if mine and tonumber(mine) >= ready_since then
      count = count - 1
    end
    others[queue_key] = count > 0
  end
  return others[queue_key]
end

-- Whether a job owner's tenant already runs its max_running jobs (absent: no cap).
local function at_cap(owner)
  local t = redis.call('HMGET', tenant_key(owner), 'max_running', 'running')
  local cap = tonumber(t[1])
  return cap ~= nil and (tonumber(t[2]) or 0) >= cap
end

-- The first entry of one queue this node should take, as id and score, or nil. Entries
-- whose job is gone or no longer queued are never runnable: dropped here, and counted so
-- the drop is visible in stats.
local function head_of(queue_key)
  local entries = redis.call('ZRANGE', queue_key, 0, scan - 1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local job_id = entries[i]
    local f = redis.call('HMGET', job_prefix .. job_id, 'status', 'avoid_node', 'owner')
    if f[1] ~= 'queued' then
      redis.call('ZREM', queue_key, job_id)
      redis.call('HINCRBY', KEYS[9], 'stale', 1)
    elseif at_cap(f[3]) then
      -- The tenant runs as many jobs as its max_running allows: pass over, not blocking.
    elseif f[2] ~= node_id or not others_ready(queue_key) then
      return job_id, tonumber(entries[i + 1])
    end
  end
  return nil
end

-- The best head across the pools; seq is global, so scores compare across pools.
local function best_head()
  local best_key, best_id, best_score
  for i = 10, #KEYS do
    local job_id, score = head_of(KEYS[i])
    if job_id and (not best_score or score < best_score) then
      best_key, best_id, best_score = KEYS[i], job_id, score
    end
  end
  return best_key, best_id
end

local claimed = {}
while #claimed < capacity do
  local queue_key, job_id = best_head()
  if not queue_key then
    break
  end
  redis.call('ZREM', queue_key, job_id)
  local job_key = job_prefix .. job_id
  local attempt = (tonumber(redis.call('HGET', job_key, 'attempts')) or 0) + 1
  observe_claim(job_key, now)
  set_status(job_key, job_id, 'running')
  redis.call('HSET', job_key, 'node_id', node_id, 'attempts', attempt,
    'lease_deadline_ms', deadline, 'started_ms', now, 'updated_ms', now, 'not_before_ms', '')
  redis.call('ZADD', KEYS[6], deadline, job_id)
  redis.call('SADD', KEYS[8], job_id)
  redis.call('HINCRBY', KEYS[9], 'claimed', 1)
  emit(events_prefix .. job_id, 'state', json_object(
    { status = 'running', node_id = node_id, attempt = attempt, lease_deadline_ms = deadline,
      at_ms = now }))
  claimed[#claimed + 1] = redis.call('HGETALL', job_key)
end
return claimed
