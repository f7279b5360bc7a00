-- wrk script: each connection POSTs single well_production records with keys unique per thread
-- (and per run: RUN, default 0, offsets the field codes so that runs on one database do not meet).
local threads = 0
local run = tonumber(os.getenv("RUN") or "0")

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  counter = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"field_code":%d,"well_code":%d,"production_period":"2020-01-01","oil_production_kbd":1.5,"data_source":"bench"}',
    1 + id + 16 * run, counter)
  -- the headers given on the command line (`-H`, an Authorization, say) and the body's type
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format("POST", "/v1/datasets/well_production/records", headers, body)
end
