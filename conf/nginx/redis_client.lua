-- A minimal Redis client over nginx cosockets, for the edge's reads (redis_cache.lua): the RESP
-- wire protocol of the few replies it asks for, connections pooled per worker under the run_id
-- of the Redis process they reach, AUTH, and a second of backing off after an error.
--
-- connect() -> sock, run_id, pooled   (nil while backing off or when Redis fails)
-- mget(sock, keys) -> values         (ngx.null: no such key; nil: failed)
-- release(sock, healthy, pooled)
local M = {}

local TIMEOUT_MS = 100
-- After a Redis error this worker leaves Redis alone for a second: no timeout paid per request,
-- and time for the app's janitors to bump the generations that writes meanwhile could not.
local RETRY_AFTER_S = 1
local skip_until = 0

-- Reads one reply: a bulk/simple/integer reply as a string, ngx.null for a nil bulk reply,
-- an array (one level) as a table, or nil, err (an "-ERR ..." reply too).
local function read_reply(sock)
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local kind, rest = line:sub(1, 1), line:sub(2)
    if kind == "$" then
        local len = tonumber(rest)
        if len < 0 then return ngx.null end
        local data, err = sock:receive(len)
        if not data or not sock:receive(2) then return nil, err or "redis: no CRLF" end -- CRLF
        return data
    elseif kind == "*" then
        local items = {}
        for i = 1, tonumber(rest) do
            local item, err = read_reply(sock)
            if item == nil then return nil, err end
            items[i] = item
        end
        return items
    elseif kind == "+" or kind == ":" then
        return rest
    end
    return nil, "redis: " .. line -- "-ERR ..." or a type we never ask for
end

-- MGET's reply, read in as few socket calls as it arrived in (one, for an item): the helpers
-- below carry (buf, pos), what has arrived and where parsing stands.
local READ_MAX = 65536

-- buf from pos on, and what arrives next; nil once the socket fails.
local function more(sock, buf, pos)
    local data = sock:receiveany(READ_MAX)
    return data and buf:sub(pos) .. data
end

-- The CRLF-ended line at pos: line, buf, the position after it; nil once the socket fails.
local function line_at(sock, buf, pos)
    while true do
        local crlf = buf:find("\r\n", pos, true)
        if crlf then return buf:sub(pos, crlf - 1), buf, crlf + 2 end
        buf, pos = more(sock, buf, pos), 1
        if not buf then return nil end
    end
end

-- The bulk reply at pos: its value (ngx.null for a missing key), buf, the position after it.
local function bulk_at(sock, buf, pos)
    local head
    head, buf, pos = line_at(sock, buf, pos)
    local len = head and head:byte(1) == 36 and tonumber(head:sub(2)) -- "$<length>"
    if not len then return nil end
    if len < 0 then return ngx.null, buf, pos end
    while #buf - pos < len + 1 do -- the value and its CRLF
        buf, pos = more(sock, buf, pos), 1
        if not buf then return nil end
    end
    return buf:sub(pos, pos + len - 1), buf, pos + len + 2
end

-- The values of an MGET of `keys` (ngx.null for a missing key), in their order, or nil (a failed
-- socket, an error reply).
function M.mget(sock, keys)
    local n = #keys
    local command = { "*", n + 1, "\r\n$4\r\nMGET\r\n" }
    for i = 1, n do
        local key = keys[i]
        command[#command + 1] = "$" .. #key .. "\r\n" .. key .. "\r\n"
    end
    if not sock:send(command) then return nil end
    local head, buf, pos = line_at(sock, "", 1)
    if head ~= "*" .. n then return nil end
    local values = {}
    for i = 1, n do
        values[i], buf, pos = bulk_at(sock, buf, pos)
        if values[i] == nil then return nil end
    end
    return values
end

-- The run_id of the Redis process this worker's pooled connections reach (generations.lua names
-- every key after it). Connections are pooled under it: one checked, as it connected, to reach
-- another process (Redis restarted, or a new one behind the same name) serves its request and
-- closes, so a pooled connection's process is always the one its pool is named after.
local run_id = ""
local host, port, pool_name -- this worker's Redis address (nginx.conf) and pool, learned once

-- Returns a connection, the run_id of the process it reaches, and whether it may be pooled;
-- or nil while backing off or when Redis fails.
function M.connect()
    if ngx.now() < skip_until then return nil end
    local sock = ngx.socket.tcp()
    sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
    if not host then host, port = ngx.var.redis_host, tonumber(ngx.var.redis_port) end
    local pool_run = run_id
    if not pool_name or pool_name.run ~= pool_run then
        pool_name = { run = pool_run, options = { pool = host .. ":" .. port .. ":" .. pool_run } }
    end
    local ok, err = sock:connect(host, port, pool_name.options)
    if not ok then
        skip_until = ngx.now() + RETRY_AFTER_S
        return nil, err
    end
    if sock:getreusedtimes() > 0 then return sock, pool_run, true end
    -- A new connection logs in (nginx.conf: env REDIS_PASSWORD;) and learns its process's run_id.
    local password = os.getenv("REDIS_PASSWORD") or ""
    local info
    if password ~= "" then
        sock:send({ "*2\r\n$4\r\nAUTH\r\n$", #password, "\r\n", password, "\r\n" })
        if sock:receive("*l") ~= "+OK" then
            sock:close()
            skip_until = ngx.now() + RETRY_AFTER_S
            return nil, "redis: AUTH failed"
        end
    end
    sock:send("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
    info, err = read_reply(sock)
    local id = type(info) == "string" and info:match("\nrun_id:(%x+)")
    if not id then
        sock:close()
        skip_until = ngx.now() + RETRY_AFTER_S
        return nil, err or "redis: no run_id"
    end
    run_id = id
    return sock, id, id == pool_run
end

-- Pool a healthy connection (if its pool is its process's); a failed one may hold a half-read
-- reply, so close it and back off.
function M.release(sock, healthy, pooled)
    if healthy and pooled then
        sock:setkeepalive(30000, 32)
        return
    end
    sock:close()
    if not healthy then skip_until = ngx.now() + RETRY_AFTER_S end
end

return M
