package signaling

import "github.com/redis/go-redis/v9"

// The Redis store's scripts. Each one runs atomically on the Redis server,
// which is what makes admission (capacity), presence (announce in the same
// step as the membership change) and ownership moves (claim) race-free
// between hub nodes. Redis 7.0 has no per-field hash TTLs (HEXPIRE is 7.4),
// so liveness is kept per node (the nodes sorted set, scored with the
// server's own clock) and sessions of a dead node are parked and reaped by
// whichever node runs the tick first.
//
// Key layout under the prefix P (default "rtcsuite:"):
//
//	P nodes              ZSET  node id -> last heartbeat (ms, Redis clock)
//	P node:<n>:in        STREAM frames and control entries for node n
//	P node:<n>:peers     SET   peer ids whose session node n holds
//	P sess:<id>          HASH  room, name, tok, node ("" = parked), parking
//	P room:<room>        HASH  peer id -> join sequence (oldest first)
//	P held:<id>          LIST  frames for a parked peer, oldest first
//	P parked             ZSET  peer id -> deadline (ms) for its resume
//	P reaped:<n>         STRING marks a node whose sessions were reaped
//
// Every key either expires (PEXPIRE, refreshed by the owning node's
// heartbeat) or has an owner that deletes it: sessions and their held
// lists are deleted by leave, node keys by the reaper, rooms vanish with
// their last member. Common ARGV: [1] prefix, [2] node TTL ms, [3] held
// frames limit, [4] backstop key TTL ms.
const luaCommon = `
local P = ARGV[1]
local NODE_TTL = tonumber(ARGV[2])
local MAX_HELD = tonumber(ARGV[3])
local KEY_TTL = tonumber(ARGV[4])

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function seq_now()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

local function alive(node, now)
  if not node or node == '' then return false end
  local s = redis.call('ZSCORE', P .. 'nodes', node)
  return s ~= false and s ~= nil and (now - tonumber(s)) <= NODE_TTL
end

-- deliver routes one frame to peer id: into the stream of the live node
-- holding it, or onto its held list while it is parked or its node is
-- dead. 0: no such peer; 1: routed; 2: held; -1: held list full.
local function deliver(id, frame, now)
  local node = redis.call('HGET', P .. 'sess:' .. id, 'node')
  if not node then return 0 end
  if alive(node, now) then
    local k = P .. 'node:' .. node .. ':in'
    redis.call('XADD', k, '*', 'k', 'm', 'to', id, 'f', frame)
    redis.call('PEXPIRE', k, KEY_TTL)
    return 1
  end
  local k = P .. 'held:' .. id
  if redis.call('LLEN', k) >= MAX_HELD then return -1 end
  redis.call('RPUSH', k, frame)
  redis.call('PEXPIRE', k, KEY_TTL)
  return 2
end

-- members returns the ids of room, oldest first.
local function members(room)
  local flat = redis.call('HGETALL', P .. 'room:' .. room)
  local list = {}
  for i = 1, #flat, 2 do list[#list + 1] = {flat[i], flat[i + 1]} end
  table.sort(list, function(a, b)
    if a[2] == b[2] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local ids = {}
  for i, m in ipairs(list) do ids[i] = m[1] end
  return ids
end

-- leave removes peer id everywhere and announces it to the rest of its
-- room, except to members held by node skip (which were told already).
-- announce nil: the standard peer-left frame.
local function leave(id, announce, now, skip)
  local sk = P .. 'sess:' .. id
  local s = redis.call('HMGET', sk, 'room', 'node')
  local room, node = s[1], s[2]
  if not room then return 0 end
  redis.call('DEL', sk, P .. 'held:' .. id)
  redis.call('ZREM', P .. 'parked', id)
  if node and node ~= '' then redis.call('SREM', P .. 'node:' .. node .. ':peers', id) end
  redis.call('HDEL', P .. 'room:' .. room, id)
  announce = announce or ('{"type":"peer-left","id":"' .. id .. '"}')
  for _, o in ipairs(members(room)) do
    if not skip or redis.call('HGET', P .. 'sess:' .. o, 'node') ~= skip then deliver(o, announce, now) end
  end
  return 1
end

-- recovering is true while Redis came back empty and the nodes may not
-- all have re-registered their sessions yet (two node TTLs after the
-- first heartbeat that found it empty): a missing session is then no proof
-- that the peer is gone.
local function recovering(now)
  local b = redis.call('GET', P .. 'boot')
  return (not b) or now < tonumber(b)
end

local function own(node, id)
  local k = P .. 'node:' .. node .. ':peers'
  redis.call('SADD', k, id)
  redis.call('PEXPIRE', k, KEY_TTL)
end
`

