// The viewer's page: a search over the log, a record's timeline, the chain's state. Text is set
// with textContent only (the log holds what applications wrote); routes live in the URL hash.
'use strict'

const $ = (selector) => document.querySelector(selector)
const FILTERS = ['table', 'targetId', 'action', 'actorId', 'requestId', 'txid', 'changedField', 'metadataContains', 'from', 'to']

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value != null) node.setAttribute(name, value)
  }
  for (const child of children) {
    if (child != null) node.append(child instanceof Node ? child : String(child))
  }
  return node
}

function show(value) {
  if (value === undefined) return '(not stored)'
  if (typeof value === 'string' && /^hmac:[0-9a-f]{64}$/.test(value)) return 'redacted'
  return JSON.stringify(value)
}

async function api(path, params) {
  const response = await fetch(`api/${path}?${params ?? ''}`, { headers: { accept: 'application/json' } })
  const body = await response.json()
  if (!response.ok) throw new Error(`${body.error?.code ?? response.status}: ${body.error?.message ?? ''}`)
  return body
}

/** The route in the hash: `#/` (search), `#/search?...`, `#/record?table=...&id=...`. */
function route() {
  const [page, query] = location.hash.replace(/^#\/?/, '').split('?')
  return { page: page || 'search', params: new URLSearchParams(query ?? '') }
}

function searchLink(params) {
  return `#/search?${new URLSearchParams(params)}`
}

function recordLink(table, id) {
  return `#/record?${new URLSearchParams({ table, id })}`
}

function localTimeToIso(value) {
  return value ? new Date(value).toISOString() : ''
}

function isoToLocalTime(value) {
  if (!value) return ''
  const date = new Date(value)
  const pad = (n) => String(n).padStart(2, '0')
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
}

function formParams() {
  const params = new URLSearchParams()
  for (const name of FILTERS) {
    const input = $(`#search [name="${name}"]`)
    const value = input.type === 'datetime-local' ? localTimeToIso(input.value) : input.value.trim()
    if (value) params.set(name, value)
  }
  return params
}

function fillForm(params) {
  for (const name of FILTERS) {
    const input = $(`#search [name="${name}"]`)
    const value = params.get(name) ?? ''
    input.value = input.type === 'datetime-local' ? isoToLocalTime(value) : value
  }
}

function setMessage(text) {
  $('#message').textContent = text ?? ''
}

function actorText(entry) {
  const who = [entry.actorType, entry.actorId].filter(Boolean).join(' ') || 'no actor'
  return entry.actorEmail ? `${who} <${entry.actorEmail}>` : who
}

function changesSummary(entry) {
  if (entry.action === 'UPDATE') return (entry.changedFields ?? []).join(', ')
  if (entry.action === 'INSERT') return 'created'
  if (entry.action === 'DELETE' || entry.action === 'TRUNCATE') return 'removed'
  return entry.metadata ? JSON.stringify(entry.metadata) : ''
}

function resultsTable(entries) {
  const body = element('tbody')
  for (const entry of entries) {
    const record = entry.targetType && entry.targetId != null
      ? element('a', { href: recordLink(entry.targetType, entry.targetId) }, entry.targetId)
      : entry.targetId ?? ''
    body.append(element('tr', {},
      element('td', {}, new Date(entry.createdAt).toLocaleString()),
      element('td', {}, entry.action),
      element('td', {}, entry.targetType ?? ''),
      element('td', {}, record),
      element('td', {}, entry.actorId ? element('a', { href: searchLink({ actorId: entry.actorId }) }, actorText(entry)) : actorText(entry)),
      element('td', { class: 'hide-narrow' }, element('a', { href: searchLink({ txid: entry.txid }), 'aria-label': `transaction ${entry.txid}` }, entry.txid)),
      element('td', { class: 'hide-narrow' }, changesSummary(entry)),
    ))
  }
  return element('table', { class: 'results' },
    element('caption', { class: 'note' }, 'Newest first'),
    element('thead', {}, element('tr', {},
      ...['Time', 'Action', 'Table', 'Record', 'Actor'].map((h) => element('th', { scope: 'col' }, h)),
      element('th', { scope: 'col', class: 'hide-narrow' }, 'Transaction'),
      element('th', { scope: 'col', class: 'hide-narrow' }, 'Changes'))),
    body)
}

function diffTable(entry) {
  const rows = []
  if (entry.action === 'UPDATE') {
    for (const field of entry.changedFields ?? []) {
      rows.push([field, show(entry.oldValues?.[field]), show(entry.newValues?.[field])])
    }
  } else if (entry.action === 'INSERT') {
    for (const [field, value] of Object.entries(entry.newValues ?? {})) rows.push([field, '', show(value)])
  } else if (entry.action === 'DELETE' || entry.action === 'TRUNCATE') {
    for (const [field, value] of Object.entries(entry.oldValues ?? {})) rows.push([field, show(value), ''])
  }
  if (rows.length === 0) return null
  return element('table', {},
    element('thead', {}, element('tr', {}, ...['Field', 'Old', 'New'].map((h) => element('th', { scope: 'col' }, h)))),
    element('tbody', {}, ...rows.map(([field, old, now]) => element('tr', {},
      element('th', { scope: 'row' }, field),
      element('td', { class: 'old' }, old),
      element('td', { class: 'new' }, now)))))
}

function entryCard(entry) {
  const meta = element('div', { class: 'meta' },
    element('span', {}, new Date(entry.createdAt).toLocaleString()),
    element('span', {}, 'by ', entry.actorId ? element('a', { href: searchLink({ actorId: entry.actorId }) }, actorText(entry)) : actorText(entry)),
    entry.ipAddress ? element('span', {}, `from ${entry.ipAddress}`) : null,
    entry.requestId ? element('span', {}, 'request ', element('a', { href: searchLink({ requestId: entry.requestId }) }, entry.requestId)) : null,
    element('span', {}, 'transaction ', element('a', { href: searchLink({ txid: entry.txid }) }, entry.txid)),
    element('span', {}, `entry #${entry.id}`))
  const card = element('article', { class: 'entry' }, element('h3', {}, entry.action), meta)
  if (entry.metadata) card.append(element('p', { class: 'note' }, `metadata: ${JSON.stringify(entry.metadata)}`))
  const diff = diffTable(entry)
  if (diff) card.append(diff)
  if (entry.newValues && (entry.action === 'INSERT' || entry.action === 'UPDATE')) {
    card.append(element('details', {}, element('summary', {}, 'Full record after this change'),
      element('pre', {}, JSON.stringify(entry.newValues, null, 2))))
  }
  return card
}

function bursts(rows) {
  const box = $('#bursts')
  box.replaceChildren()
  if (rows.length === 0) {
    box.append(element('p', { class: 'note' }, 'None.'))
    return
  }
  box.append(element('ul', {}, ...rows.map((burst) => element('li', {},
    burst.key ? element('a', { href: searchLink({ actorId: burst.key, from: burst.firstChange, to: burst.lastChange }) }, burst.key) : 'no actor',
    `: ${burst.changes} changes from ${new Date(burst.firstChange).toLocaleString()} to ${new Date(burst.lastChange).toLocaleString()}`))))
}

function chart(rows) {
  const box = $('#chart')
  box.replaceChildren()
  const counts = rows.filter((r) => r.period).sort((a, b) => new Date(a.period) - new Date(b.period))
  if (counts.length === 0) {
    box.append(element('p', { class: 'note' }, 'No entries in this range.'))
    return
  }
  const max = Math.max(...counts.map((r) => r.count))
  const width = Math.max(counts.length * 12, 100)
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg')
  svg.setAttribute('viewBox', `0 0 ${width} 100`)
  svg.setAttribute('preserveAspectRatio', 'none')
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', `Changes per day: ${counts.map((r) => `${new Date(r.period).toISOString().slice(0, 10)} ${r.count}`).join(', ')}`)
  counts.forEach((row, i) => {
    const height = Math.max(2, (row.count / max) * 90)
    const bar = document.createElementNS('http://www.w3.org/2000/svg', 'rect')
    bar.setAttribute('x', String(i * 12 + 1))
    bar.setAttribute('y', String(100 - height))
    bar.setAttribute('width', '10')
    bar.setAttribute('height', String(height))
    const title = document.createElementNS('http://www.w3.org/2000/svg', 'title')
    title.textContent = `${new Date(row.period).toISOString().slice(0, 10)}: ${row.count}`
    bar.append(title)
    svg.append(bar)
  })
  box.append(svg)
}

let cursor = null
let lastParams = new URLSearchParams()

async function searchPage(params, append) {
  const query = new URLSearchParams(params)
  if (append && cursor) query.set('cursor', cursor)
  const page = await api('search', query)
  cursor = page.nextCursor ?? null
  $('#more').hidden = cursor == null
  const results = $('#results')
  if (!append) results.replaceChildren()
  if (page.entries.length === 0 && !append) {
    results.append(element('p', { class: 'note' }, 'No entry matches.'))
    return
  }
  const table = results.querySelector('table')
  const fresh = resultsTable(page.entries)
  if (append && table) table.tBodies[0].append(...fresh.tBodies[0].rows)
  else results.append(fresh)
}

async function recordPage(params) {
  const table = params.get('table')
  const id = params.get('id')
  const entries = await api('record', new URLSearchParams({ table, id }))
  cursor = null
  $('#more').hidden = true
  const results = $('#results')
  results.replaceChildren(
    element('h2', {}, `${table} ${id}`),
    element('p', {}, element('a', { href: searchLink({ table }) }, `All of ${table}`)))
  if (entries.length === 0) results.append(element('p', { class: 'note' }, 'Nothing recorded for this record.'))
  for (const entry of entries) results.append(entryCard(entry))
}

function updateExportLinks(params) {
  for (const format of ['csv', 'jsonl']) {
    const query = new URLSearchParams(params)
    query.set('format', format)
    $(`#export-${format}`).href = `api/export?${query}`
  }
}

async function render() {
  setMessage('')
  const { page, params } = route()
  try {
    if (page === 'record') {
      fillForm(new URLSearchParams())
      $('#chart-section').hidden = true
      $('#bursts-section').hidden = true
      await recordPage(params)
    } else {
      fillForm(params)
      lastParams = params
      updateExportLinks(params)
      $('#chart-section').hidden = false
      $('#bursts-section').hidden = false
      const busy = api('bursts', params)
      // The chart covers the search's range, else the last 30 days (counting the whole log
      // would read all of it).
      const range = new URLSearchParams([...params, ['by', 'day']])
      if (!range.has('from')) range.set('from', new Date(Date.now() - 30 * 86400e3).toISOString())
      $('#chart-title').textContent = params.has('from') ? 'Changes per day' : 'Changes per day, last 30 days'
      const counts = api('counts', range)
      await searchPage(params, false)
      chart(await counts)
      bursts(await busy)
    }
  } catch (error) {
    setMessage(error.message)
  }
}

async function verify() {
  const badge = $('#chain')
  badge.className = 'badge'
  badge.textContent = 'Verifying…'
  try {
    const report = await api('verify')
    badge.className = `badge ${report.ok ? 'ok' : 'bad'}`
    badge.textContent = report.ok
      ? `Chain verified: ${report.rowsChecked} rows${report.shortHead ? `, head ${report.shortHead}` : ''}`
      : `Chain FAILED: ${report.problemCount} problem(s)${report.firstProblem ? `, first: ${report.firstProblem.message}` : ''}`
  } catch (error) {
    badge.className = 'badge bad'
    badge.textContent = error.message
  }
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme
  const dark = theme === 'dark' || (!theme && matchMedia('(prefers-color-scheme: dark)').matches)
  $('#theme').setAttribute('aria-pressed', String(dark))
  $('#theme').textContent = dark ? 'Light theme' : 'Dark theme'
}

document.addEventListener('DOMContentLoaded', async () => {
  applyTheme(localStorage.getItem('audit-logs-theme'))
  $('#theme').addEventListener('click', () => {
    const dark = $('#theme').getAttribute('aria-pressed') === 'true'
    const theme = dark ? 'light' : 'dark'
    localStorage.setItem('audit-logs-theme', theme)
    applyTheme(theme)
  })
  $('#search').addEventListener('submit', (event) => {
    event.preventDefault()
    location.hash = `#/search?${formParams()}`
  })
  $('#clear').addEventListener('click', () => { setTimeout(() => { location.hash = '#/' }) })
  $('#more').addEventListener('click', () => searchPage(lastParams, true).catch((e) => setMessage(e.message)))
  $('#verify').addEventListener('click', verify)
  window.addEventListener('hashchange', render)
  try {
    const scope = await api('scope')
    $('#verify').hidden = !scope.full
  } catch (error) {
    setMessage(error.message)
  }
  await render()
})
