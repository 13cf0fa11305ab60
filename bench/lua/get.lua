-- GET a random dataset's route: BENCH_PATH has two %d, the owner number and the dataset
-- number (or none: always the same path). With BENCH_IF_NONE_MATCH, every request sends it
-- (a poller that has the answer). With BENCH_PAUSE_MS, each connection waits that long after
-- an answer before its next request (a front end polling), instead of asking again at once.
local datasets = tonumber(os.getenv("BENCH_DATASETS"))
local owners = tonumber(os.getenv("BENCH_OWNERS"))
local path = os.getenv("BENCH_PATH")
local headers = {}
if os.getenv("BENCH_IF_NONE_MATCH") then headers["If-None-Match"] = os.getenv("BENCH_IF_NONE_MATCH") end

local fixed = not string.find(path, "%%d")

request = function()
  if fixed then return wrk.format("GET", path, headers) end
  local i = math.random(0, datasets - 1)
  return wrk.format("GET", string.format(path, i % owners, i), headers)
end

local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "")
if pause then
  delay = function() return pause end
end
