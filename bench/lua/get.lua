-- GET a random dataset's route: BENCH_PATH has two %d, the owner number and the dataset number.
local datasets = tonumber(os.getenv("BENCH_DATASETS"))
local owners = tonumber(os.getenv("BENCH_OWNERS"))
local path = os.getenv("BENCH_PATH")

request = function()
  local i = math.random(0, datasets - 1)
  return wrk.format("GET", string.format(path, i % owners, i))
end
