/* dynamo.core: the sigv4 area (filled in by its owner). */
#include "ldynamo.h"

void ldynamo_open_sigv4(lua_State *L) { (void)L; }
