-- Shared prelude: scripts.py prepends this file to every job script (after what it
-- generates from models/job.py: MAX_PRIORITY, SEQ_SHIFT, DEFAULT_OWNER and CODE, the job
-- error codes), so the helpers below exist once.
--
-- Contract every job script follows:
--   KEYS[1..5]  the per-status job indexes (ZSET, score seq), in the order queued, running,
--               succeeded, failed, cancelled -- set_status() keeps them true.
--   NS          ARGV[1] decoded: the namespace context (scripts.Namespace): key prefixes
--               and channels built in keys.py, events_maxlen, retention_ms.
--   A           ARGV[2] decoded: the script's named arguments (its dataclass in scripts.py).
--   NOW         the fleet's time in integer ms (Redis TIME, see _clock.lua), read once per
--               call: every lease, deadline, backoff and stamp comes from it, never from a
--               caller's clock. Numbers inside event/history JSON stay below 14
--               significant digits, which is what cjson prints exactly.

local STATUS_INDEX = {
  queued = KEYS[1], running = KEYS[2], succeeded = KEYS[3], failed = KEYS[4], cancelled = KEYS[5],
}
local TERMINAL = { succeeded = true, failed = true, cancelled = true }

-- An integer as a decimal string; tostring() would round above 14 digits.
local function int(x)
  return string.format('%.0f', x)
end

-- Priority above seq: a lower score is claimed first and a double holds it exactly.
local function queue_score(priority, seq)
  return int((MAX_PRIORITY - tonumber(priority)) * SEQ_SHIFT + tonumber(seq))
end

-- A job's tenant: its owner, or DEFAULT_OWNER for a job written before owners were recorded.
local function owner_of(owner)
  if not owner or owner == '' then
    return DEFAULT_OWNER
  end
  return owner
end

-- A job's capability class (models/capability.py), ANY_CLASS for a job without one.
local function class_of(cls)
  if not cls or cls == '' then
    return ANY_CLASS
  end
  return cls
end

local function tenant_key(owner)
  return NS.tenant_prefix .. owner_of(owner)
end

-- A score or virtual time as text ZADD/HSET keep exactly (17 significant digits).
local function num(x)
  return string.format('%.17g', x)
end

-- == Fair share and capability routing (docs/design.md "The claim") ==================
-- Keys, all built from NS prefixes (the same hash tag as the job keys):
--   queue:<pool>:<class>:<owner>  ZSET  one tenant's queued jobs of one class (score
--                                       priority + seq)
--   fair:<pool>:<class>           ZSET  tenants with queued jobs of the class, by virtual time
--   serve:<pool>:<digest>         ZSET  classes with queued jobs that nodes of the inventory
--                                       digest can run, by their first tenant's virtual time
--   cover:<class>                 SET   inventory digests whose nodes can run the class
--   active:<pool>:<owner>         SET   the classes a tenant is in fair:<pool>:<class> of
--   parked:<owner>                SET   "<pool>\31<class>" a tenant at max_running was taken
--                                       out of; it goes back when one of its jobs stops
--   vtime:<pool>                  HASH  owner -> virtual time; SYSTEM_VT -> the pool's
--   cost:<pool>                   HASH  class -> moving average of a job's run time (ms)
--   depth                         HASH  pool -> queued jobs (backing-off ones not counted)
local function queue_key(pool, cls, owner)
  return NS.queue_prefix .. pool .. ':' .. cls .. ':' .. owner
end

local function fair_key(pool, cls)
  return NS.fair_prefix .. pool .. ':' .. cls
end

local function active_key(pool, owner)
  return NS.active_prefix .. pool .. ':' .. owner
end

