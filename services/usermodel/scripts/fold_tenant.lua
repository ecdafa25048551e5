-- Apply tenant-level updates produced by fold_user.lua: trending (time-decayed
-- popularity), all-time popularity and item co-occurrence. Atomic, one Redis Cluster
-- slot: every key shares the tenant's hash tag.
--
-- KEYS: 1 applied offsets (hash "user|partition id" -> offset), 2 trending (zset),
--       3 meta (hash), 4 popular (zset), 5.. co-occurrence zsets, one per item named in
--       ARGV[2].keys
-- ARGV[1]: config {lam: trending decay rate per ms}
-- ARGV[2]: {updates: [{u user, p, o, it, s, t, co}] sorted by (p, o), keys: {item: index}}
--
-- Updates come from the users' outboxes, each user's in offset order; an update at or
-- below the offset already applied for its user and partition changes nothing, so a
-- call repeated after a crash is harmless. (The mark is per user, not per partition: an
-- outbox left by a crashed attempt may carry one user's updates ahead of other users'
-- earlier ones, which arrive in a later call.) Trending uses forward decay: scores are
-- stored relative to a landmark time and rescaled when they would grow too large.

local applied, trending, meta, popular = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cfg = cjson.decode(ARGV[1])
local input = cjson.decode(ARGV[2])

local landmark = tonumber(redis.call('HGET', meta, 'trending_landmark_ms') or 'nan')
local count = 0
local done = {}  -- "user|partition" -> last offset applied, for the users in this call
do
  local fields = {}
  for _, u in ipairs(input.updates) do
    local field = u.u .. '|' .. u.p
    if done[field] == nil then
      done[field] = false
      fields[#fields + 1] = field
    end
  end
  for first = 1, #fields, 1000 do  -- unpack() has a limit on how many values it takes
    local chunk = {unpack(fields, first, math.min(first + 999, #fields))}
    local stored = redis.call('HMGET', applied, unpack(chunk))
    for i, field in ipairs(chunk) do done[field] = tonumber(stored[i] or '-1') end
  end
end
local changed = {}

for _, u in ipairs(input.updates) do
  local field = u.u .. '|' .. u.p
  if u.o > done[field] then
    done[field] = u.o
    changed[field] = true
    if landmark ~= landmark then  -- NaN: the first update sets the landmark
      landmark = u.t
      redis.call('HSET', meta, 'trending_landmark_ms', string.format('%d', landmark))
    end
    local x = cfg.lam * (u.t - landmark)
    if x > 40 then
      redis.call('ZUNIONSTORE', trending, 1, trending, 'WEIGHTS', string.format('%.17g', math.exp(-x)))
      landmark = u.t
      redis.call('HSET', meta, 'trending_landmark_ms', string.format('%d', landmark))
      x = 0
    end
    redis.call('ZINCRBY', trending, string.format('%.17g', u.s * math.exp(x)), u.it)
    redis.call('ZINCRBY', popular, string.format('%.17g', u.s), u.it)
    if type(u.co) == 'table' then
      for _, other in ipairs(u.co) do
        redis.call('ZINCRBY', KEYS[input.keys[u.it]], 1, other)
        redis.call('ZINCRBY', KEYS[input.keys[other]], 1, u.it)
      end
    end
    count = count + 1
  end
end

for field in pairs(changed) do
  redis.call('HSET', applied, field, string.format('%d', done[field]))
end
return count
