#!/usr/bin/env node
// A fault-injecting HTTP proxy for the specs and benchmarks: it stands in
// front of a local DynamoDB-compatible server and, for a chosen share of the
// requests, answers the way a flaky DynamoDB or a flaky network would.
//
//   node spec/support/fault_proxy.js --upstream http://127.0.0.1:PORT
//        [--port 0] [--seed N] [--rate R] [--faults KIND,KIND...] [--delay-ms D] [--watch-pid PID]
//
// Prints "listening PORT" on stdout once it accepts connections. Node's
// standard library only.
//
// Fault kinds (a faulted request gets one, picked uniformly among those enabled):
//   500          answers 500 InternalFailure without forwarding
//   503          answers 503 ServiceUnavailable without forwarding
//   throttle     answers 400 ProvisionedThroughputExceededException (one in
//                four: ThrottlingException) without forwarding
//   drop_before  closes the client's connection without forwarding
//   drop_after   forwards, waits for the answer, then closes the client's
//                connection without answering (the write happened)
//   half_body    forwards, sends the headers (real Content-Length) and half the
//                body, then closes the connection
//   bad_crc      forwards and answers with the real body but a wrong x-amz-crc32
//   partial      BatchWriteItem / BatchGetItem only: forwards the request
//                without a random non-empty proper subset of its entries and
//                reports those as UnprocessedItems / UnprocessedKeys. Other
//                requests, and batches of one entry, pass unfaulted.
// Answers that are not faulted are the upstream's, byte for byte (status, body,
// x-amz-crc32, x-amzn-requestid; only the hop-by-hop headers are the proxy's).
//
// Decisions are deterministic: the n-th request after the seed was set draws
// from a generator seeded by (seed, n) alone, so the same seed and the same
// request sequence give the same faults, whatever the bodies hold.
//
// Control endpoint (never faulted or delayed):
//   GET  /__proxy/stats          counters (per fault kind and totals) and the config;
//                                ?log=1 adds the decisions in order ("pass", a kind,
//                                "partial_pass"), at most the last 100000
//   POST /__proxy/config         JSON body { rate, faults ("a,b" or [..]), delay_ms, seed };
//                                a given seed restarts the request count; answers the config
//   POST /__proxy/reset          zeroes the counters, the log and the request count
'use strict'
const http = require('http')

const KINDS = ['500', '503', 'throttle', 'drop_before', 'drop_after', 'half_body', 'bad_crc', 'partial']
const LOG_MAX = 100000

// ---- command line

const args = process.argv.slice(2)
function opt(name, def) {
  const i = args.indexOf('--' + name)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def
}

function parseFaults(v) {
  if (v === undefined || v === null) return KINDS.slice()
  const list = Array.isArray(v) ? v.map(String) : String(v).split(',')
  const wanted = new Set()
  for (const raw of list) {
    const k = raw.trim()
    if (k === '') continue
    if (k === 'all') { for (const x of KINDS) wanted.add(x); continue }
    if (!KINDS.includes(k)) throw new Error('unknown fault kind ' + JSON.stringify(k) + ' (kinds: ' + KINDS.join(',') + ')')
    wanted.add(k)
  }
  return KINDS.filter((k) => wanted.has(k)) // canonical order, so the list's order never changes a pick
}

function checkNumber(name, v, lo, hi) {
  const n = Number(v)
  if (!Number.isFinite(n) || n < lo || n > hi) throw new Error(name + ' must be a number in [' + lo + ', ' + hi + '], got ' + v)
  return n
}

const upstreamText = opt('upstream', null)
if (!upstreamText) {
  process.stderr.write('fault_proxy: --upstream http://HOST:PORT is required\n')
  process.exit(2)
}
const upstream = new URL(upstreamText)
const config = {
  seed: 1, rate: 0, faults: KINDS.slice(), delay_ms: 0,
}
try {
  config.seed = checkNumber('seed', opt('seed', '1'), 0, 0xFFFFFFFF) >>> 0
  config.rate = checkNumber('rate', opt('rate', '0'), 0, 1)
  config.faults = parseFaults(opt('faults', undefined))
  config.delay_ms = checkNumber('delay-ms', opt('delay-ms', '0'), 0, 600000)
} catch (e) {
  process.stderr.write('fault_proxy: ' + e.message + '\n')
  process.exit(2)
}
const watchPid = Number(opt('watch-pid', '0'))
const listenPort = Number(opt('port', '0'))

