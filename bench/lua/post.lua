-- POST a JSON body with two %s. BENCH_MODE says what they are:
-- "new": an uploader (uploader-<n>, taken in turn, so that the owners whose datasets the
--        read runs ask about keep the registry they were loaded with) and a dataset
--        nobody uploaded yet,
-- "existing": an owner and one of its datasets in the registry,
-- "event": a pipeline id (any dataset) and a log line, for /source/update, at the hook
--          URL of the dataset's newest revision (3): BENCH_HOOKS names a file of their
--          credentials, dataset i's on line i + 1.
-- Uploads carry the owner's token: BENCH_TOKENS holds one per owner (or uploader),
-- comma-separated.
local datasets = tonumber(os.getenv("BENCH_DATASETS"))
local owners = tonumber(os.getenv("BENCH_OWNERS"))
local mode = os.getenv("BENCH_MODE")
local body = os.getenv("BENCH_BODY")
local salt = os.getenv("BENCH_SALT")
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  table.insert(tokens, token)
end

local hooks = {}
if os.getenv("BENCH_HOOKS") then
  for line in io.lines(os.getenv("BENCH_HOOKS")) do
    table.insert(hooks, line)
  end
end

local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local sent = 0
request = function()
  sent = sent + 1
  local headers = {["Content-Type"] = "application/json"}
  local owner, first, second, path
  if mode == "new" then
    owner = (tid * 7919 + sent) % owners
    first = string.format("uploader-%d", owner)
    second = string.format("new-%s-%d-%d", salt, tid, sent)
  elseif mode == "existing" then
    local i = math.random(0, datasets - 1)
    owner = i % owners
    first = string.format("owner-%d", owner)
    second = string.format("ds-%d", i)
  else
    local i = math.random(0, datasets - 1)
    first = string.format("owner-%d/ds-%d", i % owners, i)
    second = string.format("step %s %d %d", salt, tid, sent)
    path = string.format("/source/update?dataset=%s&revision=3&token=%s", first, hooks[i + 1])
  end
  if owner ~= nil then headers["Auth-Token"] = tokens[owner + 1] end
  return wrk.format("POST", path, headers, string.format(body, first, second))
end
