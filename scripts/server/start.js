#!/usr/bin/env node
// Starts dynalite (in memory) on 127.0.0.1 and prints "listening PORT" once it
// accepts connections. --port 0 picks a free port. With --watch-pid PID the
// server exits by itself when that process is gone, so a crashed test run
// never leaves a server behind.
'use strict'
const path = require('path')
const args = process.argv.slice(2)
function opt(name, def) {
  const i = args.indexOf('--' + name)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def
}
const port = Number(opt('port', '8000'))
const host = opt('host', '127.0.0.1')
const watchPid = Number(opt('watch-pid', '0'))
const dynalite = require(path.join(__dirname, 'node_modules', 'dynalite'))
const server = dynalite({ createTableMs: Number(opt('create-table-ms', '0')),
  deleteTableMs: Number(opt('delete-table-ms', '0')), updateTableMs: Number(opt('update-table-ms', '0')) })
server.listen(port, host, () => {
  process.stdout.write('listening ' + server.address().port + '\n')
})
server.on('error', (err) => {
  process.stderr.write('dynalite: ' + err.message + '\n')
  process.exit(1)
})
if (watchPid > 0) {
  setInterval(() => {
    try { process.kill(watchPid, 0) } catch (e) { process.exit(0) }
  }, 500).unref()
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
