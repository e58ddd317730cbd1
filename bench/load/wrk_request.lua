-- One operation per wrk run, chosen by OP: create | get | list | me | start | complete | post.
-- create writes the ids it gets back to IDS_DIR/ids-<thread>.txt; start reads them (each id
-- once) and writes those it started to IDS_DIR/started-<thread>.txt, which complete reads;
-- both stop the thread when they run out. post sends the JSON bodies of
-- the file BODIES (one per line, line i to thread i % THREADS) to POST_PATH, each once, and
-- stops the thread when all of its bodies are answered. done() prints one JSON line.
-- A thread that runs out of work stops, but wrk itself runs for its whole -d; so each
-- thread notes when it began and when it stopped (microseconds, through LuaJIT's FFI), and
-- done() reports the span from the first start to the last stop when every thread stopped.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local function now_us()
  local tv = ffi.new("bench_timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local op = os.getenv("OP")
local token = os.getenv("TOKEN") or ""
local task_id = os.getenv("TASK_ID") or ""
local ids_dir = os.getenv("IDS_DIR") or "."
local post_path = os.getenv("POST_PATH") or "/"
local create_body = '{"title":"wrk task","task_type":"INCIDENT","priority":"HIGH","tags":["bench"]}'

local next_index = 0
local threads = {}
function setup(thread)
  thread:set("index", next_index)
  next_index = next_index + 1
  table.insert(threads, thread)
end

-- Requests sent after a thread ran out of ids (they repeat the last id and fail); done()
-- reports them apart from real errors.
exhausted = 0
failed = 0  -- post: the thread's own bodies not answered 2xx
began = 0
stopped = 0

local function stop_thread()
  if stopped == 0 then stopped = now_us() end
  wrk.thread:stop()
end

local ids = {}
local position = 0
local answered = 0
local out = nil

function init(args)
  began = now_us()
  -- wrk calls request() once on thread 0 before it runs, to check the request, and sends
  -- nothing of it: that call must not use up the thread's first body or id.
  if index == 0 then position = -1 end
  if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
  wrk.headers["Content-Type"] = "application/json"
  if op == "post" then
    local threads_count = tonumber(os.getenv("THREADS") or "1")
    local line_number = 0
    for line in io.lines(os.getenv("BODIES")) do
      if line_number % threads_count == index then table.insert(ids, line) end
      line_number = line_number + 1
    end
  elseif op == "create" then
    out = io.open(ids_dir .. "/ids-" .. index .. ".txt", "w")
  elseif op == "start" or op == "complete" then
    -- complete takes only the tasks start answered 200 for: a task start did not reach
    -- in its run is still open, and completing it is refused (409), not a failure.
    local source = op == "start" and "/ids-" or "/started-"
    local f = io.open(ids_dir .. source .. index .. ".txt", "r")
    if f then
      for line in f:lines() do table.insert(ids, line) end
      f:close()
    end
    if op == "start" then out = io.open(ids_dir .. "/started-" .. index .. ".txt", "w") end
  end
end

function request()
  if op == "create" then
    return wrk.format("POST", "/api/v1/tasks", nil, create_body)
  elseif op == "get" then
    return wrk.format("GET", "/api/v1/tasks/" .. task_id)
  elseif op == "list" then
    return wrk.format("GET", "/api/v1/tasks?page_size=20")
  elseif op == "me" then
    return wrk.format("GET", "/api/v1/auth/me")
  elseif op == "post" then
    -- Past the thread's share (answers still in flight), a GET of the same path, a second
    -- later (see delay): answered 405 by the router, it never reaches the intake.
    position = position + 1
    if position > #ids then
      exhausted = exhausted + 1
      return wrk.format("GET", post_path)
    end
    return wrk.format("POST", post_path, nil, ids[position])
  else
    position = position + 1
    if position > #ids then exhausted = exhausted + 1 end
    local id = ids[position] or ids[#ids] or "00000000-0000-0000-0000-000000000000"
    local body = nil
    if op == "complete" then body = "{}" end
    return wrk.format("PATCH", "/api/v1/tasks/" .. id .. "/" .. op, nil, body)
  end
end

if op == "post" then
  -- A connection with no body left waits instead of flooding the server: the thread stops
  -- as soon as its last body is answered.
  function delay()
    if position >= #ids then return 1000 end
    return 0
  end
end

function response(status, headers, body)
  if out and ((op == "create" and status == 201) or (op == "start" and status == 200)) then
    local id = string.match(body, '"id"%s*:%s*"([0-9a-f%-]+)"')
    if id then out:write(id, "\n"); out:flush() end
  end
  if (op == "start" or op == "complete") and position >= #ids then
    stop_thread()
  elseif op == "post" and status ~= 405 then
    -- Only the answers to the thread's own bodies count: the thread stops once each of
    -- them is answered, not when answers to the filler GETs make up the number.
    answered = answered + 1
    if status < 200 or status > 299 then failed = failed + 1 end
    if answered >= #ids then stop_thread() end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local tail, not_ok = 0, 0
  local first, last, all_stopped = nil, 0, true
  for _, thread in ipairs(threads) do
    tail = tail + (thread:get("exhausted") or 0)
    not_ok = not_ok + (thread:get("failed") or 0)
    local b, s = thread:get("began") or 0, thread:get("stopped") or 0
    if first == nil or b < first then first = b end
    if s == 0 then all_stopped = false elseif s > last then last = s end
  end
  local duration = summary.duration
  if all_stopped and first then duration = last - first end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"bad_status":%d,' ..
    '"exhausted":%d,"failed":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, duration, e.connect + e.read + e.write + e.timeout, e.status, tail, not_ok,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