-- The digests whose nodes can run a class; every node can run ANY_CLASS, also one with no
-- inventory yet (NO_DIGEST).
local function covering(cls)
  local digests = redis.call('SMEMBERS', NS.cover_prefix .. cls)
  if cls == ANY_CLASS then
    digests[#digests + 1] = NO_DIGEST
  end
  return digests
end

-- Put a class in (or take it out of) the serve set of every digest that covers it, scored
-- by its first tenant's virtual time.
local function refresh_class(pool, cls)
  local head = redis.call('ZRANGE', fair_key(pool, cls), 0, 0, 'WITHSCORES')
  for _, digest in ipairs(covering(cls)) do
    local serve = NS.serve_prefix .. pool .. ':' .. digest
    if head[1] then
      redis.call('ZADD', serve, head[2], cls)
    else
      redis.call('ZREM', serve, cls)
    end
  end
end

-- A tenant's virtual time in a pool and the pool's system virtual time.
local function vt_of(pool, owner)
  local f = redis.call('HMGET', NS.vtime_prefix .. pool, owner, SYSTEM_VT)
  return tonumber(f[1]) or 0, tonumber(f[2]) or 0
end

-- Set a tenant's virtual time and move it to that place in every class it waits in.
local function set_vt(pool, owner, vt)
  redis.call('HSET', NS.vtime_prefix .. pool, owner, num(vt))
  for _, cls in ipairs(redis.call('SMEMBERS', active_key(pool, owner))) do
    redis.call('ZADD', fair_key(pool, cls), num(vt), owner)
    refresh_class(pool, cls)
  end
end

local function weight_of(owner)
  return math.max(1, tonumber(redis.call('HGET', tenant_key(owner), 'weight')) or 1)
end

-- Whether a tenant already runs its max_running jobs (absent: no cap).
local function at_cap(owner)
  local t = redis.call('HMGET', tenant_key(owner), 'max_running', 'running')
  local cap = tonumber(t[1])
  return cap ~= nil and (tonumber(t[2]) or 0) >= cap
end

-- A tenant with queued jobs of a class starts competing for them: at the pool's system
-- virtual time, or its own if that is later -- idle time earns no credit.
local function activate(pool, cls, owner)
  local vt, system = vt_of(pool, owner)
  redis.call('SADD', active_key(pool, owner), cls)
  set_vt(pool, owner, math.max(vt, system))
end

local function deactivate(pool, cls, owner)
  redis.call('ZREM', fair_key(pool, cls), owner)
  redis.call('SREM', active_key(pool, owner), cls)
  refresh_class(pool, cls)
end

-- A tenant at its max_running stops competing for a class until one of its jobs stops.
local function park(pool, cls, owner)
  deactivate(pool, cls, owner)
  redis.call('SADD', NS.parked_prefix .. owner, pool .. '\31' .. cls)
end

local function unpark(owner)
  local key = NS.parked_prefix .. owner
  local entries = redis.call('SMEMBERS', key)
  if #entries == 0 then
    return
  end
  redis.call('DEL', key)
  for _, entry in ipairs(entries) do
    local sep = string.find(entry, '\31', 1, true)
    local pool, cls = string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1)
    if redis.call('ZCARD', queue_key(pool, cls, owner)) > 0 then
      activate(pool, cls, owner)
    end
  end
end

-- Queue a job (its status already queued) at its place: priority, then its seq.
local function push_job(job_key, job_id)
  local f = redis.call('HMGET', job_key, 'pool', 'capability', 'owner', 'priority', 'seq')
  local pool, cls, owner = f[1], class_of(f[2]), owner_of(f[3])
  local queue = queue_key(pool, cls, owner)
  if redis.call('ZADD', queue, queue_score(f[4], f[5]), job_id) == 1 then
    redis.call('HINCRBY', NS.depth, pool, 1)
  end
  if at_cap(owner) then
    if redis.call('ZCARD', queue) == 1 then
      redis.call('SADD', NS.parked_prefix .. owner, pool .. '\31' .. cls)
    end
    return
  end
  unpark(owner)
  if redis.call('ZSCORE', fair_key(pool, cls), owner) == false then
    activate(pool, cls, owner)
  end
end

