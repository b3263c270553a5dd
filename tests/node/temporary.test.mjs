import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TemporaryPostgres } from '../../index.js'
import { withClient } from './helpers.mjs'

test('TemporaryPostgres starts a server that pg can use, and stops it', async () => {
  const server = await TemporaryPostgres.start()
  const url = server.url()
  assert.match(url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/)
  const { rows } = await withClient(url, (c) => c.query('select 1 + 1 as two'))
  assert.equal(rows[0].two, 2)
  server.stop()
  await assert.rejects(withClient(url, (c) => c.query('select 1')), /ECONNREFUSED/)
})
