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

/** The route in the hash: `#/` (home), `#/search?...`, `#/record?table=...&id=...`. */
function route() {
  const [page, query] = location.hash.replace(/^#\/?/, '').split('?')
  return { page: page || 'home', params: new URLSearchParams(query ?? '') }
}

// The log has no index on its ids alone: newest first over all of it reads all of it. The home
// page shows the last 24 hours (a time range reads only its own block ranges); a search without
// any filter, asked for, reads everything.
const HOME_SPAN = 24 * 3600e3

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
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`
}

const HOUR = 3600e3
const addMs = (time, ms) => new Date(new Date(time).getTime() + ms).toISOString()

// A transaction's entries share its time: with it, the search reads one partition's time
// range, as byTransaction does (dates keep milliseconds, the log microseconds).
function transactionLink(entry) {
  return searchLink({ txid: entry.txid, from: addMs(entry.createdAt, 0), to: addMs(entry.createdAt, 1) })
}

// A request id is not indexed: its entries are looked for within an hour of this one.
function requestLink(entry) {
  return searchLink({ requestId: entry.requestId, from: addMs(entry.createdAt, -HOUR), to: addMs(entry.createdAt, HOUR) })
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
      element('td', { class: 'hide-narrow' }, element('a', { href: transactionLink(entry), 'aria-label': `transaction ${entry.txid}` }, entry.txid)),
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
  return element('table', { class: 'diff' },
    element('thead', {}, element('tr', {}, ...['Field', 'Old', 'New'].map((h) => element('th', { scope: 'col' }, h)))),
    element('tbody', {}, ...rows.map(([field, old, now]) => element('tr', {},
      element('th', { scope: 'row' }, field),
      element('td', { class: 'old' }, old),
      element('td', { class: 'new' }, now)))))
}

/** A whole record as a table of its fields (excluded ones are absent, redacted ones said). */
function stateTable(state) {
  return element('table', { class: 'state' },
    element('tbody', {}, ...Object.entries(state).map(([field, value]) => element('tr', {},
      element('th', { scope: 'row' }, field), element('td', {}, show(value))))))
}

/** The record after an entry, as the server's statesAt gave it. */
function stateAfter(entry, point) {
  if (point == null) return null
  const box = element('details', { class: 'state-after' })
  if (point.withheld) {
    box.append(element('summary', {}, 'Record after this change'), element('p', { class: 'note' }, 'Not shown: it comes from an entry you may not see.'))
  } else if (point.state == null) {
    box.append(element('summary', {}, 'Record after this change: did not exist'),
      element('p', { class: 'note' }, entry.action === 'UPDATE' ? 'Its key changed.' : 'It was removed.'))
  } else {
    box.append(element('summary', {}, 'Record after this change'))
    if (point.entryId !== entry.id) {
      box.append(element('p', { class: 'note' }, `As left by entry #${point.entryId}, of the same time.`))
    }
    box.append(stateTable(point.state))
  }
  return box
}

