/*
 * dynamo/batch.h - BatchWriteItem and BatchGetItem as one sans-IO operation
 * (a struct dyn_op, see dynamo/op.h) over many calls.
 *
 *   struct dyn_batch_options o;
 *   dyn_batch_options_default(&o, DYN_BATCH_WRITE);
 *   o.table = DYN_SLICE_LIT("users"); o.pk = DYN_SLICE_LIT("pk"); o.sk = DYN_SLICE_LIT("sk");
 *   dyn_batch_new(cfg, &o, &b);
 *   dyn_batch_put(b, id, item_json);   id from dynamo/key.h; slot 0, 1, 2 ... in the order added
 *   dyn_batch_delete(b, id, key_json);
 *   ... run dyn_batch_op(b) with a driver (dyn_http_drive, or a host loop) ...
 *   for each slot k: dyn_batch_slot(b, k, &info): done, or not done with its cause
 *   dyn_batch_free(b);
 *
 * Entries are added before the op first runs. A key added twice is one
 * entry: for writes the last payload wins (the earlier slots share the
 * entry's fate), for reads the key is read once and every slot of it gets
 * the item. Requests hold at most 25 writes or 100 keys and at most
 * DYN_BATCH_MAX_REQUEST_BYTES; an item whose DynamoDB size is over 400 KB is
 * refused when it is added.
 *
 * Retries are the batch's, one policy for everything: the calls it makes try
 * once, and each entry has opts.max_attempts attempts in all, whether its
 * request failed (throttled, 5xx, timed out, broken) or the server handed it
 * back unprocessed. A failed request's entries are retried after the backoff
 * of dynamo/retry.h, and each such retry takes from the client's retry quota
 * (cfg->bucket); unprocessed entries go back into the next request that has
 * room while the others are still in flight, with the same backoff and no
 * quota cost. Entries waiting to be retried go out before entries never sent.
 *
 * When an entry has used its last attempt on a retryable failure (or the
 * quota is empty), or a request fails in a way no retry can mend (an unknown
 * table, bad credentials), the batch stops: nothing new is sent, the calls in
 * flight are awaited, and every entry not done is reported with its cause.
 * A ValidationException for a request of several entries sends them again one
 * per request, so an error that is about one record stops that record only.
 *
 * An entry whose request was sent but whose answer was lost (a broken
 * connection, a timeout, a 5xx, a bad checksum) may have been written:
 * dyn_batch_slot says so (`uncertain`).
 */
#ifndef DYNAMO_BATCH_H
#define DYNAMO_BATCH_H

#include "dynamo/op.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DYN_BATCH_MAX_WRITES 25
#define DYN_BATCH_MAX_KEYS 100
#define DYN_BATCH_MAX_REQUEST_BYTES (16u * 1024u * 1024u)
/* DynamoDB's item size limit, in its own units (names plus values; 1 KB = 1024 bytes). */
#define DYN_BATCH_MAX_ITEM_SIZE (400u * 1024u)

enum dyn_batch_kind {
    DYN_BATCH_WRITE = 1, /* BatchWriteItem: puts and deletes */
    DYN_BATCH_GET = 2    /* BatchGetItem */
};

struct dyn_batch_options {
    int kind;            /* enum dyn_batch_kind */
    dyn_slice table;     /* table name (copied) */
    dyn_slice pk, sk;    /* key attribute names (copied); sk empty: no sort key */
    int max_attempts;    /* per entry, >= 1; default: the config's retry.max_attempts */
    int consistent_read; /* reads: ConsistentRead */
    size_t per_request;  /* entries per request, 1..25 (writes) or 1..100 (reads); default the maximum */
};

void dyn_batch_options_default(struct dyn_batch_options *opts, int kind);

struct dyn_batch;

/*
 * Creates a batch. cfg is borrowed and must outlive the batch (see
 * dynamo/call.h). Returns DYN_OK, DYN_EINVAL (bad options), DYN_ENOMEM.
 */
int dyn_batch_new(const struct dyn_call_config *cfg, const struct dyn_batch_options *opts, struct dyn_batch **out);
/* Frees the batch and every call it made (NULL is fine). */
void dyn_batch_free(struct dyn_batch *b);

/*
 * Adds a slot: a put of item_json (an AttributeValue map, trusted to be valid
 * JSON), a delete of key_json, or a read of key_json, identified by `id`
 * (dyn_key_id of its key; trusted to match the JSON). Returns DYN_OK,
 * DYN_ERANGE (an item over DYN_BATCH_MAX_ITEM_SIZE; *size, when not NULL,
 * receives its size), DYN_EINVAL (the wrong kind for this batch, or the batch
 * already runs), DYN_ENOMEM. A refused slot is not added.
 */
int dyn_batch_put(struct dyn_batch *b, dyn_slice id, dyn_slice item_json, size_t *size);
int dyn_batch_delete(struct dyn_batch *b, dyn_slice id, dyn_slice key_json);
int dyn_batch_get(struct dyn_batch *b, dyn_slice id, dyn_slice key_json);

/* DYN_BATCH_WRITE or DYN_BATCH_GET. */
int dyn_batch_kind(const struct dyn_batch *b);

/* Slots added so far. */
size_t dyn_batch_slots(const struct dyn_batch *b);

/* The op a driver runs. Borrowed from the batch. */
struct dyn_op *dyn_batch_op(struct dyn_batch *b);

/* Replaces the random source of the backoff (cfg->random by default). */
void dyn_batch_set_random(struct dyn_batch *b, struct dyn_random random);

/* After DONE: DYN_OK when every slot is done, else the status of the cause (dyn_batch_cause). */
int dyn_batch_status(const struct dyn_batch *b);
/* The error that ended the batch early (the last underlying one), or NULL when every slot is done. */
const struct dyn_error *dyn_batch_cause(const struct dyn_batch *b);

struct dyn_batch_slot_info {
    int done;                     /* the server confirmed it */
    int uncertain;                /* not done, but an attempt's answer was lost: it may have been written */
    int found;                    /* reads: an item came back */
    dyn_slice item;               /* reads: the item's AttributeValue JSON (borrowed from the batch) */
    const struct dyn_error *cause; /* not done: why (never NULL then) */
    int attempts;                 /* attempts its entry used */
};

/* Fills info for slot k (0-based). Returns DYN_OK or DYN_EINVAL (no such slot). */
int dyn_batch_slot(const struct dyn_batch *b, size_t k, struct dyn_batch_slot_info *info);

/* Counters for stats: requests sent, requests that failed, entries re-sent after coming back unprocessed. */
struct dyn_batch_stats {
    uint64_t requests, failed_requests, unprocessed, retried_entries;
};
void dyn_batch_get_stats(const struct dyn_batch *b, struct dyn_batch_stats *out);

/*
 * DynamoDB's size of an item in AttributeValue JSON (names plus values, as
 * research/dynamodb_wire.md section 4 counts them). Returns DYN_OK, DYN_EJSON,
 * DYN_EINVAL (not an AttributeValue map), DYN_ENOMEM.
 */
int dyn_batch_item_size(dyn_slice item_json, const struct dyn_allocator *alloc, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
