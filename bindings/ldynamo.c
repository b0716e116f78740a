/* luaopen_dynamo_core: the entry point of the C module. */
#include "ldynamo.h"

static void *s_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    lua_State *L = ud;
    void *aud;
    lua_Alloc f = lua_getallocf(L, &aud);
    return f(aud, ptr, osize, nsize);
}

void ldynamo_allocator(lua_State *L, struct dyn_allocator *out) {
    out->fn = s_lua_alloc;
    out->ud = L;
}

LUALIB_API int luaopen_dynamo_core(lua_State *L);

LUALIB_API int luaopen_dynamo_core(lua_State *L) {
    lua_newtable(L);
    ldynamo_open_codec(L);
    ldynamo_open_sigv4(L);
    ldynamo_open_client(L);
    ldynamo_open_expr(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
