-- One breaker's state in the hash KEYS[1], read and changed atomically. The rules match
-- machine.rs. Time comes from Redis TIME, so every instance measures the recovery timeout
-- and the probe lease on one clock.
--
-- ARGV: op (acquire|record|release|stats|reset), failure_threshold, recovery_ms,
-- success_threshold, half_open_permits, probe_lease_ms, pending_successes,
-- pending_last_success_ms, token, ticket_epoch, outcome (success|failure).
--
-- Fields: state, epoch, failures, successes, consecutive_failures, consecutive_successes,
-- last_failure, last_success, opened_at (epoch milliseconds, -1 for never), and one
-- probe:<token> field per half-open probe slot with its admission time.
local key = KEYS[1]
local op = ARGV[1]
local failure_threshold = tonumber(ARGV[2])
local recovery_ms = tonumber(ARGV[3])
local success_threshold = tonumber(ARGV[4])
local permits = tonumber(ARGV[5])
local lease_ms = tonumber(ARGV[6])
local pending_successes = tonumber(ARGV[7])
local pending_last_success = tonumber(ARGV[8])
local token = ARGV[9]
local ticket_epoch = tonumber(ARGV[10])
local outcome = ARGV[11]

-- Lua numbers are doubles; '%d' writes millisecond timestamps without an exponent.
local function int(x)
  return string.format('%d', x)
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local s = {
  state = 'closed', epoch = 0, failures = 0, successes = 0, consecutive_failures = 0,
  consecutive_successes = 0, last_failure = -1, last_success = -1, opened_at = -1,
}
local probes = {}
local probe_count = 0
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  local field, value = raw[i], raw[i + 1]
  if string.sub(field, 1, 6) == 'probe:' then
    probes[string.sub(field, 7)] = tonumber(value)
    probe_count = probe_count + 1
  elseif field == 'state' then
    s.state = value
  else
    s[field] = tonumber(value)
  end
end

local dirty = false
local change = {'', '', ''}

local function drop_probe(t)
  redis.call('HDEL', key, 'probe:' .. t)
  probes[t] = nil
  probe_count = probe_count - 1
end

local function clear_probes()
  for t, _ in pairs(probes) do
    drop_probe(t)
  end
end

local function enter(to, reason)
  change = {s.state, to, reason}
  s.state = to
  s.epoch = s.epoch + 1
  clear_probes()
  if to == 'open' then
    s.opened_at = now
  end
  dirty = true
end

if pending_successes > 0 then
  s.successes = s.successes + pending_successes
  if pending_last_success > s.last_success then
    s.last_success = pending_last_success
  end
  dirty = true
end

local decision = 'none'
local retry_after = 0
local granted = ''

if op == 'acquire' then
  if s.state == 'open' then
    local left = s.opened_at + recovery_ms - now
    if left > 0 then
      decision = 'rejected'
      retry_after = left
    else
      enter('half_open', 'recovery_timeout_elapsed')
    end
  end
  if decision == 'none' then
    if s.state == 'closed' then
      decision = 'admitted'
    else
      for t, admitted in pairs(probes) do
        if now - admitted >= lease_ms then
          drop_probe(t)
        end
      end
      if probe_count < permits then
        redis.call('HSET', key, 'probe:' .. token, int(now))
        decision = 'admitted'
        granted = token
      else
        decision = 'rejected'
      end
    end
  end
elseif op == 'record' then
  if outcome == 'success' then
    s.successes = s.successes + 1
    s.last_success = now
  else
    s.failures = s.failures + 1
    s.last_failure = now
  end
  dirty = true

  local current = false
  if token == '' then
    current = s.state == 'closed' and ticket_epoch == s.epoch
  elseif s.state == 'half_open' and probes[token] ~= nil then
    drop_probe(token)
    current = true
  end

  if current then
    if outcome == 'success' then
      s.consecutive_failures = 0
      s.consecutive_successes = s.consecutive_successes + 1
    else
      s.consecutive_successes = 0
      s.consecutive_failures = s.consecutive_failures + 1
    end
    if s.state == 'closed' and outcome == 'failure'
        and s.consecutive_failures >= failure_threshold then
      enter('open', 'failure_threshold_reached')
    elseif s.state == 'half_open' and outcome == 'failure' then
      enter('open', 'probe_failed')
    elseif s.state == 'half_open' and s.consecutive_successes >= success_threshold then
      enter('closed', 'success_threshold_reached')
    end
  end
elseif op == 'release' then
  if probes[token] ~= nil then
    drop_probe(token)
  end
elseif op == 'reset' then
  if s.state ~= 'closed' then
    change = {s.state, 'closed', 'reset'}
  end
  clear_probes()
  s = {
    state = 'closed', epoch = s.epoch + 1, failures = 0, successes = 0,
    consecutive_failures = 0, consecutive_successes = 0, last_failure = -1,
    last_success = -1, opened_at = -1,
  }
  dirty = true
end

if dirty then
  redis.call('HSET', key, 'state', s.state, 'epoch', int(s.epoch),
    'failures', int(s.failures), 'successes', int(s.successes),
    'consecutive_failures', int(s.consecutive_failures),
    'consecutive_successes', int(s.consecutive_successes),
    'last_failure', int(s.last_failure), 'last_success', int(s.last_success),
    'opened_at', int(s.opened_at))
end

return {
  decision, int(retry_after), granted, s.state, int(s.epoch), int(s.failures),
  int(s.successes), int(s.consecutive_failures), int(s.consecutive_successes),
  int(s.last_failure), int(s.last_success), change[1], change[2], change[3], int(now),
}