// scriptJoin: ARGV[5..] node, room, id, name, tok, capacity, announce.
// Returns {"full"}, {"dup"} or {"ok", id1, name1, id2, name2, ...} with
// the members present before, oldest first.
var scriptJoin = redis.NewScript(luaCommon + `
local node, room, id, name, tok = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local cap, announce = tonumber(ARGV[10]), ARGV[11]
local sk, rk = P .. 'sess:' .. id, P .. 'room:' .. room
if redis.call('EXISTS', sk) == 1 then return {'dup'} end
local now = now_ms()
if recovering(now) then return {'unavailable'} end
if redis.call('HLEN', rk) >= cap then return {'full'} end
local out = {'ok'}
for _, o in ipairs(members(room)) do
  out[#out + 1] = o
  local om = redis.call('HMGET', P .. 'sess:' .. o, 'name', 'node')
  out[#out + 1] = om[1] or ''
  if om[2] ~= node then deliver(o, announce, now) end
end
redis.call('HSET', rk, id, seq_now())
redis.call('PEXPIRE', rk, KEY_TTL)
redis.call('HSET', sk, 'room', room, 'name', name, 'tok', tok, 'node', node)
redis.call('PEXPIRE', sk, KEY_TTL)
own(node, id)
return out
`)

// scriptLeave: ARGV[5..] node, id, announce, replay, room. Leaves only
// when node still holds the session (it may have been claimed by another
// node). replay "1": a leave made while Redis was unreachable, whose
// announce the members on node already got; if Redis lost the session
// (an empty restart) the room is told once every node had time to
// re-register (-2 until then). Returns 1 when the peer left.
var scriptLeave = redis.NewScript(luaCommon + `
local node, id, announce, replay, room = ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1', ARGV[9]
local cur = redis.call('HGET', P .. 'sess:' .. id, 'node')
local now = now_ms()
if replay and not cur then
  if recovering(now) then return -2 end
  for _, o in ipairs(members(room)) do
    if redis.call('HGET', P .. 'sess:' .. o, 'node') ~= node then deliver(o, announce, now) end
  end
  return 1
end
if cur ~= node then return 0 end
local skip = nil
if replay then skip = node end
return leave(id, announce, now, skip)
`)

// scriptRoute: ARGV[5..] room, to, frame. Returns 1 when routed or held,
// 0 for no such peer in room. A peer whose held list overflows is removed
// (peer-left to the room) rather than resumed with a gap.
var scriptRoute = redis.NewScript(luaCommon + `
local room, to, frame = ARGV[5], ARGV[6], ARGV[7]
local now = now_ms()
local r = redis.call('HGET', P .. 'sess:' .. to, 'room')
if not r and recovering(now) then return -2 end
if r ~= room then return 0 end
local r = deliver(to, frame, now)
if r == -1 then
  leave(to, nil, now)
  return 0
end
return r > 0 and 1 or 0
`)

// scriptForward: ARGV[5..] node, to, frame. Re-routes a frame node took
// from its stream for a peer it no longer holds. Returns like deliver, and
// 0 when Redis still names node as the holder (the frame would loop).
var scriptForward = redis.NewScript(luaCommon + `
if redis.call('HGET', P .. 'sess:' .. ARGV[6], 'node') == ARGV[5] then return 0 end
return deliver(ARGV[6], ARGV[7], now_ms())
`)

// scriptRoomOf: ARGV[5] id, ARGV[6] tok. Returns {room, name} when tok is
// the session's resume token, else {}.
var scriptRoomOf = redis.NewScript(luaCommon + `
local s = redis.call('HMGET', P .. 'sess:' .. ARGV[5], 'room', 'name', 'tok')
if not s[1] and recovering(now_ms()) then return {'', '', 'unavailable'} end
if not s[1] or s[3] ~= ARGV[6] then return {} end
return {s[1], s[2]}
`)

