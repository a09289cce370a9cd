-- claim: lease up to `capacity` jobs to one node, after moving due delayed jobs back into
-- their queues. Within a pool, the node takes from the tenant with the least virtual time
-- (GPU time used, divided by its weight) among the tenants with a queued job it can run,
-- that tenant's best job (priority, then FIFO) of every class the node can run; across
-- pools, the better of each pool's pick (priority, then FIFO; seq is global). See
-- docs/design.md "The claim".
--
-- What the node can run is its inventory digest's serve set per pool: the capability
-- classes with queued jobs that its inventory covers, ordered by their first tenant's
-- virtual time. So a claim reads a few heads -- class, tenant, job -- whatever the queues,
-- tenants and classes hold, and a job this node cannot run is never looked at.
--
-- A job whose `avoid_node` is this node (its last attempt failed here with a node fault)
-- is passed over while another node that serves its pool is ready; with no such node it
-- is taken anyway. A tenant at its max_running is parked (taken out of the classes it
-- waits in until one of its jobs stops), not blocking others. At most `scan` jobs, classes
-- and tenants are looked at per pool and job, so a claim stays cheap.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:running               running jobs (score lease deadline ms)
-- KEYS[7]     {ns}:delayed               backing-off jobs (score ready ms)
-- KEYS[8]     {ns}:owned:<node>          the claiming node's jobs
-- KEYS[9]     {ns}:stats                 counters
-- KEYS[10..]  {ns}:serve:<pool>:<digest> one per pool the node serves, in A.pools order
-- A (ClaimArgs)  node_id, pools (the pools of KEYS[10..]), capacity (most jobs to claim),
--             lease_ms (the deadline is now + lease), promote_limit (most delayed jobs to
--             promote in this call), ready_within_ms (a node last seen ready longer ago
--             does not count), scan (see above). The classes, tenants and jobs found are
--             not known in advance, so their keys are built from NS prefixes (same hash
--             tag, still Cluster-legal).
--
-- Returns a list of the claimed jobs' fields (HGETALL form), best first.
local now, node_id = NOW, A.node_id
local capacity, deadline = A.capacity, NOW + A.lease_ms
local job_prefix, events_prefix = NS.job_prefix, NS.events_prefix
local ready_since, scan = NOW - A.ready_within_ms, A.scan

if promote_due(KEYS[7], now, A.promote_limit) > 0 then
  redis.call('PUBLISH', NS.wake_channel, '')
end

-- Is another node ready to serve this pool? Asked at most once per pool per call.
local others = {}
local function others_ready(pool)
  if others[pool] == nil then
    local ready_key = NS.ready_prefix .. pool
    local count = redis.call('ZCOUNT', ready_key, ready_since, '+inf')
    local mine = redis.call('ZSCORE', ready_key, node_id)
    if mine and tonumber(mine) >= ready_since then
      count = count - 1
    end
    others[pool] = count > 0
  end
  return others[pool]
end

