"""The Redis store's Lua scripts: each one atomic step on Redis (nothing else runs meanwhile).

Layout under the prefix P:
  P c:<counter>  hash: used, leased (sum of the leases), l:<lease id> -> one replica's lease
  P z:<counter>  sorted set: lease id -> deadline, so any replica drops the leases of a dead one
  P s:<lease id> the last batch of usage this replica applied (replays of a batch are applied once)
  P spend:<day>  hash: metric|dimension|value -> total (the fleet's spend, by model, team, key, day)
  P keys         hash: key id -> record (JSON);  P keyhash: sha256 -> key id
"""

# A lease takes, beyond what a reservation needs, at most 1/LEASE_SHARE of the headroom left after
# it, in whole multiples of that reservation, and at most LEASE_MAX_UNITS of them: big while the
# budget is far from its end, one reservation at a time near it.
LEASE_SHARE = 8
LEASE_MAX_UNITS = 64

# One replica's sync: apply its batch of usage (once per batch number), then for each counter grow,
# renew, shrink or drop its lease.
# KEYS: n counter hashes, their n lease sets, the batch mark, then m spend hashes.
# ARGV: lease id, now, lease deadline, batch number (0: no usage), mark ttl, spend ttl, n, m,
#   then per counter: used delta, required lease (-1: no growth), limit (-1: none), ttl, unit, keep (-1: any),
#   then per spend hash: its (field, increment) pairs, flattened into one JSON array of strings (one argument,
#   not two per field: a batch of totals has dozens of fields, and each argument costs the client ~2k instructions).
# Returns {index of the counter that refused a growth or 0, others' level of each counter, lease of each,
#   used of each (every replica's usage written so far)}.
# A growth is all or nothing; usage, renewals and shrinking always apply.
SYNC = f"""
local lease_id, now, deadline = ARGV[1], ARGV[2], ARGV[3]
local batch, n, m = tonumber(ARGV[4]), tonumber(ARGV[7]), tonumber(ARGV[8])
local field = 'l:' .. lease_id
local apply = false
if batch > 0 then
  apply = batch > (tonumber(redis.call('GET', KEYS[2 * n + 1])) or 0)
  if apply then redis.call('SET', KEYS[2 * n + 1], batch, 'EX', ARGV[5]) end
end
local others, mine, before, settled, refused = {{}}, {{}}, {{}}, {{}}, 0
for i = 1, n do
  local c, z, a = KEYS[i], KEYS[n + i], 8 + 6 * (i - 1)
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #dead > 0 then
    local freed = 0
    for _, id in ipairs(dead) do
      freed = freed + (tonumber(redis.call('HGET', c, 'l:' .. id)) or 0)
      redis.call('HDEL', c, 'l:' .. id)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    if freed ~= 0 then redis.call('HINCRBY', c, 'leased', 0 - freed) end
  end
  local v = redis.call('HMGET', c, 'used', 'leased', field)
  local used, leased, own = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local delta = tonumber(ARGV[a + 1])
  before[i] = own
  if apply and delta ~= 0 then
    redis.call('HINCRBY', c, 'used', delta)
    used = used + delta
    own = math.max(own - delta, 0)  -- what was used came out of the lease
  end
  others[i] = used + leased - before[i]
  mine[i] = own
  settled[i] = used
  local required, limit = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if refused == 0 and required > own and limit >= 0 and others[i] + required > limit then refused = i end
end
for i = 1, n do
  local c, z, a = KEYS[i], KEYS[n + i], 8 + 6 * (i - 1)
  local required, limit = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local unit, keep = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local target = mine[i]
  if refused == 0 and required > target then
    target = required
    if unit > 0 and limit >= 0 then
      local spare = math.floor((limit - others[i] - required) / (unit * {LEASE_SHARE}))
      target = required + math.min(math.max(spare, 0), {LEASE_MAX_UNITS}) * unit
    end
  elseif keep >= 0 and target > keep then
    target = keep
  end
  if target ~= before[i] then redis.call('HINCRBY', c, 'leased', target - before[i]) end
  if target > 0 then
    redis.call('HSET', c, field, target)
    redis.call('ZADD', z, deadline, lease_id)
  elseif before[i] > 0 then
    redis.call('HDEL', c, field)
    redis.call('ZREM', z, lease_id)
  end
  mine[i] = target
  redis.call('EXPIRE', c, ARGV[a + 4])
  redis.call('EXPIRE', z, ARGV[a + 4])
end
if apply then
  for j = 1, m do
    local spend, fields = KEYS[2 * n + 1 + j], cjson.decode(ARGV[8 + 6 * n + j])
    for p = 1, #fields, 2 do redis.call('HINCRBY', spend, fields[p], fields[p + 1]) end
    redis.call('EXPIRE', spend, ARGV[6])
  end
end
local out = {{refused}}
for i = 1, n do out[1 + i] = others[i]; out[1 + n + i] = mine[i]; out[1 + 2 * n + i] = settled[i] end
return out
"""

ADD_KEY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

KEY_BY_HASH = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
"""