// scriptClaim: ARGV[5..] node, id, tok. Moves the session to node.
// Returns {} when there is no such session, else {handover, frames...}:
// handover 1 means the previous node is alive and was asked (through its
// stream) to send the frames it holds; the frames returned are those held
// in Redis while the session was parked or its node dead.
var scriptClaim = redis.NewScript(luaCommon + `
local node, id, tok = ARGV[5], ARGV[6], ARGV[7]
local sk = P .. 'sess:' .. id
local s = redis.call('HMGET', sk, 'room', 'tok', 'node', 'parking')
if not s[1] or s[2] ~= tok then return {} end
local old = s[3] or ''
local now = now_ms()
if s[4] then
  if alive(s[4], now) then return {'retry'} end
  redis.call('HDEL', sk, 'parking') -- the parking node died: take what Redis has
end
redis.call('HSET', sk, 'node', node)
redis.call('PEXPIRE', sk, KEY_TTL)
if old ~= '' then redis.call('SREM', P .. 'node:' .. old .. ':peers', id) end
own(node, id)
redis.call('ZREM', P .. 'parked', id)
local hk = P .. 'held:' .. id
local out = {'0'}
for _, f in ipairs(redis.call('LRANGE', hk, 0, -1)) do out[#out + 1] = f end
redis.call('DEL', hk)
if old ~= '' and old ~= node and alive(old, now) then
  redis.call('XADD', P .. 'node:' .. old .. ':in', '*', 'k', 'h', 'to', id, 'dst', node)
  redis.call('PEXPIRE', P .. 'node:' .. old .. ':in', KEY_TTL)
  out[1] = '1'
end
return out
`)

// scriptPark: ARGV[5..] node, id, grace ms. Parks a session node holds
// (drain), in two steps so no frame overtakes another: from now on frames
// for the peer are held in Redis, and a marker goes into node's own
// stream; frames routed to node before it are collected by node's reader,
// which then puts them, after the frames the session held, in front of
// the held list (scriptUnpark). Claims wait until then. The session may be
// claimed until the grace deadline. Returns 1 when parked.
var scriptPark = redis.NewScript(luaCommon + `
local node, id, grace = ARGV[5], ARGV[6], tonumber(ARGV[7])
local sk = P .. 'sess:' .. id
if redis.call('HGET', sk, 'node') ~= node then return 0 end
redis.call('HSET', sk, 'node', '', 'parking', node)
redis.call('SREM', P .. 'node:' .. node .. ':peers', id)
redis.call('ZADD', P .. 'parked', now_ms() + grace, id)
redis.call('PEXPIRE', P .. 'parked', KEY_TTL)
local in_k = P .. 'node:' .. node .. ':in'
redis.call('XADD', in_k, '*', 'k', 'p', 'to', id)
redis.call('PEXPIRE', in_k, KEY_TTL)
return 1
`)

// scriptUnpark: ARGV[5..] node, id, frames... Ends a park: frames go in
// front of the held list, and claims may proceed.
var scriptUnpark = redis.NewScript(luaCommon + `
local node, id = ARGV[5], ARGV[6]
local sk = P .. 'sess:' .. id
if redis.call('HGET', sk, 'parking') ~= node then return 0 end
redis.call('HDEL', sk, 'parking')
local hk = P .. 'held:' .. id
for i = #ARGV, 7, -1 do redis.call('LPUSH', hk, ARGV[i]) end
if #ARGV >= 7 then redis.call('PEXPIRE', hk, KEY_TTL) end
return 1
`)

