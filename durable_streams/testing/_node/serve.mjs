#!/usr/bin/env node
// Runs the Durable Streams reference server (@durable-streams/server) for tests.
// Driven by durable_streams/testing/_server.py (ReferenceServer), from the copy the
// kit installs into the user cache; usable by hand too
// (`python -m durable_streams.testing serve ...` runs exactly this):
//
//   node serve.mjs [--port N] [--data-dir PATH] [--long-poll-timeout MS]
//                  [--no-compression] [--webhooks] [--watch-stdin | --no-watch-stdin]
//
// Each option can also come from the environment (the flag wins):
//   DS_TEST_PORT, DS_TEST_DATA_DIR, DS_TEST_LONG_POLL_TIMEOUT_MS,
//   DS_TEST_COMPRESSION=0, DS_TEST_WEBHOOKS=1
//
// Protocol with the parent: once the server is listening, exactly one line
// of JSON goes to stdout: {"url": "...", "port": N, "pid": N}. Nothing else
// is ever written to stdout; the server's own logging is sent to stderr.
//
// Lifetime: SIGTERM / SIGINT stop the server gracefully and exit 0. When
// stdin is a pipe and reaches EOF (the parent died or closed it), or when we
// get re-parented, the process exits as well so no orphan servers linger.

import { fstatSync } from "node:fs"
import process from "node:process"

// The library logs through console.info / console.warn, which Node sends to
// stdout. The parent reads stdout only for the ready line and then stops
// reading it, so any later stdout output would eventually fill the pipe and
// block the server. Route everything to stderr before the library loads.
for (const name of [`log`, `info`, `warn`, `debug`, `trace`]) {
  console[name] = console.error.bind(console)
}

const HOST = `127.0.0.1`
// How long a graceful stop may take before open connections are cut, and
// before we give up on a clean shutdown altogether.
const GRACE_MS = 2000
const HARD_EXIT_MS = 5000
const PARENT_POLL_MS = 1000

function usage(message) {
  if (message) process.stderr.write(`serve.mjs: ${message}\n`)
  process.stderr.write(
    `usage: node serve.mjs [--port N] [--data-dir PATH] ` +
      `[--long-poll-timeout MS] [--no-compression] [--webhooks] ` +
      `[--watch-stdin | --no-watch-stdin]\n`
  )
  process.exit(2)
}

function parseNonNegativeInt(flag, raw) {
  if (!/^\d+$/.test(String(raw))) usage(`${flag} needs a non-negative integer, got ${JSON.stringify(raw)}`)
  return Number(raw)
}

function parseArgs(argv) {
  const env = process.env
  const opts = {
    port: env.DS_TEST_PORT ?? `0`,
    dataDir: env.DS_TEST_DATA_DIR || undefined,
    longPollTimeout: env.DS_TEST_LONG_POLL_TIMEOUT_MS || undefined,
    compression: env.DS_TEST_COMPRESSION !== `0`,
    webhooks: env.DS_TEST_WEBHOOKS === `1`,
    watchStdin: undefined, // decided from what fd 0 is, unless forced
  }
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]
    let value
    const eq = arg.indexOf(`=`)
    if (arg.startsWith(`--`) && eq !== -1) {
      value = arg.slice(eq + 1)
      arg = arg.slice(0, eq)
    }
    const takeValue = () => {
      if (value !== undefined) return value
      if (i + 1 >= argv.length) usage(`${arg} needs a value`)
      return argv[++i]
    }
    switch (arg) {
      case `--port`:
        opts.port = takeValue()
        break
      case `--data-dir`:
        opts.dataDir = takeValue()
        break
      case `--long-poll-timeout`:
        opts.longPollTimeout = takeValue()
        break
      case `--no-compression`:
        opts.compression = false
        break
      case `--webhooks`:
        opts.webhooks = true
        break
      case `--watch-stdin`:
        opts.watchStdin = true
        break
      case `--no-watch-stdin`:
        opts.watchStdin = false
        break
      case `-h`:
      case `--help`:
        usage()
        break
      default:
        usage(`unknown argument ${JSON.stringify(arg)}`)
    }
  }
  opts.port = parseNonNegativeInt(`--port`, opts.port)
  if (opts.port > 65535) usage(`--port out of range`)
  if (opts.longPollTimeout !== undefined) {
    opts.longPollTimeout = parseNonNegativeInt(`--long-poll-timeout`, opts.longPollTimeout)
  }
  return opts
}

