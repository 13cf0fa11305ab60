-- POST a JSON body: BENCH_BODY has %s for a name (and may have a second %s for a
-- log line); BENCH_MODE says which name:
-- "new" (a dataset nobody uploaded yet), "existing" (one of owner-0's datasets),
-- "event" (any dataset, for /source/update).
local datasets = tonumber(os.getenv("BENCH_DATASETS"))
local owners = tonumber(os.getenv("BENCH_OWNERS"))
local mode = os.getenv("BENCH_MODE")
local body = os.getenv("BENCH_BODY")
local salt = os.getenv("BENCH_SALT")
local headers = {["Content-Type"] = "application/json"}
if os.getenv("BENCH_TOKEN") then headers["Auth-Token"] = os.getenv("BENCH_TOKEN") end

local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local sent = 0
request = function()
  sent = sent + 1
  local name
  if mode == "new" then
    name = string.format("new-%s-%d-%d", salt, tid, sent)
  elseif mode == "existing" then
    name = string.format("ds-%d", math.random(0, datasets / owners - 1) * owners)
  else
    local i = math.random(0, datasets - 1)
    name = string.format("owner-%d/ds-%d", i % owners, i)
  end
  local line = string.format("step %s %d %d", salt, tid, sent)
  return wrk.format("POST", nil, headers, string.format(body, name, line))
end