-- The first job of one tenant's queue this node should take, as id and score, or nil.
-- Entries whose job is gone or no longer queued are never runnable: dropped here, and
-- counted so the drop is visible in stats.
local function job_of_tenant(pool, cls, owner)
  local entries = redis.call('ZRANGE', queue_key(pool, cls, owner), 0, scan - 1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local job_id = entries[i]
    local f = redis.call('HMGET', job_prefix .. job_id, 'status', 'avoid_node')
    if f[1] ~= 'queued' then
      pull_job(pool, cls, owner, job_id)
      redis.call('HINCRBY', KEYS[9], 'stale', 1)
    elseif f[2] ~= node_id or not others_ready(pool) then
      return job_id, tonumber(entries[i + 1])
    end
  end
  if #entries == 0 then
    deactivate(pool, cls, owner)  -- a tenant listed with nothing queued: repair
  end
  return nil
end

-- The best job (priority, then FIFO: the lowest score) of a tenant among the classes it
-- waits in that this node can run in the pool, from its first job of class `cls`: a
-- tenant's urgent job of one workflow must not wait behind its backlog of another's. At
-- most `scan` other classes are looked at.
local function best_of_tenant(pool, serve_key, first)
  local best, looked = first, 0
  for _, cls in ipairs(redis.call('SMEMBERS', active_key(pool, first.owner))) do
    if looked >= scan then
      break
    end
    if cls ~= first.cls and redis.call('ZSCORE', serve_key, cls) then
      looked = looked + 1
      local job_id, score = job_of_tenant(pool, cls, first.owner)
      if job_id and score < best.score then
        best = { cls = cls, owner = first.owner, job_id = job_id, score = score }
      end
    end
  end
  return best
end

-- This pool's fair pick for the node: {cls, owner, job_id, score} or nil. The tenant is
-- the head of the first class in the serve set (the least virtual time among the tenants
-- waiting in a class the node can run); the job is that tenant's best (best_of_tenant).
local function pick(pool, serve_key)
  local classes = redis.call('ZRANGE', serve_key, 0, scan - 1)
  for _, cls in ipairs(classes) do
    local owners = redis.call('ZRANGE', fair_key(pool, cls), 0, scan - 1)
    if #owners == 0 then
      refresh_class(pool, cls)  -- a class listed with no tenant waiting: repair
    end
    for _, owner in ipairs(owners) do
      if at_cap(owner) then
        park(pool, cls, owner)
      else
        local job_id, score = job_of_tenant(pool, cls, owner)
        if job_id then
          return best_of_tenant(pool, serve_key,
            { cls = cls, owner = owner, job_id = job_id, score = score })
        end
      end
    end
  end
  return nil
end

local function best_pick()
  local best
  for i, pool in ipairs(A.pools) do
    local found = pick(pool, KEYS[9 + i])
    if found and (not best or found.score < best.score) then
      found.pool = pool
      best = found
    end
  end
  return best
end

-- Charge the tenant an estimate of the job's GPU time now (its class's recent average);
-- set_status corrects it to the time really used when the job stops running.
local function charge(job_key, pool, cls, owner)
  local estimate = tonumber(redis.call('HGET', NS.cost_prefix .. pool, cls)) or DEFAULT_COST_MS
  local vt, system = vt_of(pool, owner)
  if vt > system then
    -- The pool's system virtual time: the start of the latest job to enter service.
    redis.call('HSET', NS.vtime_prefix .. pool, SYSTEM_VT, num(vt))
  end
  redis.call('HSET', job_key, 'charged_ms', math.floor(estimate))
  set_vt(pool, owner, vt + math.floor(estimate) / weight_of(owner))
end

local claimed = {}
while #claimed < capacity do
  local found = best_pick()
  if not found then
    break
  end
  local job_id = found.job_id
  local job_key = job_prefix .. job_id
  pull_job(found.pool, found.cls, found.owner, job_id)
  local attempt = (tonumber(redis.call('HGET', job_key, 'attempts')) or 0) + 1
  observe_claim(job_key, now)
  set_status(job_key, job_id, 'running')
  redis.call('HSET', job_key, 'node_id', node_id, 'attempts', attempt,
    'lease_deadline_ms', deadline, 'started_ms', now, 'updated_ms', now, 'not_before_ms', '')
  charge(job_key, found.pool, found.cls, found.owner)
  redis.call('ZADD', KEYS[6], deadline, job_id)
  redis.call('SADD', KEYS[8], job_id)
  redis.call('HINCRBY', KEYS[9], 'claimed', 1)
  emit(events_prefix .. job_id, 'state', json_object(
    { status = 'running', node_id = node_id, attempt = attempt, lease_deadline_ms = deadline,
      at_ms = now }))
  claimed[#claimed + 1] = job_fields(job_key, job_id)
end
return claimed
