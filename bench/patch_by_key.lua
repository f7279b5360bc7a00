-- wrk script: PATCH one well_production record by its key, at random among the ROWS generated rows
-- (`dataforge generate` numbering: well = 100000 + i / 924, field = 1 + (well * 7919) % 2000,
-- period = month i % 924 from 1947-01), setting oil_production_kbd.
local rows = tonumber(os.getenv("ROWS") or "1000000")

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local i = math.random(0, rows - 1)
  local well = 100000 + math.floor(i / 924)
  local field = 1 + (well * 7919) % 2000
  local month = i % 924
  local path = string.format("/v1/datasets/well_production/records/%d/%d/%04d-%02d-01",
    field, well, 1947 + math.floor(month / 12), month % 12 + 1)
  local body = string.format('{"oil_production_kbd":%d}', math.random(0, 9999))
  return wrk.format("PATCH", path, {["Content-Type"] = "application/json"}, body)
end
