/*
 * dynamo/op.h - an operation made of many calls: the interface between the
 * multi-request state machines (dynamo/batch.h) and the drivers that run
 * them (the libcurl runner in dynamo/http.h, the Lua host loop).
 *
 * A driver keeps up to `concurrency` calls in flight:
 *
 *   for (;;) {
 *       op->next(op, now_unix_ms, now_mono_ms, &step);
 *       switch (step.kind) {
 *       case DYN_OP_SEND: start step.call (dyn_call_next gives its request); if a
 *                         slot is still free, ask again; the call is fed as
 *                         usual and, once dyn_call_is_done, handed back with
 *                         op->feed(op, step.call, now_mono_ms)
 *       case DYN_OP_WAIT: nothing can start for step.wait_ms: sleep that long, or
 *                         until a call in flight finishes, whichever is first
 *       case DYN_OP_IDLE: nothing can start until a call in flight finishes
 *       case DYN_OP_DONE: every call has been fed back; read the op's result
 *       }
 *   }
 *
 * The driver asks for SEND only when it has a free slot, so an op never
 * creates more calls than can go out. Calls belong to the op: the driver
 * never frees one, and a call handed back is not used by the driver again.
 * Times: now_unix_ms signs requests, now_mono_ms (a monotonic clock in ms,
 * any origin) times backoff, so a wall-clock jump cannot stall an op.
 */
#ifndef DYNAMO_OP_H
#define DYNAMO_OP_H

#include "dynamo/call.h"

#ifdef __cplusplus
extern "C" {
#endif

enum dyn_op_kind {
    DYN_OP_SEND = 1,
    DYN_OP_WAIT = 2,
    DYN_OP_IDLE = 3,
    DYN_OP_DONE = 4
};

struct dyn_op_step {
    int kind;              /* enum dyn_op_kind */
    uint32_t wait_ms;      /* DYN_OP_WAIT */
    struct dyn_call *call; /* DYN_OP_SEND: a new call, not yet advanced */
};

struct dyn_op {
    /* Returns DYN_OK or DYN_ENOMEM (the op can be asked again or aborted). */
    int (*next)(struct dyn_op *op, int64_t now_unix_ms, int64_t now_mono_ms, struct dyn_op_step *step);
    /* Takes back a finished call. Returns DYN_OK, DYN_EINVAL (not one of the
       op's calls in flight, or not done), DYN_ENOMEM (the call stays in
       flight, so feeding it again later is allowed). */
    int (*feed)(struct dyn_op *op, struct dyn_call *call, int64_t now_mono_ms);
    /* Ends the op at once: calls in flight are dropped (their work counts as
       not done, cause `status`), nothing more is sent. Cannot fail. */
    void (*abort)(struct dyn_op *op, int status, const char *message);
};

#ifdef __cplusplus
}
#endif
#endif
