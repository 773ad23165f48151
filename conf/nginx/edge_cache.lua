-- Shared edge cache in Redis for GET/HEAD of /api/tasks[/{id}] (edge server in nginx.conf).
--
-- Key:   built by generations.lua, the script the app's cache runs too (one EVALSHA a lookup):
--        under the generation of the task the URI names, or of the list for /api/tasks?...
-- Value: "<status>\n<content-type>\n<etag>\n<body>", SET with EX $edge_ttl.
-- The generation is read BEFORE fetching from the app, so a write racing with the fetch can
-- only leave an entry under the old generation, which nobody reads any more.
-- Redis errors/timeouts never fail the request: we fall through to the app (X-Edge-Cache: MISS).
local M = {}

-- Loaded once, in nginx's master (init_by_lua): the script's text and its SHA-1 for EVALSHA.
local SCRIPT = assert(io.open(assert(package.searchpath("generations", package.path)))):read("*a")
local SHA = ngx.sha1_bin(SCRIPT):gsub(".", function(c) return string.format("%02x", c:byte()) end)

local TIMEOUT_MS = 100
-- After a Redis error this worker leaves Redis alone for a second: no timeout paid per request,
-- and time for the app's janitors to bump the generations that writes meanwhile could not.
local RETRY_AFTER_S = 1
local skip_until = 0
local DROP = { -- never copied from the app response: hop-by-hop, recomputed, or per request
    ["connection"] = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
    ["content-length"] = true, ["x-request-id"] = true,
}

-- Minimal RESP client ----------------------------------------------------------

-- Reads one reply: a bulk/simple/integer reply as a string, ngx.null for a nil bulk reply,
-- an array (one level) as a table, or nil, err (an "-ERR ..." reply too).
local function read_reply(sock)
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local kind, rest = line:sub(1, 1), line:sub(2)
    if kind == "$" then
        local len = tonumber(rest)
        if len < 0 then return ngx.null end
        local data, err = sock:receive(len + 2) -- payload + CRLF
        if not data then return nil, err end
        return data:sub(1, len)
    elseif kind == "*" then -- the script's {key, entry}
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
    return nil, "redis: " .. line -- "-ERR ...", "-NOSCRIPT ..." or a type we never ask for
end

-- Sends one command and returns its reply (see read_reply).
local function call(sock, ...)
    local n = select("#", ...)
    local req = { "*", n, "\r\n" }
    for i = 1, n do
        local arg = tostring((select(i, ...)))
        req[#req + 1] = "$" .. #arg .. "\r\n" .. arg .. "\r\n"
    end
    local ok, err = sock:send(req)
    if not ok then return nil, err end
    return read_reply(sock)
end

-- The run_id of the Redis process this worker's pooled connections reach (generations.lua names
-- every key after it). Connections are pooled under it: one checked, as it connected, to reach
-- another process (Redis restarted, or a new one behind the same name) serves its request and
-- closes, so a pooled connection's process is always the one its pool is named after.
local run_id = ""

-- Returns a connection, the run_id of the process it reaches, and whether it may be pooled;
-- or nil while backing off or when Redis fails.
local function connect()
    if ngx.now() < skip_until then return nil end
    local sock = ngx.socket.tcp()
    sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
    local host, port, pool_run = ngx.var.redis_host, ngx.var.redis_port, run_id
    local ok, err = sock:connect(host, tonumber(port), { pool = host .. ":" .. port .. ":" .. pool_run })
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
local function release(sock, healthy, pooled)
    if healthy and pooled then
        sock:setkeepalive(30000, 32)
        return
    end
    sock:close()
    if not healthy then skip_until = ngx.now() + RETRY_AFTER_S end
end

-- Cache logic -------------------------------------------------------------------

-- The generation scope of a URI: the task it names, or the list.
local function scope(uri)
    return uri:match("^/api/tasks/(%d+)$") or uri:match("^/api/tasks/(%d+)%?") or "list"
end

-- Returns the key for this request (nil if Redis is unusable) and the entry (nil on miss).
local function lookup(uri)
    local sock, run, pooled = connect()
    if not sock then return nil end
    local args = { run, "read", "edge", scope(uri), uri }
    local reply, err = call(sock, "EVALSHA", SHA, 0, unpack(args))
    if reply == nil and err and err:find("NOSCRIPT", 1, true) then -- Redis restarted: load it
        reply = call(sock, "EVAL", SCRIPT, 0, unpack(args))
    end
    release(sock, reply ~= nil, pooled)
    if type(reply) ~= "table" then return nil end
    return reply[1], reply[2] ~= ngx.null and reply[2] or nil
end

local function store(key, value)
    local sock, _, pooled = connect()
    if not sock then return end
    release(sock, call(sock, "SET", key, value, "EX", ngx.var.edge_ttl) ~= nil, pooled)
end

local function send(status, headers, body, edge)
    ngx.status = status
    for name, value in pairs(headers) do ngx.header[name] = value end
    ngx.header["Content-Length"] = #body
    ngx.header["X-Edge-Cache"] = edge
    if ngx.req.get_method() ~= "HEAD" then ngx.print(body) end
    ngx.eof()
end

function M.serve()
    local uri = ngx.var.cache_variant .. ngx.var.request_uri -- "count/api/tasks?..." (maps.conf)
    -- Entries keep no X-Total-Count (only status, type, ETag, body): counted pages skip Redis.
    local bypass = ngx.var.cache_bypass == "1" or ngx.var.cache_variant ~= ""
    local key, entry
    if not bypass then key, entry = lookup(uri) end

    if entry then
        local status, ctype, etag, body = entry:match("^(%d+)\n([^\n]*)\n([^\n]*)\n(.*)$")
        if status then
            local headers = { ["Content-Type"] = ctype ~= "" and ctype or nil,
                              ["ETag"] = etag ~= "" and etag or nil }
            return send(tonumber(status), headers, body, "HIT")
        end
    end

    -- Miss: fetch from the app (always GET, so even a HEAD leaves a complete entry).
    local res = ngx.location.capture("/_app", { method = ngx.HTTP_GET })
    if res.status >= 500 and res.body == "" then
        -- App unreachable/timed out (nginx-made error, no body): let error_page render problem+json.
        return ngx.exit(res.status)
    end
    local headers, ctype, etag, cookie = {}, "", "", false
    for name, value in pairs(res.header) do
        local lname = name:lower()
        if not DROP[lname] then headers[name] = value end
        if lname == "content-type" then ctype = value end
        if lname == "etag" then etag = value end
        if lname == "set-cookie" then cookie = true end
    end
    send(res.status, headers, res.body, bypass and "BYPASS" or "MISS")

    -- Store after the response went out; only clean 200s without cookies.
    if key and res.status == 200 and not res.truncated and not cookie
            and type(ctype) == "string" and type(etag) == "string" then
        store(key, table.concat({ res.status, ctype, etag, res.body }, "\n"))
    end
end

return M