function entryCard(entry, point) {
  const meta = element('div', { class: 'meta' },
    element('span', {}, new Date(entry.createdAt).toLocaleString()),
    element('span', {}, 'by ', entry.actorId ? element('a', { href: searchLink({ actorId: entry.actorId }) }, actorText(entry)) : actorText(entry)),
    entry.ipAddress ? element('span', {}, `from ${entry.ipAddress}`) : null,
    entry.requestId ? element('span', {}, 'request ', element('a', { href: requestLink(entry) }, entry.requestId)) : null,
    element('span', {}, 'transaction ', element('a', { href: transactionLink(entry) }, entry.txid)),
    element('span', {}, `entry #${entry.id}`))
  const card = element('article', { class: 'entry' }, element('h3', {}, entry.action), meta)
  if (entry.metadata) card.append(element('p', { class: 'note' }, `metadata: ${JSON.stringify(entry.metadata)}`))
  const diff = diffTable(entry)
  if (diff) card.append(diff)
  const state = stateAfter(entry, point)
  if (state) card.append(state)
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

const GRANULARITIES = {
  hour: { size: HOUR, span: 48 * HOUR, recent: 'last 48 hours', label: (d) => `${d.toISOString().slice(0, 13).replace('T', ' ')}:00 UTC` },
  day: { size: 24 * HOUR, span: 30 * 24 * HOUR, recent: 'last 30 days', label: (d) => d.toISOString().slice(0, 10) },
  week: { size: 7 * 24 * HOUR, span: 12 * 7 * 24 * HOUR, recent: 'last 12 weeks', label: (d) => `week of ${d.toISOString().slice(0, 10)}` },
}

function granularity(params) {
  return Object.hasOwn(GRANULARITIES, params.get('by') ?? '') ? params.get('by') : 'day'
}

/** Bars placed on the time axis (a period without entries is a gap); each bar searches its period. */
function chart(rows, params) {
  const by = granularity(params)
  const { size, label } = GRANULARITIES[by]
  const box = $('#chart')
  box.replaceChildren()
  $('#chart-axis').textContent = ''
  const counts = rows.filter((r) => r.period).sort((a, b) => new Date(a.period) - new Date(b.period))
  if (counts.length === 0) {
    box.append(element('p', { class: 'note' }, 'No entries in this range.'))
    return
  }
  const first = new Date(counts[0].period).getTime()
  const slot = (row) => Math.round((new Date(row.period).getTime() - first) / size)
  const slots = slot(counts[counts.length - 1]) + 1
  const max = Math.max(...counts.map((r) => r.count))
  // At least 50 slots wide: a few bars stay bars, not blocks.
  const width = Math.max(slots, 50) * 12
  const svgNode = (tag) => document.createElementNS('http://www.w3.org/2000/svg', tag)
  const svg = svgNode('svg')
  svg.setAttribute('viewBox', `0 0 ${width} 100`)
  svg.setAttribute('preserveAspectRatio', 'none')
  svg.setAttribute('role', 'group')
  svg.setAttribute('aria-label', `Changes per ${by}; each bar searches its ${by}`)
  const filters = new URLSearchParams(params)
  for (const name of ['from', 'to', 'by']) filters.delete(name)
  for (const row of counts) {
    const start = new Date(row.period)
    const text = `${label(start)}: ${row.count} ${row.count === 1 ? 'entry' : 'entries'}`
    const link = svgNode('a')
    link.setAttribute('href', searchLink([...filters, ['from', start.toISOString()], ['to', addMs(start, size)], ['by', by]]))
    link.setAttribute('aria-label', text)
    const height = Math.max(2, (row.count / max) * 90)
    const bar = svgNode('rect')
    bar.setAttribute('x', String(slot(row) * 12 + 1))
    bar.setAttribute('y', String(100 - height))
    bar.setAttribute('width', '10')
    bar.setAttribute('height', String(height))
    const title = svgNode('title')
    title.textContent = text
    bar.append(title)
    link.append(bar)
    svg.append(link)
  }
  box.append(svg)
  const total = counts.reduce((sum, r) => sum + r.count, 0)
  $('#chart-axis').textContent = `${label(new Date(counts[0].period))} to ${label(new Date(counts[counts.length - 1].period))}: ` +
    `${total} ${total === 1 ? 'entry' : 'entries'}, at most ${max} per ${by}`
}

let cursor = null
let lastParams = new URLSearchParams()

async function searchPage(params, append) {
  const query = new URLSearchParams(params)
  if (append && cursor) query.set('cursor', cursor)
  showResults(await api('search', query), append)
}

function showResults(page, append) {
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

async function recordPage(params, generation) {
  const table = params.get('table')
  const id = params.get('id')
  const { entries, states } = await api('record', new URLSearchParams({ table, id }))
  if (generation !== rendered) return
  cursor = null
  $('#more').hidden = true
  const results = $('#results')
  results.replaceChildren(
    element('h2', {}, `${table} ${id}`),
    element('p', {}, element('a', { href: searchLink({ table }) }, `All of ${table}`)))
  const newest = states.findIndex((point) => point != null)
  if (newest >= 0 && !states[newest].withheld && states[newest].state == null) {
    results.append(element('p', { class: 'note', id: 'gone' },
      `This record does not exist since ${new Date(entries[newest].createdAt).toLocaleString()} (${entries[newest].action}); ` +
      'each change below shows the record as it was after it.'))
  }
  results.append(stateForm(table, id))
  if (entries.length === 0) results.append(element('p', { class: 'note' }, 'Nothing recorded for this record.'))
  entries.forEach((entry, i) => results.append(entryCard(entry, states[i])))
}

/** "The record as it was at": any time, through the server's statesAt. */
function stateForm(table, id) {
  const input = element('input', { type: 'datetime-local', step: '0.001', name: 'at', required: '' })
  const output = element('div', { id: 'state-at', role: 'status', 'aria-live': 'polite' })
  const form = element('form', { class: 'state-form', 'aria-label': 'The record at a time' },
    element('label', {}, 'Record as it was at', input),
    element('button', { type: 'submit' }, 'Show'))
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const at = localTimeToIso(input.value)
    try {
      const point = await api('state', new URLSearchParams({ table, id, at }))
      const when = new Date(at).toLocaleString()
      output.replaceChildren(point.withheld
        ? element('p', { class: 'note' }, `At ${when}: not shown, it comes from an entry you may not see.`)
        : point.state == null
          ? element('p', { class: 'note' }, `At ${when}: the record did not exist (or was not tracked yet).`)
          : element('div', {}, element('p', {}, `At ${when}, as left by entry #${point.entryId}:`), stateTable(point.state)))
    } catch (error) {
      output.replaceChildren(element('p', { class: 'note' }, error.message))
    }
  })
  return element('section', { class: 'state' }, form, output)
}

