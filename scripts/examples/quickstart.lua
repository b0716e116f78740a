-- Quickstart: a tour of the table manager. Define a table as a Lua class,
-- write and read records holding every DynamoDB value type, query a secondary
-- index, batch-write 10,000 records, scan with a filter, see a conditional
-- write fail cleanly, and clear the table.
--   scripts/dynamo run scripts/examples/quickstart.lua
-- With no AWS settings this runs against a local in-memory server.
local dynamo = require("dynamo")
local C = dynamo.ConditionExpression

local client = dynamo.client()

-- 1. A table definition: the table name, its keys, a GSI, and key hooks that
--    derive the keys from each record.
local UserTable = dynamo.DynamoTable:extend{
  table = "tour_users_" .. os.time(),
  partition_key_name = "pk",
  sort_key_name = "sk",
  global_secondary_indexes = {
    dynamo.DynamoTableIndex("gsi_name_age", "name", "age", { sort_key_type = "N" }),
  },
}
function UserTable:get_partition_key(record) return record.project_id end
function UserTable:get_sort_key(record) return record.company end
function UserTable:normalize_record(record)
  if record.email then record.email = record.email:lower() end
  return record
end

local users = UserTable{ client = client, wait_delay_ms = 100 }
print("creating table " .. users:get_table_name() .. " at " .. client.endpoint)
users:create_table()
users:wait_until_exists()

-- 2. One record at a time. upsert_record returns the stored item, stamped
--    with dt_created (kept on later writes) and dt_modified.
local john = users:upsert_record{ project_id = "my_project", company = "IBM", email = "John@Example.com",
                                  name = "John", age = 34 }
print(("upserted %s/%s email=%s dt_created=%s"):format(john.pk, john.sk, john.email, john.dt_created))
users:upsert_record{ project_id = "my_project", company = "Cisco", email = "mike@example.com", name = "Mike", age = 41 }
users:upsert_record{ project_id = "other", company = "Acme", email = "ann@example.com", name = "John", age = 29 }

local got = users:get_record{ project_id = "my_project", company = "IBM" }
print("get_record: " .. got.name .. ", age " .. got.age)
print("missing record gives " .. tostring(users:get_record{ project_id = "my_project", company = "Nope" }))

-- 2b. Every value type, and what comes back: integers and floats stay Lua
--     numbers, 38-digit decimals stay exact, sets/binary/NULL keep their types.
local ada = users:upsert_record{
  project_id = "types", company = "every",
  name = "Ada", age = 36, score = 99.5,
  balance = dynamo.number("12345678901234567890.123456789012345678"),
  active = true, nickname = dynamo.NULL, avatar = dynamo.binary("\137PNG\r\n\26\n"),
  tags = dynamo.set{ "admin", "math" }, lucky = dynamo.set{ 7, 13 },
  address = { city = "London", geo = { 51.5, -0.12 } }, history = { 1815, 1843 },
  notes = dynamo.list{}, settings = dynamo.map{},
}
local stored = users:get_record{ project_id = "types", company = "every" }
print(("every type: age=%d (%s) score=%s balance=%s nickname=%s avatar=%d bytes tags=%s lucky has 13: %s geo[2]=%s")
  :format(stored.age, math.type(stored.age), stored.score, tostring(stored.balance), tostring(stored.nickname),
          #stored.avatar, tostring(stored.tags), tostring(stored.lucky:has(13)), stored.address.geo[2]))
assert(dynamo.core.encode_item(stored) == dynamo.core.encode_item(ada), "a read item writes back unchanged")
users:delete_record{ project_id = "types", company = "every" }

-- 3. A query on the GSI: every John aged 30 or more, oldest first.
for r in users:query{ index = "gsi_name_age", partition_key = "John", sort_key = 30, sort_key_operator = ">=",
                      scan_index_forward = false } do
  print(("  John on the GSI: %s/%s age %d"):format(r.pk, r.sk, r.age))
end

-- 4. Batch upsert of 10,000 records, streamed from a generator: BatchWriteItem
--    25 per request, several requests in flight, unprocessed items retried.
local BulkTable = dynamo.DynamoTable:extend{ table = users:get_table_name() }
local bulk = BulkTable{ client = client }
local t0 = os.clock()
local i = 0
bulk:batch_upsert_records(function()
  i = i + 1
  if i > 10000 then return nil end
  return { pk = "bulk#" .. (i % 20), sk = string.format("%05d", i), n = i, even = i % 2 == 0,
           tags = dynamo.set{ "t" .. (i % 3) } }
end, { read_existing = false })
print(("batch upsert of 10,000 records: %.2f s of CPU"):format(os.clock() - t0))

-- batch_get answers for every input record, in input order, found or not
local dt, found = bulk:batch_get({ { pk = "bulk#1", sk = "00001" }, { pk = "bulk#1", sk = "99999" } })
print(("batch_get: record 1 found=%s n=%s, record 2 found=%s"):format(tostring(found[1]),
  tostring(dt:get_record(1).n), tostring(found[2])))

-- 5. A filtered scan (values come from `data` by name), with a limit that
--    counts returned records.
local count = 0
for _ in bulk:scan{ filter_expression = C("n", "<=", "max_n") & C("even"), data = { max_n = 100, even = true } } do
  count = count + 1
end
print("scan: even records with n <= 100: " .. count)
local first = {}
for r in bulk:scan{ filter_expression = C("n", ">", "min_n"), data = { min_n = 9990 }, limit = 3 } do
  first[#first + 1] = r.n
end
print("scan with limit 3: " .. #first .. " records")

-- 6. A conditional upsert that fails cleanly: a DynamoTableError with the AWS code.
local ok, err = pcall(users.upsert_record, users,
  { project_id = "my_project", company = "IBM", email = "john@example.com", name = "John", age = 35 },
  { condition_expression = C("age", ">", "min_age"), extra_data = { min_age = 40 } })
print(("conditional upsert: ok=%s code=%s"):format(tostring(ok), tostring(err and err.code)))
print("age is still " .. users:get_record{ project_id = "my_project", company = "IBM" }.age)

-- 7. clear_table: only what matches (a filter without a partition key
--    deletes only the matching items), then everything.
local removed = bulk:clear_table{ partition_key_prefix = "bulk#" }
print("clear_table{partition_key_prefix = 'bulk#'} deleted " .. removed .. " items")
local left = 0
for _ in users:scan() do left = left + 1 end
print("items left: " .. left)
users:clear_table()
users:delete_table()
print("done")
