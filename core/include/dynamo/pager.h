/*
 * dynamo/pager.h - Query, Scan and parallel Scan as a state machine of
 * pages: page requests, limits and a resumable position, with no I/O.
 *
 * A pager holds S streams. A stream is a chain of page requests (Query or
 * Scan), each carrying the previous page's LastEvaluatedKey as its
 * ExclusiveStartKey: one stream per query of a query_many, one per segment
 * of a parallel scan, or one for a plain query or scan. The pager is a
 * struct dyn_op (dynamo/op.h), so any driver keeps several page requests in
 * flight; the consumer takes pages between driving rounds:
 *
 *   dyn_pager_new(cfg, &p);
 *   dyn_pager_add(p, &stream);              once per stream, or dyn_pager_add_segments
 *   dyn_pager_set_limit(p, 100);            optional: items of all streams together
 *   dyn_pager_resume(p, saved_position);    optional: continue where a run stopped
 *   for (;;) {
 *       while (dyn_pager_take(p, &page)) {
 *           if (page.status != DYN_OK) ... raise page.error: stream page.stream failed
 *           ... decode the first page.take items of page.body's "Items" ...
 *           dyn_pager_position_json(p, &pos);       what to save to resume later
 *           dyn_buf_free(&page.body);
 *       }
 *       if (dyn_pager_finished(p)) break;
 *       ... drive dyn_pager_op(p) until it says DYN_OP_DONE (one round) ...
 *   }
 *   dyn_pager_free(p);
 *
 * ---- The round contract ----
 *
 * op->next hands out DYN_OP_SEND for the lowest-numbered stream that may
 * send: one that is not finished, has no request in flight and no page
 * waiting for the consumer, and has items left under the limits (and only
 * while fewer than max_pages pages are in flight or waiting, when that is
 * set). So a stream has at most one page in flight or waiting, never both,
 * and the memory a pager holds is at most one page per stream.
 *   DYN_OP_IDLE: nothing can start until a call in flight is fed back.
 *   DYN_OP_DONE: nothing is in flight and nothing can start: every stream is
 *     finished, failed, or has a page waiting (or the max_pages window is
 *     full of waiting pages). DONE means "done for now": the driver returns
 *     so the consumer can take pages; once it has, driving again continues
 *     with the next pages. dyn_pager_finished tells the end from a pause.
 *   The pager never says DYN_OP_WAIT: a page is one request, and its call
 *   does its own retries and backoff (the config's max_attempts is the one
 *   retry policy for a page).
 *
 * ---- Pages, limits and failures ----
 *
 * A page is the successful response body, read once at feed time with the
 * JSON scanner for Count, ScannedCount and LastEvaluatedKey (kept as raw text,
 * never decoded), every member checked but the inside of "Items", which is
 * left to the consumer's decoder: the pager only finds where Items ends (from
 * the document's end when the AttributeValue form allows, see pager.c), so a
 * body cut short fails here, while an item that is not valid JSON fails when
 * the consumer reads it. Items are counted from Count, in the order pages
 * arrive. take counts the items the consumer
 * returns from a page (the first `take` of its Items): fewer than Count when
 * a limit falls inside the page (a server may ignore Limit). A stream is
 * finished after a page without LastEvaluatedKey, a page that reached its
 * own limit, or a page a limit cut short. Once the overall limit is reached
 * nothing more is sent, and a page still in flight then is dropped unread
 * (its stream's position stays before it). A page with Count 0 is not handed
 * to the consumer (there is nothing to take); its stream moves on in the
 * same round.
 *
 * A page request's body is the stream's body plus, in this order:
 *   "Limit":n              when page_size is set: min(page_size, items left);
 *                          without page_size, when a limit applies and the
 *                          body has no filter (FilterExpression, QueryFilter,
 *                          ScanFilter): the items left. With a filter and no
 *                          page_size there is none, since Limit would then
 *                          count evaluated items, not returned ones. "Items
 *                          left" is the smaller of the stream's and the
 *                          overall limit's; n is at most 2147483647;
 *   "ExclusiveStartKey":k  the previous LastEvaluatedKey, byte for byte;
 *   "Segment":i,"TotalSegments":n   for a stream of dyn_pager_add_segments.
 *
 * A failed page (its call ended with an error after its own retries, or a
 * 2xx body that is not a Query/Scan response) ends only its stream: the
 * error is handed out by dyn_pager_take in arrival order, as an entry with
 * status != DYN_OK, and the other streams go on, so a consumer raises when
 * it reaches the failed stream's entry, after the pages that came before.
 * dyn_pager_status reports the first failure. The failed stream's position
 * stays before the failed page: resuming from a position retries it.
 *
 * Pages are handed out in the order they arrived. A stream's pages always
 * come in order, since it never has two at once.
 *
 * ---- The position ----
 *
 * Per stream: done (nothing more to fetch), key (the ExclusiveStartKey of its
 * next page, raw JSON; none at the start) and count (items taken so far). It
 * describes what the consumer has taken: it moves when dyn_pager_take hands
 * out a page (or a Count 0 page arrives, which has nothing to lose), never
 * for a page still waiting. dyn_pager_position_json writes it as
 *
 *   {"streams":[{"count":0},{"key":{"pk":{"S":"a"}},"count":5},{"done":true,"count":7}]}
 *
 * one entry per stream in stream order. To continue, build a pager with the
 * same streams in the same order (same bodies and limits) and give the text
 * to dyn_pager_resume before driving. Limits are totals: the counts in the
 * position count toward them, so a resumed pager with the same limits
 * returns the rest of the items and no more. A stream cut short inside a
 * page is done, not resumable past that page.
 *
 * Ownership: the pager borrows cfg (as calls do: it must outlive the pager
 * and stay unchanged while a driver runs it) and owns its calls (a driver
 * never frees them). Not thread-safe.
 */
