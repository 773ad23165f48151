-- The Redis cache layer of the edge (X-Edge-Cache): the app's entry for a request, read with
-- its scope's generation in one MGET (key names: generations.lua), and taken only if it was
-- stored under that generation. nginx only reads these entries; the app's read-through writes
-- them. Redis errors and timeouts are a miss: the request goes on to the app.
local redis = require "redis_client"

local M = {}

-- The packed response (packed_response.lua) Redis holds for `what` in `scope`, if stored under
-- the scope's current generation; nil on a miss or when Redis is unusable.
function M.lookup(scope, what)
    local sock, run, pooled = redis.connect()
    if not sock then return nil end
    local ns = "tasks:" .. run .. ":"
    local gen, stamped = redis.mget_pair(sock, ns .. "gen:" .. scope, ns .. scope .. ":" .. what)
    redis.release(sock, gen ~= nil, pooled)
    if not stamped or stamped == ngx.null then return nil end
    if gen == ngx.null then gen = "0" end
    local newline = stamped:find("\n", 1, true)
    if not newline or stamped:sub(1, newline - 1) ~= gen
            or not stamped:find("\n\n", newline, true) then -- not a packed response: a miss
        return nil
    end
    return stamped:sub(newline + 1)
end

return M
