-- Cache generations: a Redis-side script (EVALSHA), shared by the app (svc/cache.py) and the
-- nginx edge (edge_cache.lua), so both layers name their entries the same way.
--
-- Every key lives under tasks:<run_id>, the run_id of the Redis process answering: a Redis that
-- restarted (empty, or from its append-only file with writes missing) or a replica promoted in
-- its place has another run_id, so nothing stored before can be read again. Callers pass it as
-- ARGV[1]: each learns it once per connection (INFO server, as it connects) and passes the one of
-- the connection the call goes out on. A TCP connection reaches one process for its life, so the
-- argument is always the answering process's, and no call pays for INFO (8 us of Redis CPU,
-- 2/3 of a lookup's).
-- Inside it, one generation per task (tasks:<run>:gen:<id>, set to the task's version, which
-- PostgreSQL owns and only ever grows) and one for the collection (tasks:<run>:gen:list, bumped
-- by every write). A write to task A changes A's generation and the list's; task B's entries stay.
--
-- ARGV[2] = "read": ARGV[3] layer ("app" | "edge"), ARGV[4] scope (a task id | "list"),
--           ARGV[5] what within the scope (the app's query key, the edge's URI).
--           Returns {key, entry or nil}: on a miss the caller stores under exactly this key,
--           which holds the generation read BEFORE it loaded: a write racing with the load
--           leaves the entry under a generation nobody reads any more.
-- ARGV[2] = "bump": ARGV[3] task id ("" for the list alone), ARGV[4] its version,
--           ARGV[5] seconds a task's generation lives (longer than any entry's TTL, so an
--           expired generation, read as 0, finds no entry stored under 0 before it).
-- Key names are built here, not passed as KEYS: this runs on a standalone Redis, not a cluster.
local ns = "tasks:" .. ARGV[1]

if ARGV[2] == "bump" then
    if ARGV[3] ~= "" then
        local gen = ns .. ":gen:" .. ARGV[3]
        -- Never backwards: a slower writer of an older version must not undo a newer one.
        if tonumber(ARGV[4]) > tonumber(redis.call("GET", gen) or "0") then
            redis.call("SET", gen, ARGV[4], "EX", ARGV[5])
        end
    end
    return redis.call("INCR", ns .. ":gen:list")
end

local gen = redis.call("GET", ns .. ":gen:" .. ARGV[4]) or "0"
local key = ns .. ":" .. ARGV[3] .. ":" .. ARGV[4] .. ":" .. gen .. ":" .. ARGV[5]
return {key, redis.call("GET", key)}