// ---- deterministic randomness: mulberry32, one stream per request

function mix32(x) { // a 32-bit finaliser (murmur3's), so nearby seeds give unrelated streams
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}
function rngFor(seed, n) {
  let a = mix32((seed ^ Math.imul(n + 1, 0x9e3779b9)) >>> 0)
  return function mulberry32() {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---- CRC-32 (IEEE, as x-amz-crc32 carries it: unsigned decimal)

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[i] = c >>> 0
  }
  return t
})()
function crc32(buf) {
  let c = 0xffffffff
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

// ---- counters

let counter = 0 // requests since the seed was set (the per-request stream index)
let stats, log
function resetStats() {
  stats = { requests: 0, passed: 0, faulted: 0, partial_passed: 0, partial_removed: 0,
            upstream_errors: 0, upstream_retries: 0, control: 0, by_kind: {} }
  for (const k of KINDS) stats.by_kind[k] = 0
  log = []
}
resetStats()
function note(decision) {
  if (log.length >= LOG_MAX) log.splice(0, log.length - LOG_MAX + 1)
  log.push(decision)
}

// ---- upstream

const agent = new http.Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 128, timeout: 4000, scheduling: 'lifo' })
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'te', 'upgrade', 'trailer'])

// Sends the request upstream; calls back with (err, {status, rawHeaders, body}).
// A reused keep-alive socket the server closed meanwhile gets one more try
// (nothing reached the server on it).
function forward(req, body, cb, retried) {
  const headers = {}
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && k !== 'expect') headers[k] = v // the body is all here
  headers['content-length'] = String(body.length)
  const up = http.request({
    host: upstream.hostname, port: upstream.port || 80, method: req.method, path: req.url, headers, agent,
  }, (res) => {
    const chunks = []
    res.on('data', (c) => chunks.push(c))
    res.on('end', () => cb(null, { status: res.statusCode, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }))
    res.on('error', (e) => cb(e))
  })
  up.on('error', (e) => {
    if (!retried && up.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
      stats.upstream_retries++
      forward(req, body, cb, true)
    } else {
      cb(e)
    }
  })
  up.end(body)
}

// The upstream's headers without the hop-by-hop ones, with `set` replacing
// (or adding) headers by lower-case name; a flat [name, value, ...] array.
function passHeaders(rawHeaders, set) {
  const out = []
  const done = new Set()
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i], lower = name.toLowerCase()
    if (HOP.has(lower)) continue
    if (set && lower in set) {
      if (!done.has(lower)) out.push(name, set[lower])
      done.add(lower)
    } else {
      out.push(name, rawHeaders[i + 1])
    }
  }
  if (set) for (const k of Object.keys(set)) if (!done.has(k)) out.push(k, set[k])
  return out
}

function answerUpstream(res, r, set) {
  res.sendDate = false
  const extra = Object.assign({ 'content-length': String(r.body.length) }, set || {})
  res.writeHead(r.status, passHeaders(r.rawHeaders, extra))
  res.end(r.body)
}

function upstreamFailed(res, err) {
  stats.upstream_errors++
  answerError(res, 502, 'FaultProxy#UpstreamError', 'fault proxy: upstream failed: ' + err.message, 'upstream')
}

// ---- faults

function requestId(n) { return ('FAULTPROXY' + String(n).padStart(12, '0') + 'X'.repeat(30)).slice(0, 52) }

function answerError(res, status, type, message, n) {
  const body = Buffer.from(JSON.stringify({ __type: type, message }))
  res.writeHead(status, {
    'x-amzn-RequestId': requestId(n),
    'x-amz-crc32': String(crc32(body)),
    'Content-Type': 'application/x-amz-json-1.0',
    'Content-Length': String(body.length),
  })
  res.end(body)
}

function dropClient(req) {
  req.socket.destroy()
}

// The entries of a batch request: [{table, index}] over RequestItems, and
// where they live (the array per table).
function batchEntries(doc, isGet) {
  const out = []
  const items = doc && doc.RequestItems
  if (!items || typeof items !== 'object') return out
  for (const table of Object.keys(items)) {
    const list = isGet ? items[table] && items[table].Keys : items[table]
    if (!Array.isArray(list)) continue
    for (let i = 0; i < list.length; i++) out.push({ table, index: i })
  }
  return out
}