#ifndef DYNAMO_PAGER_H
#define DYNAMO_PAGER_H

#include "dynamo/op.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limit members are DynamoDB integers: at most this. */
#define DYN_PAGER_MAX_LIMIT 2147483647u
/* DynamoDB's largest TotalSegments. */
#define DYN_PAGER_MAX_SEGMENTS 1000000u

/* One stream, as given to dyn_pager_add. Everything is copied. */
struct dyn_pager_stream {
    dyn_slice operation; /* "Query" or "Scan" */
    dyn_slice body;      /* a JSON object without ExclusiveStartKey, Limit, Segment, TotalSegments */
    uint64_t limit;      /* items this stream returns at most; 0 = no limit */
    uint32_t page_size;  /* Limit of each request (capped by what is left); 0 = none */
    /* Where to start; all zero for the beginning (or use dyn_pager_resume): */
    dyn_slice start_key; /* raw JSON object, the first request's ExclusiveStartKey; empty = none */
    uint64_t count;      /* items taken before; counts toward limit */
    int done;            /* nonzero: the stream is finished already; nothing is sent */
};

/* A page (or a stream's failure) handed to the consumer. */
struct dyn_pager_page {
    size_t stream;          /* its stream: 0-based, in the order streams were added */
    int status;             /* DYN_OK for a page, else the stream's failure, described in error */
    struct dyn_buf body;    /* DYN_OK: the response body, now the caller's to free; else empty */
    uint64_t take;          /* return the first `take` items of the body's Items */
    uint64_t count;         /* the page's Count */
    uint64_t scanned_count; /* its ScannedCount (0 when absent) */
    int last;               /* no more pages will come for this stream */
    struct dyn_error error; /* status != DYN_OK: the failure (DYN_EJSON: the body was not a page) */
};

/* One stream's position; key is borrowed until the next dyn_pager_* call. */
struct dyn_pager_position {
    int done;
    dyn_slice key;  /* the next ExclusiveStartKey, raw JSON; empty = from the start */
    uint64_t count; /* items taken */
};

struct dyn_pager_stats {
    uint64_t requests; /* page requests handed out (calls created) */
    uint64_t pages;    /* successful pages received, empty and dropped ones included */
    uint64_t count;    /* sum of their Count */
    uint64_t scanned;  /* sum of their ScannedCount */
    uint64_t taken;    /* items handed to the consumer: the sum of take */
};

struct dyn_pager;

/*
 * Creates an empty pager over cfg (borrowed; its allocator is used). Returns
 * DYN_OK, DYN_EINVAL (cfg NULL), DYN_ENOMEM; *out is NULL on failure.
 */