function updateExportLinks(params) {
  for (const format of ['csv', 'jsonl']) {
    const query = new URLSearchParams(params)
    query.set('format', format)
    $(`#export-${format}`).href = `api/export?${query}`
  }
}

// Each hash change renders; only the latest one draws what it fetched.
let rendered = 0

async function render() {
  setMessage('')
  const { page, params } = route()
  const generation = ++rendered
  try {
    if (page === 'record') {
      fillForm(new URLSearchParams())
      $('#chart-section').hidden = true
      $('#bursts-section').hidden = true
      await recordPage(params, generation)
    } else {
      const home = page === 'home'
      if (home) {
        params.set('from', new Date(Date.now() - HOME_SPAN).toISOString())
        params.set('by', 'hour')
      }
      fillForm(home ? new URLSearchParams() : params)
      $('#home-note').hidden = !home
      lastParams = params
      updateExportLinks(params)
      $('#chart-section').hidden = false
      $('#bursts-section').hidden = false
      // The chart covers the search's range, else a recent span (counting the whole log would
      // read all of it).
      const by = granularity(params)
      for (const radio of document.querySelectorAll('#granularity input')) radio.checked = radio.value === by
      const range = new URLSearchParams(params)
      range.set('by', by)
      if (!range.has('from')) range.set('from', new Date(Date.now() - GRANULARITIES[by].span).toISOString())
      const [found, counts, busy] = await Promise.all([api('search', params), api('counts', range), api('bursts', params)])
      if (generation !== rendered) return
      showResults(found, false)
      $('#chart-title').textContent = home ? `Changes per ${by}, last 24 hours`
        : params.has('from') ? `Changes per ${by}` : `Changes per ${by}, ${GRANULARITIES[by].recent}`
      chart(counts, params)
      bursts(busy)
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
    const params = formParams()
    if (granularity(lastParams) !== 'day') params.set('by', granularity(lastParams))
    location.hash = `#/search?${params}`
  })
  for (const radio of document.querySelectorAll('#granularity input')) {
    radio.addEventListener('change', () => {
      const params = new URLSearchParams(lastParams)
      params.set('by', radio.value)
      location.hash = `#/search?${params}`
    })
  }
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
