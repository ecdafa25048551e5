-- Apply tenant-level updates produced by fold_user.lua: trending (time-decayed
-- popularity), all-time popularity and item co-occurrence. Atomic, one Redis Cluster
-- slot: every key shares the tenant's hash tag.
--
-- KEYS: 1 applied offsets (hash partition -> offset), 2 trending (zset), 3 meta (hash),
--       4 popular (zset), 5.. co-occurrence zsets, one per item named in ARGV[2].keys
-- ARGV[1]: config {lam: trending decay rate per ms}
-- ARGV[2]: {updates: [{p, o, it, s, t, co}] sorted by (p, o), keys: {item: KEYS index}}
--
-- An update at or below the offset already applied for its partition changes nothing,
-- so a retried call after a crash is harmless. Trending uses forward decay: scores are
-- stored relative to a landmark time and rescaled when they would grow too large.

local applied, trending, meta, popular = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cfg = cjson.decode(ARGV[1])
local input = cjson.decode(ARGV[2])

local landmark = tonumber(redis.call('HGET', meta, 'trending_landmark_ms') or 'nan')
local count = 0

for _, u in ipairs(input.updates) do
  local field = string.format('%d', u.p)
  local done = tonumber(redis.call('HGET', applied, field) or '-1')
  if u.o > done then
    redis.call('HSET', applied, field, string.format('%d', u.o))
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

return count
