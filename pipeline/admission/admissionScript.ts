/**
 * The admission check as one Redis script, so the checks and the counts they guard move
 * together and two requests at once cannot both take the last slot.
 *
 * KEYS: the L rate keys, then the project's runs, all runs, the refusal counts.
 * ARGV: now, L, absorb (0/1), projectMax, allMax, expiry, backlogRetryMs, project, then per
 * rate key its interval (ms per message), capacity (messages of burst) and count (messages of
 * this request on it), then the run ids to hold.
 *
 * Each rate is a GCRA: the key holds the time at which the limit is back at full capacity; a
 * request of `count` messages fits when moving it on by `count` intervals leaves it no more
 * than `capacity` intervals ahead of now. The backlog is the number of held run ids whose
 * expiry (the run's deadline) is still ahead; ids past it are dropped first, so a hold whose
 * release was lost ends with its run's deadline.
 *
 * Returns {status, a, b}: 0 admitted (a: the project's runs held before, b: the delay in ms
 * when absorbed past a limit), 1 over a rate (a: which key, 1-based; b: the wait in ms),
 * 2 the project's backlog full (a: its count), 3 the platform's backlog full (a: its count).
 * With absorb, nothing is refused: the rates move on, the runs are held, and b says how long
 * the run should wait.
 */
export const ADMISSION_SCRIPT = `
local now = tonumber(ARGV[1])
local l = tonumber(ARGV[2])
local absorb = ARGV[3] == '1'
local projectMax = tonumber(ARGV[4])
local allMax = tonumber(ARGV[5])
local expiry = ARGV[6]
local backlogRetryMs = tonumber(ARGV[7])
local project = ARGV[8]
local projectKey = KEYS[l + 1]
local allKey = KEYS[l + 2]
local refusalKey = KEYS[l + 3]
local waitMs = 0
local worst = 0
local next = {}
for i = 1, l do
  local interval = tonumber(ARGV[8 + 3 * i - 2])
  local capacity = tonumber(ARGV[8 + 3 * i - 1])
  local count = tonumber(ARGV[8 + 3 * i])
  if count > capacity then capacity = count end
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local newTat = tat + interval * count
  local allowAt = newTat - interval * capacity
  if allowAt > now and allowAt - now > waitMs then
    waitMs = allowAt - now
    worst = i
  end
  next[i] = newTat
end
if worst > 0 and not absorb then
  redis.call('HINCRBY', refusalKey, project .. '|rate', 1)
  return {1, worst, math.ceil(waitMs)}
end
redis.call('ZREMRANGEBYSCORE', projectKey, '-inf', now)
redis.call('ZREMRANGEBYSCORE', allKey, '-inf', now)
local held = redis.call('ZCARD', projectKey)
local all = redis.call('ZCARD', allKey)
local ids = #ARGV - 8 - 3 * l
if held + ids > projectMax then
  if not absorb then
    redis.call('HINCRBY', refusalKey, project .. '|project_backlog', 1)
    return {2, held, 0}
  end
  if backlogRetryMs > waitMs then waitMs = backlogRetryMs end
elseif all + ids > allMax then
  if not absorb then
    redis.call('HINCRBY', refusalKey, project .. '|platform_backlog', 1)
    return {3, all, 0}
  end
  if backlogRetryMs > waitMs then waitMs = backlogRetryMs end
end
for i = 1, l do
  redis.call('SET', KEYS[i], tostring(next[i]), 'PX', math.max(1, math.ceil(next[i] - now)))
end
for j = 9 + 3 * l, #ARGV do
  redis.call('ZADD', projectKey, expiry, ARGV[j])
  redis.call('ZADD', allKey, expiry, ARGV[j])
end
if waitMs > 0 then redis.call('HINCRBY', refusalKey, project .. '|absorbed', 1) end
return {0, held, math.ceil(waitMs)}
`;