-- Take a job out of its tenant's queue (claimed, cancelled, or a stale entry); a tenant
-- with no queued job of the class left stops competing for it.
local function pull_job(pool, cls, owner, job_id)
  local queue = queue_key(pool, cls, owner)
  if redis.call('ZREM', queue, job_id) == 1 then
    redis.call('HINCRBY', NS.depth, pool, -1)
  end
  if redis.call('ZCARD', queue) == 0 then
    deactivate(pool, cls, owner)
    redis.call('SREM', NS.parked_prefix .. owner, pool .. '\31' .. cls)
  end
end

-- A job leaves `running`: charge its tenant the GPU time it really used, in place of the
-- estimate claim charged, and learn the class's run time from a success.
local function settle(job_key, new_status, f)
  local pool, cls, owner = f[4], class_of(f[5]), owner_of(f[3])
  local started, charged = tonumber(f[6]), tonumber(f[7]) or 0
  if not pool or not started then
    return
  end
  local used = math.max(0, NOW - started)
  if used ~= charged then
    local vt = vt_of(pool, owner)
    set_vt(pool, owner, vt + (used - charged) / weight_of(owner))
  end
  redis.call('HDEL', job_key, 'charged_ms')
  if new_status == 'succeeded' then
    local cost_key = NS.cost_prefix .. pool
    local avg = tonumber(redis.call('HGET', cost_key, cls))
    avg = avg and (avg * (1 - COST_EWMA) + used * COST_EWMA) or used
    redis.call('HSET', cost_key, cls, num(avg))
  end
end

-- The tenant counters set_status keeps: a job counts in `queued` while queued (backing off
-- included) and in `running` while running.
local COUNTED = { queued = true, running = true }

local function count(tenant, field, delta)
  -- Never below 0: jobs written before the counters existed end without having been counted.
  if redis.call('HINCRBY', tenant, field, delta) < 0 then
    redis.call('HSET', tenant, field, 0)
  end
end

-- Move a job between the per-status indexes, set its status field, keep its tenant's
-- counters, and settle the GPU time of a run that ends. A new job has no status yet
-- (enqueue writes it only here).
local function set_status(job_key, job_id, new_status)
  local cur = redis.call('HMGET', job_key, 'status', 'seq', 'owner', 'pool', 'capability',
    'started_ms', 'charged_ms')
  local old = cur[1]
  if old and STATUS_INDEX[old] then
    redis.call('ZREM', STATUS_INDEX[old], job_id)
  end
  redis.call('ZADD', STATUS_INDEX[new_status], cur[2] or 0, job_id)
  redis.call('HSET', job_key, 'status', new_status)
  if old == new_status then
    return
  end
  local tenant = tenant_key(cur[3])
  if COUNTED[old] then
    count(tenant, old, -1)
  end
  if COUNTED[new_status] then
    count(tenant, new_status, 1)
  end
  if old == 'running' then
    settle(job_key, new_status, cur)
    unpark(owner_of(cur[3]))
  end
end

