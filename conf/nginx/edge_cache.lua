-- Shared edge cache in Redis for GET/HEAD of /api/tasks[/{id}] (edge server in nginx.conf).
--
-- Key:   tasks:edge:<gen>:<request uri>, <gen> = the app's write counter tasks:gen (missing = 0).
-- Value: "<status>\n<content-type>\n<etag>\n<body>", SET with EX $edge_ttl.
-- The generation is read BEFORE fetching from the app, so a write racing with the fetch can
-- only leave an entry under the old generation, which nobody reads any more.
-- Redis errors/timeouts never fail the request: we fall through to the app (X-Edge-Cache: MISS).
local M = {}

local TIMEOUT_MS = 100
local DROP = { -- never copied from the app response: hop-by-hop, recomputed, or per request
    ["connection"] = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
    ["content-length"] = true, ["x-request-id"] = true,
}

-- Minimal RESP client ----------------------------------------------------------

local function connect()
    local sock = ngx.socket.tcp()
    sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
    local ok, err = sock:connect(ngx.var.redis_host, tonumber(ngx.var.redis_port))
    if not ok then return nil, err end
    -- A new connection logs in first (a pooled one already has); nginx.conf: env REDIS_PASSWORD;
    local password = sock:getreusedtimes() == 0 and os.getenv("REDIS_PASSWORD") or ""
    if password ~= "" then
        sock:send({ "*2\r\n$4\r\nAUTH\r\n$", #password, "\r\n", password, "\r\n" })
        if sock:receive("*l") ~= "+OK" then sock:close(); return nil, "redis: AUTH failed" end
    end
    return sock
end

-- Sends one command; returns the bulk/simple/integer reply as a string,
-- ngx.null for a nil bulk reply, or nil, err.
local function call(sock, ...)
    local n = select("#", ...)
    local req = { "*", n, "\r\n" }
    for i = 1, n do
        local arg = tostring((select(i, ...)))
        req[#req + 1] = "$" .. #arg .. "\r\n" .. arg .. "\r\n"
    end
    local ok, err = sock:send(req)
    if not ok then return nil, err end
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local kind, rest = line:sub(1, 1), line:sub(2)
    if kind == "$" then
        local len = tonumber(rest)
        if len < 0 then return ngx.null end
        local data, err = sock:receive(len + 2) -- payload + CRLF
        if not data then return nil, err end
        return data:sub(1, len)
    elseif kind == "+" or kind == ":" then
        return rest
    end
    return nil, "redis: " .. line -- "-ERR ..." or a type we never ask for
end

-- Pool a healthy connection; a failed one may hold a half-read reply, so close it.
local function release(sock, healthy)
    if healthy then sock:setkeepalive(30000, 32) else sock:close() end
end

-- Cache logic -------------------------------------------------------------------

-- Returns the key for this request (nil if Redis is unusable) and the entry (nil on miss).
local function lookup(uri)
    local sock = connect()
    if not sock then return nil end
    local gen = call(sock, "GET", "tasks:gen")
    if not gen then return release(sock, false) end
    local key = "tasks:edge:" .. (gen == ngx.null and "0" or gen) .. ":" .. uri
    local entry = call(sock, "GET", key)
    release(sock, entry ~= nil)
    if not entry then return nil end
    return key, entry ~= ngx.null and entry or nil
end

local function store(key, value)
    local sock = connect()
    if not sock then return end
    release(sock, call(sock, "SET", key, value, "EX", ngx.var.edge_ttl) ~= nil)
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
    local uri = ngx.var.request_uri
    local bypass = ngx.var.cache_bypass == "1"
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