// scriptTick: ARGV[5..] node, grace ms, dead (1: mark this node dead,
// for a clean stop), seen (1: this node saw the boot key before, so a
// missing one means Redis lost its data). The heartbeat of node plus one round of reaping:
// sessions of nodes silent for longer than the node TTL are parked for
// the grace window, parked sessions past their deadline leave (peer-left to
// their rooms). Returns {reaped nodes, expired sessions, this node was
// reaped (0/1)}.
var scriptTick = redis.NewScript(luaCommon + `
local node, grace, dead = ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local now = now_ms()
if redis.call('EXISTS', P .. 'boot') == 0 then
  local until_ms = 0
  if ARGV[8] == '1' then until_ms = now + 2 * NODE_TTL end
  redis.call('SET', P .. 'boot', until_ms)
end
redis.call('PEXPIRE', P .. 'boot', KEY_TTL)
local score = now
if dead then score = 0 end
redis.call('ZADD', P .. 'nodes', score, node)
redis.call('PEXPIRE', P .. 'nodes', KEY_TTL)
redis.call('PEXPIRE', P .. 'node:' .. node .. ':peers', KEY_TTL)
redis.call('PEXPIRE', P .. 'node:' .. node .. ':in', KEY_TTL)
local wasReaped = redis.call('DEL', P .. 'reaped:' .. node)
local reaped = 0
for _, d in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now - NODE_TTL, 'LIMIT', 0, 16)) do
  if d ~= node or dead then
    local pk = P .. 'node:' .. d .. ':peers'
    for _, id in ipairs(redis.call('SMEMBERS', pk)) do
      local sk = P .. 'sess:' .. id
      if redis.call('HGET', sk, 'node') == d then
        redis.call('HSET', sk, 'node', '')
        redis.call('ZADD', P .. 'parked', now + grace, id)
        redis.call('PEXPIRE', P .. 'parked', KEY_TTL)
      end
    end
    redis.call('DEL', pk)
    redis.call('ZREM', P .. 'nodes', d)
    if not dead then redis.call('SET', P .. 'reaped:' .. d, '1', 'PX', KEY_TTL) end
    reaped = reaped + 1
  end
end
local expired = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'parked', '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('ZREM', P .. 'parked', id)
  if redis.call('HGET', P .. 'sess:' .. id, 'node') == '' then
    leave(id, nil, now)
    expired = expired + 1
  end
end
return {reaped, expired, wasReaped}
`)

// scriptRegister: ARGV[5..] node, id, room, name, tok, announce. Puts a
// session this node holds back into Redis after an outage. Returns {"ok",
// frames...} (frames held in Redis meanwhile), {"moved"} when another node
// claimed it, or {"new"} when it was re-created (announce went to the room
// when its peer had been reported left).
var scriptRegister = redis.NewScript(luaCommon + `
local node, id, room, name, tok, announce = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local sk, rk = P .. 'sess:' .. id, P .. 'room:' .. room
local cur = redis.call('HGET', sk, 'node')
local now = now_ms()
if cur and cur ~= '' and cur ~= node then return {'moved'} end
if cur then
  redis.call('HSET', sk, 'node', node)
  redis.call('PEXPIRE', sk, KEY_TTL)
  redis.call('ZREM', P .. 'parked', id)
  if redis.call('HEXISTS', rk, id) == 0 then redis.call('HSET', rk, id, seq_now()) end
  redis.call('PEXPIRE', rk, KEY_TTL)
  own(node, id)
  local hk = P .. 'held:' .. id
  local out = {'ok'}
  for _, f in ipairs(redis.call('LRANGE', hk, 0, -1)) do out[#out + 1] = f end
  redis.call('DEL', hk)
  return out
end
-- Gone from Redis: a restart without persistence, or reaped while this
-- node was cut off. Only in the second case did the room see peer-left.
local announced = ARGV[11] == '1'
if announced then
  for _, o in ipairs(members(room)) do deliver(o, announce, now) end
end
redis.call('HSET', rk, id, seq_now())
redis.call('PEXPIRE', rk, KEY_TTL)
redis.call('HSET', sk, 'room', room, 'name', name, 'tok', tok, 'node', node)
redis.call('PEXPIRE', sk, KEY_TTL)
own(node, id)
return {'new'}
`)

// scriptRefresh: ARGV[5..] pairs of id, room. Renews the backstop TTL of
// the keys of sessions this node holds.
var scriptRefresh = redis.NewScript(luaCommon + `
for i = 5, #ARGV, 2 do
  redis.call('PEXPIRE', P .. 'sess:' .. ARGV[i], KEY_TTL)
  redis.call('PEXPIRE', P .. 'room:' .. ARGV[i + 1], KEY_TTL)
end
return 1
`)