-- JSON object text from a table of scalars plus already-encoded JSON values (raw), so
-- caller-made JSON (errors, outputs) is embedded verbatim instead of round-tripping through
-- cjson, which would turn [] into {}.
local function json_object(fields, raw)
  local text = cjson.encode(fields)
  if raw then
    local parts = {}
    for name, value in pairs(raw) do
      parts[#parts + 1] = cjson.encode(name) .. ':' .. value
    end
    if #parts > 0 then
      local sep = (text == '{}') and '' or ','
      text = string.sub(text, 1, -2) .. sep .. table.concat(parts, ',') .. '}'
    end
  end
  return text
end

-- The `queued` event of a job, as enqueue defers it: `f` is HMGET created_ms, pool,
-- priority, seq. store/events.py shows readers the same event (same id, same data) while
-- the log does not exist yet.
local function queued_event(f)
  return json_object({ status = 'queued', pool = f[2], priority = tonumber(f[3]),
    seq = tonumber(f[4]), at_ms = tonumber(f[1]) })
end

-- A job's log is created by its first event after `queued` (an empty stream costs ~4.8 KB
-- of Redis, so a queued job has none): its deferred `queued` event goes first, with the id
-- <created_ms>-0.
local function open_log(events_key)
  if redis.call('EXISTS', events_key) == 1 then
    return
  end
  local job_id = string.sub(events_key, #NS.events_prefix + 1)
  local f = redis.call('HMGET', NS.job_prefix .. job_id, 'created_ms', 'pool', 'priority', 'seq')
  if f[1] then
    redis.call('XADD', events_key, f[1] .. '-0', 'type', 'state', 'data', queued_event(f))
  end
end

-- Append one event (fields `type` and `data`, data is JSON) to the job's capped stream.
local function emit(events_key, kind, data_json)
  open_log(events_key)
  return redis.call('XADD', events_key, 'MAXLEN', '~', NS.events_maxlen, '*', 'type', kind,
    'data', data_json)
end

-- Event kinds that only say "how far now": a later one of the same kind in the same
-- attempt (for `progress`, of the same ComfyUI node) supersedes it.
local SUPERSEDED_KINDS = { progress = true, preview = true, lease = true }

-- The kind and data of a stream entry's field list.
local function entry_fields(fields)
  local kind, data
  for i = 1, #fields, 2 do
    if fields[i] == 'type' then
      kind = fields[i + 1]
    elseif fields[i] == 'data' then
      data = fields[i + 1]
    end
  end
  return kind, data
end

-- Which entries of a finished job's log to keep, oldest first: every one but the progress,
-- preview and lease events a later one of its kind supersedes within the same attempt (the
-- `state` events between attempts part them). Walks newest first, so the first of a kind
-- met is the latest.
local function kept_entries(entries)
  local kept, latest = {}, {}
  for i = #entries, 1, -1 do
    local kind, data = entry_fields(entries[i][2])
    local keep = true
    if kind == 'state' then
      latest = {}
    elseif SUPERSEDED_KINDS[kind] then
      local slot = kind
      if kind == 'progress' then
        local ok, event = pcall(cjson.decode, data or '')
        slot = kind .. '\31' .. tostring(ok and type(event) == 'table' and event.node or '')
      end
      keep = not latest[slot]
      latest[slot] = true
    end
    if keep then
      kept[#kept + 1] = entries[i]
    end
  end
  local oldest_first = {}
  for i = #kept, 1, -1 do
    oldest_first[#oldest_first + 1] = kept[i]
  end
  return oldest_first
end

-- Event kinds a finished job's folded log leaves out (docs/design.md, "State in Redis"): they
-- are for live followers, and the native /ws, which replays an ended prompt only while its
-- stream lives. A reader of a long-finished job finds what they said in the job itself
-- (outputs, history) or needs none of it.
local UNFOLDED_KINDS = {
  submitted = true, executing = true, executed = true, progress = true, preview = true,
  lease = true,
}

-- A `state` event's data as the folded log keeps it: without the lease deadline of a
-- running attempt, which says nothing once the job has ended.
local function folded_state(data)
  return (string.gsub(string.gsub(string.gsub(data, '"lease_deadline_ms":%-?%d+,', ''),
    ',"lease_deadline_ms":%-?%d+', ''), '"lease_deadline_ms":%-?%d+', ''))
end

-- The job's log as it is kept once its stream expires: the FOLDED_LOG field of the job hash,
-- a JSON array of [ms, seq, type, data] -- the stream id <created_ms + ms>-<seq>, written
-- as an offset because the full id took a sixth of a small job's hash; data verbatim from
-- the stream, so cjson never turns a [] into {} -- minus the deferred `queued` event
-- (rebuilt from the hash like before the log was opened) and the UNFOLDED_KINDS. The entry
-- `last_id` is folded as `last_data` (the terminal `state` event without its outputs, which
-- the hash holds). store/events.py reads it back as the stream's own entries, under the
-- same ids (and reads the [id, type, data] entries folded before offsets).
local function fold_log(job_key, entries, last_id, last_data)
  local created = redis.call('HGET', job_key, 'created_ms') or '0'
  local deferred, base = created .. '-0', tonumber(created) or 0
  local parts = {}
  for _, entry in ipairs(entries) do
    local id = entry[1]
    local kind, data = entry_fields(entry[2])
    if id == last_id then
      data = last_data
    end
    if kind and not UNFOLDED_KINDS[kind] and not (id == deferred and kind == 'state') then
      data = data or '{}'
      if kind == 'state' then
        data = folded_state(data)
      end
      local ms, seq = string.match(id, '^(%d+)-(%d+)$')
      parts[#parts + 1] = string.format('[%d,%s,%s,%s]', tonumber(ms) - base, seq,
        cjson.encode(kind), data)
    end
  end
  redis.call('HSET', job_key, FOLDED_LOG, '[' .. table.concat(parts, ',') .. ']')
end

-- End a finished job's log: fold it into the job hash (fold_log), and shrink the stream to
-- what a reader replaying it during the grace needs: the kept entries are written again
-- under their own ids, so Last-Event-ID still resumes anywhere, and the stream is dumped and
-- restored, which sizes it exactly (Redis grows a stream's node to 4 KB ahead of need and
-- never gives that back). The stream then expires after NS.events_grace_ms -- it is not
-- deleted here: an XREAD blocked on a deleted key is never woken, while this rewrite wakes
-- it like an XADD. A Redis that refuses DUMP/RESTORE keeps the rewritten stream as it is.
local function compact_log(events_key, job_key, last_id, last_data)
  local entries = redis.call('XRANGE', events_key, '-', '+')
  if #entries == 0 then
    return
  end
  fold_log(job_key, entries, last_id, last_data)
  local kept = kept_entries(entries)
  redis.call('DEL', events_key)
  for _, entry in ipairs(kept) do
    redis.call('XADD', events_key, entry[1], unpack(entry[2]))
  end
  local dumped, payload = pcall(redis.call, 'DUMP', events_key)
  if not dumped or not pcall(redis.call, 'RESTORE', events_key, NS.events_grace_ms, payload,
      'REPLACE') then
    redis.call('PEXPIRE', events_key, NS.events_grace_ms)
  end
end

-- Append a job's `state` event; once the status is terminal, end its log (compact_log).
-- `folded_json`: the event's data as the folded log keeps it (nil: data_json).
local function emit_state(events_key, job_key, status, data_json, folded_json)
  local id = emit(events_key, 'state', data_json)
  if TERMINAL[status] then
    compact_log(events_key, job_key, id, folded_json or data_json)
  end
  return id
end

-- Append one AttemptRecord (models/job.py) to the job's JSON `history` list, by text so the
-- earlier records are never decoded and re-encoded.
local function append_history(job_key, node_id, now, outcome, error_json)
  local f = redis.call('HMGET', job_key, 'attempts', 'started_ms', 'history')
  local record = json_object(
    { attempt = tonumber(f[1]) or 0, node_id = node_id, started_ms = tonumber(f[2]) or now,
      ended_ms = now, outcome = outcome },
    { error = error_json or 'null' })
  local history = f[3]
  if not history or history == '' or history == '[]' then
    history = '[' .. record .. ']'
  else
    history = string.sub(history, 1, -2) .. ',' .. record .. ']'
  end
  redis.call('HSET', job_key, 'history', history)
end

-- Why a caller may not write to a running job, or nil when node_id holds its lease. The
-- lease is the pair (node, attempt): a node that lost a lease and claimed the same job again
-- cannot settle the new attempt with a late write about the old one. attempt 0: any.
local function owner_problem(job_key, node_id, attempt)
  local f = redis.call('HMGET', job_key, 'status', 'node_id', 'attempts')
  if not f[1] then
    return { 'missing' }
  end
  if TERMINAL[f[1]] then
    return { 'terminal', f[1] }
  end
  if f[1] ~= 'running' or f[2] ~= node_id or (attempt > 0 and tonumber(f[3]) ~= attempt) then
    return { 'not_owner', f[1], f[2] or '' }
  end
  return nil
end

-- Drop the lease bookkeeping of a running job (running index and the owner's set).
local function drop_lease(job_key, job_id, running_key, owned_key)
  redis.call('ZREM', running_key, job_id)
  redis.call('SREM', owned_key, job_id)
  redis.call('HSET', job_key, 'lease_deadline_ms', '')
end

-- Put a job back in its queue at its original place (priority and seq kept).
local function requeue(job_key, job_id, now)
  set_status(job_key, job_id, 'queued')
  redis.call('HSET', job_key, 'node_id', '', 'not_before_ms', '', 'updated_ms', now)
  push_job(job_key, job_id)
end

-- A finished job keeps no cleared field: '' and absent read the same (models/job.py), and
-- each field costs memory for the whole retention.
local EMPTY_ONCE_FINISHED = { 'lease_deadline_ms', 'not_before_ms' }
local function drop_empty_fields(job_key)
  local fields, empty = redis.call('HGETALL', job_key), {}
  for i = 1, #fields, 2 do
    if fields[i + 1] == '' then
      empty[#empty + 1] = fields[i]
    end
  end
  for _, name in ipairs(EMPTY_ONCE_FINISHED) do
    empty[#empty + 1] = name
  end
  redis.call('HDEL', job_key, unpack(empty))
end

-- ComfyUI's log lines of the attempt that ends a job move into the job hash (field
-- FOLDED_JOBLOG .. attempt, the list's items joined by newlines) when they take at most
-- FOLDED_JOBLOG_MAX bytes: a key of their own costs ~0.4 KB beyond the lines. Lines the
-- node writes later join them while they fit (joblog_append.lua); store/joblogs.py reads
-- the hash's lines, then the list's.
local function fold_joblog(job_key, job_id)
  local attempt = redis.call('HGET', job_key, 'attempts')
  if not attempt or attempt == '0' then
    return
  end
  local key = NS.joblog_prefix .. job_id .. ':' .. attempt
  local lines = redis.call('LRANGE', key, 0, -1)
  if #lines == 0 then
    return
  end
  local text = table.concat(lines, '\n')
  if #text <= FOLDED_JOBLOG_MAX then
    redis.call('HSET', job_key, FOLDED_JOBLOG .. attempt, text)
    redis.call('DEL', key)
  end
end

-- A finished job of a published workflow keeps no graph: it is the template at
-- `workflow_version` rendered with `params` (balancer/jobs_api.py makes nothing else, and
-- templates/render.py renders the same graph again: templates/registry.py job_graph), and
-- a version is never deleted, only retired. For a workflow of real size the graph is most
-- of the job's bytes, kept for the whole retention. Kept when the version is not found.
local function drop_rendered_graph(job_key)
  local f = redis.call('HMGET', job_key, 'workflow', 'workflow_version')
  if f[1] and f[1] ~= '' and f[2] and f[2] ~= ''
      and redis.call('HEXISTS', NS.workflow_prefix .. f[1], f[2]) == 1 then
    redis.call('HDEL', job_key, 'graph')
  end
end

-- End a job: stamp it and let its hash expire after the retention (its event log is folded
-- into it by the terminal `state` event: emit_state). updated_ms goes: it equals finished_ms,
-- which models/job.py reads in its place.
local function finish(job_key, job_id, status, now)
  set_status(job_key, job_id, status)
  redis.call('HSET', job_key, 'finished_ms', now)
  redis.call('HDEL', job_key, 'updated_ms')
  drop_empty_fields(job_key)
  drop_rendered_graph(job_key)
  fold_joblog(job_key, job_id)
  redis.call('PEXPIRE', job_key, NS.retention_ms)
  -- Webhooks (store/webhooks.py): record the end in the same atomic step, so a balancer that
  -- dies now cannot lose the notification.
  observe_end(job_key, status, now)
  record_usage(job_key, status, now)  -- _usage.lua
  local hook = redis.call('HGET', job_key, 'webhook_url')
  if (hook and hook ~= '') or redis.call('EXISTS', NS.webhook_fleet) == 1 then
    redis.call('ZADD', NS.webhook_ended, now, job_id)
  end
end

-- A job's hash as a script answers it: HGETALL plus its `id`, which the hash does not
-- repeat (it is in the key).
local function job_fields(job_key, job_id)
  local fields = redis.call('HGETALL', job_key)
  fields[#fields + 1] = 'id'
  fields[#fields + 1] = job_id
  return fields
end

local function reply_job(job_key, job_id)
  return { 'ok', job_fields(job_key, job_id) }
end

-- Take a running job back from a node that stopped working on it (its lease expired, or the
-- node was found lost): the attempt joins the history as `outcome` with a retryable error,
-- and the job is queued again at its place, avoiding that node (claim passes it over there
-- while another node can take it), or fails when its attempts are used up, or ends
-- cancelled when a cancel was requested. `f` is HMGET status, node_id, lease_deadline_ms,
-- attempts, max_attempts, cancel_requested, pool. `ctx` holds now and the running and
-- stats keys. Returns the status.
local TAKE_BACK_FIELDS = { 'status', 'node_id', 'lease_deadline_ms', 'attempts', 'max_attempts',
  'cancel_requested', 'pool' }
local function take_back(job_id, f, outcome, message, ctx)
  local job_key, events_key = NS.job_prefix .. job_id, NS.events_prefix .. job_id
  local node_id, attempt, now = f[2], tonumber(f[4]) or 0, ctx.now
  local error_json = json_object(
    { code = outcome, message = message, retryable = true, node_id = node_id },
    { details = '{}' })
  append_history(job_key, node_id, now, outcome, error_json)
  drop_lease(job_key, job_id, ctx.running_key, NS.owned_prefix .. node_id)
  redis.call('HSET', job_key, 'error', error_json)
  redis.call('HINCRBY', ctx.stats_key, 'expired', 1)
  local event = { node_id = node_id, attempt = attempt, reason = outcome, at_ms = now }
  if f[6] == '1' then
    finish(job_key, job_id, 'cancelled', now)
    redis.call('HINCRBY', ctx.stats_key, 'cancelled', 1)
    event.status = 'cancelled'
  elseif attempt < (tonumber(f[5]) or 1) then
    requeue(job_key, job_id, now)
    redis.call('HSET', job_key, 'avoid_node', node_id)
    redis.call('HINCRBY', ctx.stats_key, 'retried', 1)
    event.status = 'queued'
  else
    finish(job_key, job_id, 'failed', now)
    redis.call('HINCRBY', ctx.stats_key, 'failed', 1)
    event.status = 'failed'
  end
  emit_state(events_key, job_key, event.status, json_object(event, { error = error_json }))
  return event.status
end

-- Move delayed (backing-off) jobs whose time has come back into their queues, at their
-- original place. Their ids are popped from the delayed set, so their job key is built here
-- from NS prefixes (same hash tag, still Cluster-legal). Returns how many.
local function promote_due(delayed_key, now, limit)
  local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, limit)
  local moved = 0
  for _, job_id in ipairs(due) do
    redis.call('ZREM', delayed_key, job_id)
    local job_key = NS.job_prefix .. job_id
    -- Only a still-queued job goes back; a cancelled one left the delayed set already.
    if redis.call('HGET', job_key, 'status') == 'queued' then
      push_job(job_key, job_id)
      redis.call('HSET', job_key, 'not_before_ms', '')
      moved = moved + 1
    end
  end
  return moved
end
