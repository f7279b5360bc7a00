-- wrk script: a filtered page of well_production: one random field, periods from 2000, ordered by
-- period, 100 rows. EXTRA (for example `&oil_production_kbd=gte.0`) adds query parameters: a filter
-- outside the declared index sends the same page to DuckDB instead of the key index.
local extra = os.getenv("EXTRA") or ""
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local field = math.random(1, 2000)
  local path = string.format(
    "/v1/datasets/well_production/records?field_code=eq.%d&production_period=gte.2000-01-01&order=production_period&limit=100%s",
    field, extra)
  return wrk.format("GET", path)
end
