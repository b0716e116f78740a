/* dynamo.core: the expr area (filled in by its owner). */
#include "ldynamo.h"

void ldynamo_open_expr(lua_State *L) { (void)L; }
