-- Per-client budgets for the requests that reach the app, checked before nginx sends one
-- (edge_cache.lua's fetch from the app; access_by_lua in @app and /api/, nginx.conf). Cache hits
-- never come here. Two leaky buckets per client address ($binary_remote_addr), like limit_req
-- with nodelay: every request that reaches the app drains the "app" bucket (APP_RATE a second,
-- APP_BURST at once), and a costly one, a search (q=) or a count (Prefer: count=...), the
-- "costly" bucket too (COSTLY_RATE, COSTLY_BURST). Past either: 429 with Retry-After, from
-- nginx, before the app is asked.
--
-- The figures are read once, in nginx's master, from its environment (nginx.conf: env EDGE_...;),
-- defaults below. The buckets live in lua_shared_dict limits, shared by the workers: a get and
-- a set, without a lock, so two workers at the same instant may both let one request too many
-- through, which a budget can afford.
local M = {}

local function setting(name, default)
    local value = tonumber(os.getenv(name) or "")
    return value and value > 0 and value or default
end

-- A few hundred uncached reads a second from one address stay well under APP_RATE; a costly
-- request may hold a PostgreSQL backend for the read bound (svc/config.py READ_TIMEOUT, 0.5 s),
-- so one address gets a few of those a second.
M.BUDGETS = {
    app = { rate = setting("EDGE_APP_RATE", 1000), burst = setting("EDGE_APP_BURST", 500) },
    costly = { rate = setting("EDGE_COSTLY_RATE", 2), burst = setting("EDGE_COSTLY_BURST", 4) },
}

local DICT = ngx.shared.limits

-- Seconds until `kind`'s bucket of this client has room, or nil if it has room now (and then
-- the request is counted in it). The bucket holds up to burst + 1 requests and drains at rate
-- a second; its time is stamped in ms in the dict's 32-bit flags.
local function full(kind)
    local budget = M.BUDGETS[kind]
    local key = kind .. ngx.var.binary_remote_addr
    local now = math.floor(ngx.now() * 1000) % 4294967296
    local level, since = DICT:get(key)
    if level then
        -- Each worker's clock is its event loop's cached time: another worker may have stamped
        -- a moment this one has not reached yet (a "negative" age, past 2^31 ms: none).
        local age = (now - since) % 4294967296
        level = math.max(0, level - budget.rate * (age < 2147483648 and age or 0) / 1000)
    else
        level = 0
    end
    local over = level + 1 - (budget.burst + 1)
    if over > 0 then
        return math.max(1, math.ceil(over / budget.rate))
    end
    DICT:set(key, level + 1, math.ceil((budget.burst + 1) / budget.rate) + 1, now)
    return nil
end

-- True for a search or a count of the list: the kinds that cost PostgreSQL the most (an item
-- ignores both).
local function costly()
    return ngx.var.uri == "/api/tasks" and (ngx.var.arg_q ~= nil or ngx.var.cache_variant ~= "")
end

-- The status to answer instead of asking the app (429), or nil: go ahead. Its problem carries
-- Retry-After: 1 (maps.conf $retry_after, as every 429 of nginx's): a bucket is at most one
-- request over, which drains within a second at any rate of 1 a second or more.
function M.refuse()
    if (costly() and full("costly")) or full("app") then
        return ngx.HTTP_TOO_MANY_REQUESTS
    end
    return nil
end

-- access_by_lua: end the request with 429 if it is over budget.
function M.check()
    local status = M.refuse()
    if status then return ngx.exit(status) end
end

return M
