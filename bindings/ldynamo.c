/* luaopen_dynamo_core: the entry point of the C module, plus the few process
 * helpers (clock, sleep, pid) that plain Lua lacks. */
#include "ldynamo.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

/* core.now_ms() -> milliseconds since the epoch (wall clock, for signing). */
static int l_now_ms(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

/* core.monotonic_ms() -> milliseconds of a clock that never jumps (for waits). */
static int l_monotonic_ms(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

/* core.sleep_ms(ms): blocks the thread; hosts with an event loop pass their own sleep. */
static int l_sleep_ms(lua_State *L) {
    lua_Number ms = luaL_checknumber(L, 1);
    struct timespec ts;
    if (ms <= 0) return 0;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    return 0;
}

/* core.cpu_seconds() -> user + system CPU time of this process (benchmarks). */
static int l_cpu_seconds(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int l_getpid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static const luaL_Reg s_process_funcs[] = {
    {"now_ms", l_now_ms},   {"monotonic_ms", l_monotonic_ms}, {"sleep_ms", l_sleep_ms},
    {"cpu_seconds", l_cpu_seconds}, {"getpid", l_getpid},
    {NULL, NULL},
};

/* lua_Alloc and dyn_alloc_fn have the same shape, so the core can use the
 * state's allocator directly. The function and its ud are copied, never L:
 * an object made inside a coroutine must not keep that thread alive. */
void ldynamo_allocator(lua_State *L, struct dyn_allocator *out) {
    void *ud;
    out->fn = lua_getallocf(L, &ud);
    out->ud = ud;
}

LUALIB_API int luaopen_dynamo_core(lua_State *L);

LUALIB_API int luaopen_dynamo_core(lua_State *L) {
    luaL_newlib(L, s_process_funcs);
    ldynamo_open_codec(L);
    ldynamo_open_sigv4(L);
    ldynamo_open_client(L);
    ldynamo_open_expr(L);
    ldynamo_open_batch(L);
    ldynamo_open_pager(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