// Removes a random non-empty proper subset of the entries; returns
// { body, removed: {table: [entry...]}, count } or null when the request
// cannot be split (not JSON, fewer than two entries).
function splitBatch(body, isGet, rnd) {
  let doc
  try { doc = JSON.parse(body.toString('utf8')) } catch (e) { return null }
  const entries = batchEntries(doc, isGet)
  if (entries.length < 2) return null
  const k = 1 + Math.floor(rnd() * (entries.length - 1)) // 1 .. total-1
  for (let i = 0; i < k; i++) { // partial Fisher-Yates: the first k are the removed ones
    const j = i + Math.floor(rnd() * (entries.length - i))
    const t = entries[i]; entries[i] = entries[j]; entries[j] = t
  }
  const drop = {} // table -> Set of indexes
  for (let i = 0; i < k; i++) (drop[entries[i].table] = drop[entries[i].table] || new Set()).add(entries[i].index)
  const removed = {}
  for (const table of Object.keys(drop)) {
    const list = isGet ? doc.RequestItems[table].Keys : doc.RequestItems[table]
    const keep = [], gone = []
    list.forEach((e, i) => (drop[table].has(i) ? gone : keep).push(e))
    // a get keeps its table's other members (ConsistentRead, ProjectionExpression ...) for the answer
    removed[table] = { gone, spec: isGet ? doc.RequestItems[table] : null }
    if (keep.length === 0) delete doc.RequestItems[table] // DynamoDB refuses an empty list
    else if (isGet) doc.RequestItems[table] = Object.assign({}, doc.RequestItems[table], { Keys: keep })
    else doc.RequestItems[table] = keep
  }
  return { body: Buffer.from(JSON.stringify(doc)), removed, count: k }
}

// Adds the removed entries to an upstream success; returns the new body.
function mergeUnprocessed(body, removed, isGet) {
  const doc = JSON.parse(body.toString('utf8'))
  const field = isGet ? 'UnprocessedKeys' : 'UnprocessedItems'
  if (!doc[field] || typeof doc[field] !== 'object') doc[field] = {}
  for (const table of Object.keys(removed)) {
    const { gone, spec } = removed[table]
    if (isGet) {
      let entry = doc[field][table]
      if (!entry) {
        entry = {}
        for (const k of Object.keys(spec)) if (k !== 'Keys') entry[k] = spec[k]
        entry.Keys = []
        doc[field][table] = entry
      }
      for (const key of gone) entry.Keys.push(key)
    } else {
      const list = doc[field][table] || (doc[field][table] = [])
      for (const e of gone) list.push(e)
    }
  }
  return Buffer.from(JSON.stringify(doc))
}

// ---- the request path

function handle(req, res, body) {
  const n = counter++
  stats.requests++
  const rnd = rngFor(config.seed, n)
  const hit = rnd() < config.rate
  const kinds = config.faults
  const pick = rnd() // always drawn, so the stream's shape does not depend on the config
  let kind = hit && kinds.length ? kinds[Math.floor(pick * kinds.length)] : null

  let target = String(req.headers['x-amz-target'] || '')
  const op = target.slice(target.indexOf('.') + 1)
  const isBatch = op === 'BatchWriteItem' || op === 'BatchGetItem'
  let split = null
  if (kind === 'partial') {
    split = isBatch ? splitBatch(body, op === 'BatchGetItem', rnd) : null
    if (!split) {
      stats.partial_passed++
      kind = null
      note('partial_pass')
    } else {
      note('partial')
    }
  } else {
    note(kind || 'pass')
  }
  if (kind) { stats.faulted++; stats.by_kind[kind]++ } else { stats.passed++ }

  switch (kind) {
    case '500':
      return answerError(res, 500, 'com.amazon.coral.service#InternalFailure',
        'The request processing has failed because of an unknown error, exception or failure. (fault proxy)', n)
    case '503':
      return answerError(res, 503, 'com.amazon.coral.service#ServiceUnavailable',
        'The service is currently unavailable or busy. (fault proxy)', n)
    case 'throttle':
      if (rnd() < 0.25) {
        return answerError(res, 400, 'com.amazon.coral.availability#ThrottlingException',
          'Rate of requests exceeds the allowed throughput. (fault proxy)', n)
      }
      return answerError(res, 400, 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException',
        'The level of configured provisioned throughput for the table was exceeded. (fault proxy)', n)
    case 'drop_before':
      return dropClient(req)
    case 'drop_after':
      return forward(req, body, (err) => dropClient(req))
    case 'half_body':
      return forward(req, body, (err, r) => {
        if (err) return upstreamFailed(res, err)
        res.sendDate = false
        res.writeHead(r.status, passHeaders(r.rawHeaders, { 'content-length': String(r.body.length) }))
        const half = r.body.subarray(0, Math.floor(r.body.length / 2))
        if (half.length > 0) return res.write(half, () => dropClient(req))
        res.flushHeaders() // nothing to write: close after the headers are out
        req.socket.end()
      })
    case 'bad_crc':
      return forward(req, body, (err, r) => {
        if (err) return upstreamFailed(res, err)
        const wrong = ((crc32(r.body) + 1 + Math.floor(rnd() * 0xfffffffe)) % 0x100000000) >>> 0
        answerUpstream(res, r, { 'x-amz-crc32': String(wrong) })
      })
    case 'partial': {
      stats.partial_removed += split.count
      const isGet = op === 'BatchGetItem'
      return forward(req, split.body, (err, r) => {
        if (err) return upstreamFailed(res, err)
        if (r.status !== 200) return answerUpstream(res, r) // the smaller request's own error
        let merged
        try { merged = mergeUnprocessed(r.body, split.removed, isGet) } catch (e) { return upstreamFailed(res, e) }
        answerUpstream(res, { status: r.status, rawHeaders: r.rawHeaders, body: merged },
          { 'x-amz-crc32': String(crc32(merged)) })
      })
    }
    default:
      return forward(req, body, (err, r) => {
        if (err) return upstreamFailed(res, err)
        answerUpstream(res, r)
      })
  }
}

