#!/usr/bin/env node
// Benchmark child: the official TypeScript client, @durable-streams/client (pinned in
// ts/package.json), with its IdempotentProducer. Run by run.py as
//
//   node --expose-gc ts_bench.mjs '<spec JSON>'
//
// and prints one JSON object on its last stdout line, like the Python children
// (bench_common.py documents the fields). Payloads match bench_common.message() and the
// shared 1 MiB blob file, so every implementation sends the same bytes.

import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { pathToFileURL } from "node:url"

const require = createRequire(new URL(`./ts/package.json`, import.meta.url))
const pkgFile = require.resolve(`@durable-streams/client/package.json`)
const pkg = JSON.parse(readFileSync(pkgFile, `utf8`))
const client = await import(
  pathToFileURL(join(dirname(pkgFile), pkg.exports[`.`].import.default)).href
)
const { DurableStream, IdempotentProducer, stream } = client

const JSON_CT = `application/json`
const BYTES_CT = `application/octet-stream`

// -- helpers ------------------------------------------------------------------------

function message(i) {
  // Same fields and values as bench_common.message(i).
  return {
    id: i,
    user: `user-${String(i % 9973).padStart(5, `0`)}`,
    event: `page_view`,
    path: `/items/${String(i % 1000).padStart(4, `0`)}`,
    ok: true,
    score: (i % 1000) / 8,
  }
}

function blobs(spec, n) {
  const base = readFileSync(spec.blob_file)
  const out = []
  for (let i = 0; i < n; i++) {
    const b = Buffer.from(base)
    b.writeBigUInt64BE(BigInt(i), 0)
    out.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))
  }
  return out
}

function status() {
  const values = {}
  for (const line of readFileSync(`/proc/self/status`, `ascii`).split(`\n`)) {
    const [key, rest] = line.split(`:`)
    if (key === `VmRSS` || key === `VmHWM`) values[key] = parseInt(rest, 10) * 1024
  }
  return values
}

function settledRss() {
  globalThis.gc?.()
  return status().VmRSS
}

