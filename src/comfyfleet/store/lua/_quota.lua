-- Tenant quotas checked by enqueue (store/tenants.py documents the record
-- {ns}:tenant:<owner>). Prepended to every job script after _usage.lua; enqueue calls
-- admit() after every other refusal, so the token it takes is taken only for a job that
-- is then created. Config fields (absent: no limit):
--   workflows      comma-separated: the only workflows its jobs may run (_graph: raw graphs)
--   pools          comma-separated: the only pools it may submit to
--   max_priority   the highest priority it may ask for
--   rate, burst    token bucket: `rate` jobs a second on average, up to `burst` at once
--                  (burst absent: 1); state in the same hash: bucket_tokens, bucket_ms
-- Returns nil (admitted; a token taken), {'denied', limit, allowed} or
-- {'quota', 'rate', rate, retry_after_ms}.

local function listed(list, item)
  for entry in string.gmatch(list, '[^,]+') do
    if entry == item then
      return true
    end
  end
  return false
end

local function admit(tenant_key, fields, now)
  local q = redis.call('HMGET', tenant_key, 'workflows', 'pools', 'max_priority', 'rate', 'burst',
    'bucket_tokens', 'bucket_ms')
  local workflow = (fields.workflow and fields.workflow ~= '') and fields.workflow or '_graph'
  if q[1] and q[1] ~= '' and not listed(q[1], workflow) then
    return { 'denied', 'workflows', q[1] }
  end
  if q[2] and q[2] ~= '' and not listed(q[2], fields.pool or 'default') then
    return { 'denied', 'pools', q[2] }
  end
  if q[3] and q[3] ~= '' and (tonumber(fields.priority) or 0) > tonumber(q[3]) then
    return { 'denied', 'max_priority', q[3] }
  end
  local rate = tonumber(q[4])
  if not rate or rate <= 0 then
    return nil
  end
  local burst = tonumber(q[5]) or 1
  local tokens, since = tonumber(q[6]), tonumber(q[7])
  if not tokens or not since then
    tokens, since = burst, now  -- a new (or reconfigured) bucket starts full
  end
  tokens = math.min(burst, tokens + math.max(0, now - since) * rate / 1000)
  if tokens < 1 then
    return { 'quota', 'rate', q[4], math.ceil((1 - tokens) * 1000 / rate) }
  end
  redis.call('HSET', tenant_key, 'bucket_tokens', string.format('%.6f', tokens - 1),
    'bucket_ms', string.format('%.0f', now))
  return nil
end