function stdinIsPipe() {
  // Only a pipe or socket on fd 0 says anything about the parent. A TTY or
  // /dev/null (a person running this by hand, or a supervisor that gives no
  // stdin) would read as "closed" at once and must not stop the server.
  try {
    const st = fstatSync(0)
    return st.isFIFO() || st.isSocket()
  } catch {
    return false
  }
}

const opts = parseArgs(process.argv.slice(2))

// Imported after the console redirection above, so nothing the library does
// while loading can reach stdout.
const { DurableStreamTestServer } = await import(`@durable-streams/server`)

const serverOptions = { host: HOST, port: opts.port, compression: opts.compression }
if (opts.dataDir) serverOptions.dataDir = opts.dataDir
if (opts.longPollTimeout !== undefined) serverOptions.longPollTimeout = opts.longPollTimeout
// Webhook subscriptions (the server POSTs signed wakes to receivers) are off by default.
if (opts.webhooks) serverOptions.webhooks = true

let server
try {
  // The file-backed store opens LMDB and replays metadata in the constructor,
  // so a bad data dir fails here rather than in start().
  server = new DurableStreamTestServer(serverOptions)
  await server.start()
} catch (err) {
  process.stderr.write(`serve.mjs: failed to start: ${err?.stack ?? err}\n`)
  process.exit(1)
}

const httpServer = server.server // private in the .d.ts, but plain JS here
const address = httpServer?.address()
const port = typeof address === `object` && address ? address.port : opts.port
process.stdout.write(
  JSON.stringify({ url: `http://${HOST}:${port}`, port, pid: process.pid }) + `\n`
)

let stopping = false
async function shutdown(reason, code = 0) {
  if (stopping) return
  stopping = true
  process.stderr.write(`serve.mjs: stopping (${reason})\n`)

  // A client stuck mid-request would keep server.close() waiting forever;
  // cut all connections after a grace period, and exit regardless later.
  const cut = setTimeout(() => httpServer?.closeAllConnections?.(), GRACE_MS)
  const hard = setTimeout(() => {
    process.stderr.write(`serve.mjs: graceful stop timed out, exiting\n`)
    process.exit(code)
  }, HARD_EXIT_MS)
  cut.unref()
  hard.unref()

  try {
    // Idle keep-alive sockets would otherwise hold close() open until the
    // client drops them.
    httpServer?.closeIdleConnections?.()
    await server.stop()
  } catch (err) {
    process.stderr.write(`serve.mjs: error while stopping: ${err?.stack ?? err}\n`)
  }
  process.exit(code)
}

process.on(`SIGTERM`, () => void shutdown(`SIGTERM`))
process.on(`SIGINT`, () => void shutdown(`SIGINT`))
process.on(`SIGHUP`, () => void shutdown(`SIGHUP`))

const watchStdin = opts.watchStdin ?? stdinIsPipe()
if (watchStdin) {
  // EOF on the pipe means the write end is gone: the parent exited, crashed
  // or closed it on purpose. Data sent on stdin is ignored.
  process.stdin.on(`data`, () => {})
  process.stdin.on(`end`, () => void shutdown(`stdin closed`))
  process.stdin.on(`close`, () => void shutdown(`stdin closed`))
  process.stdin.on(`error`, () => void shutdown(`stdin error`))
  process.stdin.resume()
}

// Second line of defence for the case where stdin EOF never arrives (e.g. the
// parent forked and a child still holds the pipe's write end): once the
// original parent is gone we get re-parented and ppid changes.
const originalPpid = process.ppid
const parentWatch = setInterval(() => {
  if (process.ppid !== originalPpid) void shutdown(`parent ${originalPpid} exited`)
}, PARENT_POLL_MS)
parentWatch.unref()
