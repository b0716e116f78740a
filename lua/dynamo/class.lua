--- A minimal class helper shared by the library's classes.
-- Classes are plain metatables. `Base:extend(def)` makes a subclass whose
-- fields come from `def`; calling a class (`Cls{...}` or `Cls.new(...)`)
-- makes an instance and runs `init`. Metamethods are copied down explicitly
-- because Lua looks them up with a raw access (manual 2.4).
-- @module dynamo.class
local class = {}

local METAMETHODS = {
  "__tostring", "__eq", "__lt", "__le", "__len", "__concat", "__band", "__bor",
  "__bnot", "__close", "__call_instance", "__pairs",
}

local function new_instance(cls, ...)
  local self = setmetatable({}, cls)
  local init = cls.init
  if init then
    local replaced = init(self, ...)
    if replaced ~= nil then return replaced end
  end
  return self
end

local ClassMeta = {}
ClassMeta.__call = function(cls, ...) return new_instance(cls, ...) end

--- Creates a root class named `name`.
-- @tparam string name shown by tostring(class)
-- @tparam[opt] table def initial fields and methods
function class.new(name, def)
  local cls = {}
  for k, v in pairs(def or {}) do cls[k] = v end
  cls.__index = cls
  cls.__name = name
  cls.super = nil
  cls.new = function(...) return new_instance(cls, ...) end
  cls.extend = class.extend
  cls.is_instance = function(v) return class.is_instance(v, cls) end
  return setmetatable(cls, {
    __call = ClassMeta.__call,
    __tostring = function() return "class " .. name end,
  })
end

--- Makes a subclass of `base` with the fields of `def`.
function class.extend(base, def)
  local cls = {}
  for k, v in pairs(def or {}) do cls[k] = v end
  cls.__index = cls
  cls.super = base
  cls.__name = rawget(cls, "__name") or base.__name
  for _, mm in ipairs(METAMETHODS) do
    if rawget(cls, mm) == nil and base[mm] ~= nil then cls[mm] = base[mm] end
  end
  cls.new = function(...) return new_instance(cls, ...) end
  cls.is_instance = function(v) return class.is_instance(v, cls) end
  return setmetatable(cls, {
    __index = base,
    __call = ClassMeta.__call,
    __tostring = function() return "class " .. tostring(cls.__name) end,
  })
end

--- True when `v` is an instance of `cls` or of one of its subclasses.
function class.is_instance(v, cls)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  while mt do
    if mt == cls then return true end
    mt = rawget(mt, "super")
  end
  return false
end

return class
