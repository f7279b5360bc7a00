-- wrk script: each connection POSTs single well_production records with keys unique per thread.
local threads = 0

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
    1 + id, counter)
  return wrk.format("POST", "/v1/datasets/well_production/records", {["Content-Type"] = "application/json"}, body)
end