// ---- control

function control(req, res, body) {
  stats.control++
  const send = (status, obj) => {
    const b = Buffer.from(JSON.stringify(obj))
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length) })
    res.end(b)
  }
  const url = new URL(req.url, 'http://proxy')
  if (req.method === 'GET' && url.pathname === '/__proxy/stats') {
    const out = Object.assign({}, stats, { by_kind: Object.assign({}, stats.by_kind), config: publicConfig() })
    if (url.searchParams.get('log')) out.log = log.slice()
    return send(200, out)
  }
  if (req.method === 'POST' && url.pathname === '/__proxy/config') {
    let doc
    try {
      doc = body.length ? JSON.parse(body.toString('utf8')) : {}
      const next = Object.assign({}, config)
      if (doc.rate !== undefined) next.rate = checkNumber('rate', doc.rate, 0, 1)
      if (doc.faults !== undefined) next.faults = parseFaults(doc.faults)
      if (doc.delay_ms !== undefined) next.delay_ms = checkNumber('delay_ms', doc.delay_ms, 0, 600000)
      if (doc.seed !== undefined) next.seed = checkNumber('seed', doc.seed, 0, 0xFFFFFFFF) >>> 0
      Object.assign(config, next)
      if (doc.seed !== undefined) counter = 0
    } catch (e) {
      return send(400, { error: e.message })
    }
    return send(200, publicConfig())
  }
  if (req.method === 'POST' && url.pathname === '/__proxy/reset') {
    resetStats()
    counter = 0
    return send(200, publicConfig())
  }
  return send(404, { error: 'unknown control request ' + req.method + ' ' + url.pathname })
}

function publicConfig() {
  return { seed: config.seed, rate: config.rate, faults: config.faults.join(','), delay_ms: config.delay_ms,
           upstream: upstream.origin }
}

// ---- server

const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
    if (req.url.startsWith('/__proxy/')) return control(req, res, body)
    if (config.delay_ms > 0) setTimeout(handle, config.delay_ms, req, res, body)
    else handle(req, res, body)
  })
  req.on('error', () => {})
})
server.keepAliveTimeout = 120000 // keep the client's connections open as long as it wants them
server.headersTimeout = 130000
server.requestTimeout = 0
server.maxHeadersCount = 0
server.on('clientError', (err, socket) => { socket.destroy() })
server.listen(listenPort, '127.0.0.1', () => {
  process.stdout.write('listening ' + server.address().port + '\n')
})
server.on('error', (err) => {
  process.stderr.write('fault_proxy: ' + err.message + '\n')
  process.exit(1)
})
if (watchPid > 0) {
  setInterval(() => {
    try { process.kill(watchPid, 0) } catch (e) { process.exit(0) }
  }, 500).unref()
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