function cpuSeconds() {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

class Timer {
  start() {
    this.t0 = performance.now()
    this.c0 = cpuSeconds()
  }
  stop() {
    this.wall = (performance.now() - this.t0) / 1000
    this.cpu = cpuSeconds() - this.c0
  }
}

function percentile(values, q) {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const k = ((s.length - 1) * q) / 100
  const lo = Math.floor(k)
  const hi = Math.min(lo + 1, s.length - 1)
  return s[lo] + (s[hi] - s[lo]) * (k - lo)
}

function latencySummary(samplesMs) {
  return {
    samples: samplesMs.length,
    p50_ms: percentile(samplesMs, 50),
    p99_ms: percentile(samplesMs, 99),
    max_ms: samplesMs.length ? Math.max(...samplesMs) : NaN,
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function withTimeout(promise, seconds) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out`)), seconds * 1000)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// -- producer -----------------------------------------------------------------------

async function produce(url, values, contentType, encoded = false) {
  const handle = new DurableStream({ url, contentType })
  let failure
  const producer = new IdempotentProducer(handle, `bench-ts`, {
    onError: (err) => {
      failure ??= err
    },
  })
  const isJson = contentType === JSON_CT
  for (const value of values) producer.append(isJson && !encoded ? JSON.stringify(value) : value)
  await producer.detach() // flushes, waits for every batch, stops
  if (failure) throw failure
}

async function produceJson(spec) {
  const warm = Array.from({ length: spec.warmup_n }, (_, i) => message(i))
  const values = Array.from({ length: spec.n }, (_, i) => message(i))
  await produce(spec.warmup_url, warm, JSON_CT)
  const timer = new Timer()
  timer.start()
  await produce(spec.url, values, JSON_CT)
  timer.stop()
  return { wall_s: timer.wall, cpu_s: timer.cpu, messages: values.length }
}

// Pre-encoded input: the JSON text of every message is made before the clock starts.
async function produceEncoded(spec) {
  const warm = Array.from({ length: spec.warmup_n }, (_, i) => JSON.stringify(message(i)))
  const values = Array.from({ length: spec.n }, (_, i) => JSON.stringify(message(i)))
  await produce(spec.warmup_url, warm, JSON_CT, true)
  const timer = new Timer()
  timer.start()
  await produce(spec.url, values, JSON_CT, true)
  timer.stop()
  return { wall_s: timer.wall, cpu_s: timer.cpu, messages: values.length }
}

async function produceBytes(spec) {
  const warm = blobs(spec, spec.warmup_n)
  const values = blobs(spec, spec.n)
  await produce(spec.warmup_url, warm, BYTES_CT)
  const timer = new Timer()
  timer.start()
  await produce(spec.url, values, BYTES_CT)
  timer.stop()
  return {
    wall_s: timer.wall,
    cpu_s: timer.cpu,
    bytes: values.reduce((n, v) => n + v.byteLength, 0),
  }
}

// -- catch-up read ------------------------------------------------------------------

async function countMessages(url) {
  const res = await stream({ url, offset: `-1`, live: false })
  let count = 0
  // eslint-disable-next-line no-unused-vars
  for await (const _ of res.jsonStream()) count++
  return count
}

async function countBytes(url) {
  const res = await stream({ url, offset: `-1`, live: false })
  let total = 0
  for await (const chunk of res.bodyStream()) total += chunk.byteLength
  return total
}

async function catchupJson(spec) {
  await countMessages(spec.warmup_url)
  const timer = new Timer()
  timer.start()
  const count = await countMessages(spec.url)
  timer.stop()
  return { wall_s: timer.wall, cpu_s: timer.cpu, messages: count }
}

async function catchupBytes(spec) {
  await countBytes(spec.warmup_url)
  const timer = new Timer()
  timer.start()
  const total = await countBytes(spec.url)
  timer.stop()
  return { wall_s: timer.wall, cpu_s: timer.cpu, bytes: total }
}

async function memoryRead(spec) {
  const base = settledRss()
  const timer = new Timer()
  timer.start()
  const total = await countBytes(spec.url)
  timer.stop()
  return { wall_s: timer.wall, cpu_s: timer.cpu, bytes: total, base_rss: base }
}

// -- live reading -------------------------------------------------------------------

async function follow(url, mode, deliver) {
  const res = await stream({ url, offset: `-1`, live: mode })
  const done = (async () => {
    for await (const msg of res.jsonStream()) deliver(msg)
  })().catch(() => {})
  return { cancel: () => res.cancel(), done }
}

async function latency(spec) {
  const handle = new DurableStream({ url: spec.url, contentType: JSON_CT })
  let waiter = null
  const readerPromise = follow(spec.url, spec.mode, (msg) => {
    const t = performance.now()
    if (waiter && waiter.seq === msg.seq) waiter.resolve(t)
    else waiter?.reject(new Error(`expected ${waiter.seq}, got ${msg.seq}`))
  })
  const samples = []
  for (let i = 0; i < spec.warmup + spec.samples; i++) {
    const arrived = new Promise((resolve, reject) => {
      waiter = { seq: i, resolve, reject }
    })
    const t0 = performance.now()
    await handle.append(JSON.stringify({ seq: i, pad: `x`.repeat(64) }))
    const t1 = await withTimeout(arrived, spec.timeout_s)
    if (i >= spec.warmup) samples.push(t1 - t0)
    await sleep(spec.gap_ms)
  }
  const reader = await readerPromise
  reader.cancel()
  return latencySummary(samples)
}

async function fanout(spec) {
  const n = spec.readers
  const appends = spec.appends
  const handle = new DurableStream({ url: spec.url, contentType: JSON_CT })
  await handle.head()
  const base = settledRss()
  const arrived = Array.from({ length: appends + 1 }, () => new Float64Array(n))
  const counts = new Array(appends + 1).fill(0)
  const resolvers = []
  const done = Array.from(
    { length: appends + 1 },
    (_, k) => new Promise((resolve) => (resolvers[k] = resolve))
  )
  const readers = []
  for (let j = 0; j < n; j++) {
    readers.push(
      follow(spec.url, spec.mode, (msg) => {
        const k = msg.k
        arrived[k][j] = performance.now()
        counts[k] += 1
        if (counts[k] === n) resolvers[k]()
      })
    )
  }
  // As bench_common.FanOut.measure: append 0 primes (not measured); an append not
  // delivered to every reader within timeout_s ends the run, its misses counted at
  // timeout_s.
  const delays = []
  let missing = 0
  let loaded = base
  let made = 0
  for (let k = 0; k <= appends; k++) {
    const t0 = performance.now()
    await handle.append(JSON.stringify({ k, pad: `x`.repeat(64) }))
    try {
      await withTimeout(done[k], spec.timeout_s)
    } catch {
      // counted as missing below
    }
    const complete = counts[k] === n
    if (k === 0) loaded = settledRss()
    if (k > 0 || !complete) {
      made++
      for (const t of arrived[k]) if (t) delays.push(t - t0)
      const lost = n - counts[k]
      missing += lost
      for (let i = 0; i < lost; i++) delays.push(spec.timeout_s * 1000)
    }
    if (!complete) break
    await sleep(spec.gap_ms)
  }
  for (const r of readers) {
    try {
      ;(await withTimeout(r, 1)).cancel()
    } catch {
      // a reader that never connected
    }
  }
  return {
    ...latencySummary(delays),
    base_rss: base,
    loaded_rss: loaded,
    rss_per_reader: (loaded - base) / n,
    missing,
    appends_made: made,
  }
}

// -- stalled producer ---------------------------------------------------------------

async function stalled(spec) {
  const size = spec.message_bytes
  const count = Math.floor(spec.total_bytes / size)
  const payload = blobs({ blob_file: spec.blob_file }, 1)[0].slice(0, size)
  const handle = new DurableStream({ url: spec.url, contentType: BYTES_CT })
  const producer = new IdempotentProducer(handle, `bench-ts`, { onError: () => {} })
  const base = settledRss()
  // append() never waits: the producer's queue takes everything offered.
  for (let i = 0; i < count; i++) producer.append(payload)
  await sleep(spec.stall_s * 1000)
  return {
    base_rss: base,
    peak_rss: status().VmHWM,
    offered_bytes: count * size,
    accepted_bytes: count * size,
    blocked: false,
  }
}

// -- main ---------------------------------------------------------------------------

const HANDLERS = {
  produce_json: produceJson,
  produce_encoded: produceEncoded,
  produce_bytes: produceBytes,
  catchup_json: catchupJson,
  catchup_bytes: catchupBytes,
  latency,
  fanout,
  memory_read: memoryRead,
  stalled,
}

const spec = JSON.parse(process.argv[2])
const handler = HANDLERS[spec.workload]
if (!handler) {
  process.stderr.write(`unknown workload ${spec.workload}\n`)
  process.exit(2)
}
try {
  const result = await handler(spec)
  result.workload = spec.workload
  result.peak_rss ??= status().VmHWM
  process.stdout.write(JSON.stringify(result) + `\n`, () => process.exit(0))
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`)
  process.exit(1)
}
