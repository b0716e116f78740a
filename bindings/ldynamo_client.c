/* dynamo.core: the client area (filled in by its owner). */
#include "ldynamo.h"

void ldynamo_open_client(lua_State *L) { (void)L; }
