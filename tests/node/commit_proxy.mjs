// A TCP proxy between pg and PostgreSQL that can lose the connection around one COMMIT, to test
// what a client sees when it cannot know whether its transaction committed.
import { once } from 'node:events'
import net from 'node:net'

// Requests sent before the startup message, answered with one byte and followed by it.
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104

/**
 * Starts a proxy to the server of `url`. `proxy.url` is `url` through the proxy. After
 * `proxy.loseNextCommit(when)`, the next connection to send a COMMIT loses it:
 * - `'before'`: the COMMIT is dropped and both sockets are destroyed; the server never sees it.
 * - `'after'`: the COMMIT reaches the server; its reply is dropped and both sockets destroyed.
 * `loseNextCommit` returns a promise that resolves once that has happened.
 */
export async function startCommitProxy(url) {
  const target = new URL(url)
  const sockets = new Set()
  let armed
  let lost

  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      // A peer going away is what these tests provoke: the other side is closed below.
      socket.on('error', () => {})
    }
    const closeBoth = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())

    let awaitingCommitReply = false
    upstream.on('data', (chunk) => {
      if (awaitingCommitReply) {
        closeBoth()
        lost.resolve()
      } else {
        client.write(chunk)
      }
    })

    let pending = Buffer.alloc(0)
    let startup = true
    client.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk])
      for (;;) {
        const message = nextMessage(pending, startup)
        if (message === undefined) return
        pending = pending.subarray(message.length)
        if (startup) {
          const code = message.length >= 8 ? message.readInt32BE(4) : 0
          startup = code === SSL_REQUEST || code === GSSENC_REQUEST
        } else if (armed !== undefined && isCommit(message)) {
          const when = armed
          armed = undefined
          if (when === 'before') {
            closeBoth()
            lost.resolve()
            return
          }
          awaitingCommitReply = true
        }
        upstream.write(message)
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')

  const proxied = new URL(url)
  proxied.hostname = '127.0.0.1'
  proxied.port = String(server.address().port)
  return {
    url: proxied.toString(),
    loseNextCommit(when) {
      if (when !== 'before' && when !== 'after') throw new Error(`loseNextCommit('before' | 'after'), not ${when}`)
      armed = when
      return new Promise((resolve) => { lost = { resolve } })
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
}

/**
 * The first complete protocol message of `buffer`, or undefined. The startup message (and an
 * SSL or GSSAPI request) has no type byte: a 4-byte length, itself included; every later one is
 * a type byte and then such a length.
 */
function nextMessage(buffer, startup) {
  const header = startup ? 4 : 5
  if (buffer.length < header) return undefined
  const length = (startup ? 0 : 1) + buffer.readInt32BE(startup ? 0 : 1)
  return buffer.length < length ? undefined : buffer.subarray(0, length)
}

/**
 * A COMMIT: a simple Query message ('Q', length, text NUL), as pg sends it, or a Parse message
 * ('P', length, statement name NUL, text NUL, ...) of the extended protocol, as Prisma sends it.
 */
function isCommit(message) {
  let text
  if (message[0] === 0x51) text = message.toString('utf8', 5, message.length - 1)
  else if (message[0] === 0x50) {
    const start = message.indexOf(0, 5) + 1
    text = message.toString('utf8', start, message.indexOf(0, start))
  }
  // Knex and Sequelize send `COMMIT;`.
  return /^commit;?$/.test(text?.trim().toLowerCase() ?? '')
}
