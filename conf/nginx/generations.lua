-- Cache generations: a Redis-side script (EVALSHA), shared by the app (svc/cache.py) and the
-- nginx edge (edge_cache.lua), so both layers name their entries the same way.
--
-- Every key lives under tasks:<run_id>, the run_id of the Redis process answering: a Redis that
-- restarted (empty, or from its append-only file with writes missing) or a replica promoted in
-- its place has another run_id, so nothing stored before can be read again.
-- Inside it, one generation per task (tasks:<run>:gen:<id>, set to the task's version, which
-- PostgreSQL owns and only ever grows) and one for the collection (tasks:<run>:gen:list, bumped
-- by every write). A write to task A changes A's generation and the list's; task B's entries stay.
--
-- ARGV[1] = "read": ARGV[2] layer ("app" | "edge"), ARGV[3] scope (a task id | "list"),
--           ARGV[4] what within the scope (the app's query key, the edge's URI).
--           Returns {key, entry or nil}: on a miss the caller stores under exactly this key,
--           which holds the generation read BEFORE it loaded: a write racing with the load
--           leaves the entry under a generation nobody reads any more.
-- ARGV[1] = "bump": ARGV[2] task id ("" for the list alone), ARGV[3] its version,
--           ARGV[4] seconds a task's generation lives (longer than any entry's TTL, so an
--           expired generation, read as 0, finds no entry stored under 0 before it).
-- Key names are built here, not passed as KEYS: this runs on a standalone Redis, not a cluster.
local run = string.match(redis.call("INFO", "server"), "run_id:(%x+)")
local ns = "tasks:" .. run

if ARGV[1] == "bump" then
    if ARGV[2] ~= "" then
        local gen = ns .. ":gen:" .. ARGV[2]
        -- Never backwards: a slower writer of an older version must not undo a newer one.
        if tonumber(ARGV[3]) > tonumber(redis.call("GET", gen) or "0") then
            redis.call("SET", gen, ARGV[3], "EX", ARGV[4])
        end
    end
    return redis.call("INCR", ns .. ":gen:list")
end

local gen = redis.call("GET", ns .. ":gen:" .. ARGV[3]) or "0"
local key = ns .. ":" .. ARGV[2] .. ":" .. ARGV[3] .. ":" .. gen .. ":" .. ARGV[4]
return {key, redis.call("GET", key)}