int dyn_pager_new(const struct dyn_call_config *cfg, struct dyn_pager **out);
/* Frees the pager, its calls and its waiting pages (NULL is fine). */
void dyn_pager_free(struct dyn_pager *p);

/*
 * Adds a stream; its index is the number of streams added before it. Only
 * before the first op->next. Returns DYN_OK, DYN_EINVAL (pager started,
 * operation not Query or Scan, body not a JSON object or holding one of the
 * members the pager writes, or a top-level member name with an escape in
 * it; start_key not a JSON object), DYN_ENOMEM. Nothing is added on failure.
 */
int dyn_pager_add(struct dyn_pager *p, const struct dyn_pager_stream *stream);

/*
 * Parallel scan: adds total_segments streams (1..DYN_PAGER_MAX_SEGMENTS),
 * segment i getting "Segment":i,"TotalSegments":total_segments, each with
 * the stream's limit and page_size (an overall limit is usually what is
 * wanted: dyn_pager_set_limit). The body is stored once for all of them.
 * The start fields must be zero (resume a parallel scan with
 * dyn_pager_resume). Errors as dyn_pager_add, all or nothing.
 */
int dyn_pager_add_segments(struct dyn_pager *p, const struct dyn_pager_stream *stream, uint32_t total_segments);

/* Items of all streams together at most; 0 = no limit. Only before the first
 * op->next: DYN_OK or DYN_EINVAL. */
int dyn_pager_set_limit(struct dyn_pager *p, uint64_t limit);

/* At most n pages in flight or waiting at once (0 = no bound beyond one per
 * stream), for query_many over many queries. Only before the first op->next:
 * DYN_OK or DYN_EINVAL. */
int dyn_pager_set_max_pages(struct dyn_pager *p, size_t n);

/*
 * Gives each stream the position written by dyn_pager_position_json (members
 * other than "streams", "key", "count", "done" are ignored; "key":null means
 * none). Only before the first op->next, after every stream was added.
 * Returns DYN_OK, DYN_EINVAL (pager started, not such a text, or a number of
 * entries other than the number of streams), DYN_ENOMEM; nothing changes on
 * failure.
 */
int dyn_pager_resume(struct dyn_pager *p, dyn_slice position);

/* The pager as an op for a driver; valid as long as the pager. */
struct dyn_op *dyn_pager_op(struct dyn_pager *p);

/*
 * Hands out the oldest waiting page or failure: returns 1 and fills *page
 * (the body moves to the caller), or 0 when none is waiting (*page then
 * holds an empty body). Advances that stream's position. Cannot fail.
 */
int dyn_pager_take(struct dyn_pager *p, struct dyn_pager_page *page);

/*
 * 1 when nothing more will come: no page or failure waiting, nothing in
 * flight, and no stream can send (each is finished or failed, or the overall
 * limit is reached), or the op was aborted and its waiting pages are taken.
 */
int dyn_pager_finished(const struct dyn_pager *p);

/* 1 when stream i will give nothing more (as above, for one stream); 0 for
 * an index out of range. */
int dyn_pager_stream_done(const struct dyn_pager *p, size_t i);

size_t dyn_pager_stream_count(const struct dyn_pager *p);

/* Stream i's position. DYN_OK or DYN_EINVAL (no such stream). */
int dyn_pager_stream_position(const struct dyn_pager *p, size_t i, struct dyn_pager_position *out);

/*
 * Appends the whole position as JSON text (see above) to out. Returns DYN_OK
 * or DYN_ENOMEM, in which case out is truncated back to its length on entry.
 */
int dyn_pager_position_json(const struct dyn_pager *p, struct dyn_buf *out);

/*
 * DYN_OK, or the op's first failure: a stream's (also handed out by
 * dyn_pager_take) or the abort's status. dyn_pager_error describes it.
 */
int dyn_pager_status(const struct dyn_pager *p);
const struct dyn_error *dyn_pager_error(const struct dyn_pager *p);

void dyn_pager_get_stats(const struct dyn_pager *p, struct dyn_pager_stats *out);

#ifdef __cplusplus
}
#endif
#endif
