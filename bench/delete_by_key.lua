-- wrk script: DELETE well_production records by key, every request a distinct existing key from
-- 1990 on (so a later retention delete still finds every row before 1990). The j-th key of the
-- run is candidate (j * 1000003) % candidates among the months 1990-01..2023-12 of the whole wells
-- of the ROWS generated rows (`dataforge generate` numbering: well = 100000 + i / 924, field =
-- 1 + (well * 7919) % 2000, period = month i % 924 from 1947-01); thread t of T takes j = t, t + T,
-- t + 2T, ... (its connections share the thread's counter); THREADS must be wrk's -t. The
-- raw_changes example deletes the first 10,000 of the same keys.
local rows = tonumber(os.getenv("ROWS") or "1000000")
local step = tonumber(os.getenv("THREADS") or "2")
local months, first_kept = 924, 516
local per_well = months - first_kept
local candidates = math.floor(rows / months) * per_well
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  j = id
end

function request()
  local k = (j * 1000003) % candidates
  j = j + step
  local well = 100000 + math.floor(k / per_well)
  local field = 1 + (well * 7919) % 2000
  local month = first_kept + k % per_well
  local path = string.format("/v1/datasets/well_production/records/%d/%d/%04d-%02d-01",
    field, well, 1947 + math.floor(month / 12), month % 12 + 1)
  return wrk.format("DELETE", path)
end
