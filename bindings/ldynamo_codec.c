/* dynamo.core: the codec area (filled in by its owner). */
#include "ldynamo.h"

void ldynamo_open_codec(lua_State *L) { (void)L; }
