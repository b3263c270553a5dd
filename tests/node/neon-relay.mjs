// Neon's serverless driver (@neondatabase/serverless) speaks the PostgreSQL protocol over a
// WebSocket, which Neon's proxy relays to the server. This relay does the same (WebSocket frames
// to and from a TCP socket, as Neon's open-source wsproxy does) in front of any local server or
// pooler, so that the real driver runs unchanged.
import net from 'node:net'
import { neonConfig } from '@neondatabase/serverless'
import { WebSocket, WebSocketServer } from 'ws'
import { deferCleanup } from './helpers.mjs'

/**
 * Starts a relay for this test, closed when it ends; resolves to its port. Neon's driver finds it
 * at `127.0.0.1:<port>/v1?address=<host>:<port>` (its wsProxy), here or in another runtime.
 */
export async function startNeonRelay(t) {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  server.on('connection', (socket, request) => {
    const [host, port] = new URL(request.url, 'http://relay').searchParams.get('address').split(':')
    const tcp = net.connect(Number(port), host)
    socket.on('message', (data) => tcp.write(data))
    tcp.on('data', (data) => socket.send(data))
    socket.on('close', () => tcp.end())
    tcp.on('close', () => socket.close())
    tcp.on('error', () => socket.close())
  })
  await new Promise((resolve) => server.on('listening', resolve))
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  return server.address().port
}

/** Starts a relay for this test and points the driver at it (neonConfig is global). */
export async function useNeonRelay(t) {
  const relayPort = await startNeonRelay(t)
  Object.assign(neonConfig, {
    webSocketConstructor: WebSocket,
    useSecureWebSocket: false,
    pipelineTLS: false,
    pipelineConnect: false,
    wsProxy: (host, serverPort) => `127.0.0.1:${relayPort}/v1?address=${host}:${serverPort}`,
  })
}
