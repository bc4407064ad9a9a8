// The bling-ledger support console. Plain JavaScript, no build step, no dependency.
//
// Everything shown comes from the JSON API with the support token as a bearer token. Data is
// only ever written into the page as text (textContent, createElement): never as markup.
'use strict';

(function () {
  const TOKEN_KEY = 'bling-ledger.support-token';

  // The failure causes, their labels and advice: read once from GET /v1/causes, the one
  // definition the API, the CLI and the exports use (aggregates::sync::CauseKind).
  let CAUSES = {};

  async function loadCauses() {
    try {
      const answer = await api('GET', '/v1/causes');
      CAUSES = Object.fromEntries(answer.causes.map((c) => [c.code, c]));
    } catch (e) {
      // Without the table the console still works: causes show by their code.
      CAUSES = {};
    }
    const select = $('filter-cause');
    select.querySelectorAll('option[value]:not([value=""])').forEach((o) => o.remove());
    for (const kind of Object.keys(CAUSES)) {
      select.append(el('option', { value: kind, text: CAUSES[kind].label }));
    }
  }

  const CONNECTION_STATES = {
    connected: 'connected',
    revoked: 'revoked',
    disconnected: 'disconnected',
    awaiting_authorization: 'awaiting authorization',
    never_connected: 'never connected',
  };

  const STATE_NOTES = {
    pending: 'Waiting for the sync worker.',
    synced: 'The Bling order matches this invoice.',
    failed: 'The last attempt failed.',
    parked: 'Waiting for the shop to reconnect Bling; it replays by itself then.',
    cancelled: 'Cancelled by the shop, and in Bling when it had an order.',
  };

  const SUBJECTS = { invoice: 'Invoice', customer: 'Customer', connection: 'Connection' };

  // ---- small helpers -------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  // createElement with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'class') node.className = value;
      else if (name === 'hidden') node.hidden = true;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text === null || text === undefined ? '' : String(text);
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function causeInfo(kind) {
    return CAUSES[kind] || { label: kind, advice: '' };
  }

  // ---- Brazilian formats: the staff read dates, money and documents as they do in Bling --

  // Times in São Paulo, whatever the browser's own zone and language: 01/12/2026 18:40.
  const DATE_TIME = new Intl.DateTimeFormat('pt-BR', {
    timeZone: 'America/Sao_Paulo',
    day: '2-digit', month: '2-digit', year: 'numeric',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  });
  const MONEY = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL' });

  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const p = {};
    for (const part of DATE_TIME.formatToParts(d)) p[part.type] = part.value;
    return p.day + '/' + p.month + '/' + p.year + ' ' + p.hour + ':' + p.minute;
  }

  // A calendar date (an issue date): 2026-11-25 → 25/11/2026, no time zone involved.
  function day(isoDate) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoDate || '');
    return m ? m[3] + '/' + m[2] + '/' + m[1] : (isoDate || '—');
  }

  // Integer centavos → R$ 1.109,60 (exact: every amount is far below 2^53 centavos).
  function money(centavos, fallback) {
    if (typeof centavos !== 'number' || !Number.isFinite(centavos)) return fallback || '—';
    return MONEY.format(centavos / 100);
  }

  // A CPF or CNPJ (numeric or alphanumeric), stored bare, shown punctuated:
  // 529.982.247-25, 29.860.598/0001-70, 12.ABC.345/01DE-35.
  function documentNumber(raw) {
    const s = String(raw || '');
    if (/^\d{11}$/.test(s)) return s.replace(/^(\d{3})(\d{3})(\d{3})(\d{2})$/, '$1.$2.$3-$4');
    if (/^[0-9A-Z]{12}\d{2}$/.test(s)) {
      return s.replace(/^(\w{2})(\w{3})(\w{3})(\w{4})(\d{2})$/, '$1.$2.$3/$4-$5');
    }
    return s || '—';
  }

  function timeEl(iso) {
    return el('time', { datetime: iso || null, title: iso || null, text: when(iso) });
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    const past = seconds < 0;
    let s = Math.abs(Math.round(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const parts = d ? [d + ' d', h + ' h'] : h ? [h + ' h', m + ' min'] : m ? [m + ' min'] : [s + ' s'];
    return past ? parts.join(' ') + ' ago' : parts.join(' ');
  }

  function badge(kind, text, attrs) {
    return el('span', Object.assign({ class: 'badge badge-' + kind, text: text }, attrs || {}));
  }

  function stateBadge(state, attrs) {
    return badge(state, state, attrs);
  }

  function connectionBadge(state, attrs) {
    return badge('conn-' + state, CONNECTION_STATES[state] || state, attrs);
  }

  function facts(dl, rows) {
    clear(dl);
    for (const [term, value] of rows) {
      if (value === null || value === undefined || value === '') continue;
      dl.append(el('dt', { text: term }), el('dd', {}, value));
    }
  }

  function safeUrl(raw) {
    try {
      const url = new URL(raw, window.location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- the token and the API -----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields || [];
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(method, path, body, withToken) {
    const headers = { Accept: 'application/json' };
    headers.Authorization = 'Bearer ' + (withToken || token() || '');
    const init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The ledger could not be reached (' + e.message + ').');
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(response.status, err.code || 'http_' + response.status,
        err.message || 'The ledger answered ' + response.status + '.', err.fields);
    }
    return data;
  }

  const enc = encodeURIComponent;
  const tenantPath = (tenant) => '/v1/tenants/' + enc(tenant);

  // A failed call: back to sign-in when the token no longer works, else a message.
  function failed(error, where) {
    if (error instanceof ApiError && error.status === 401) {
      signOut('Your token is no longer accepted (401). Sign in again.');
      return;
    }
    const prefix = where ? where + ': ' : '';
    if (error instanceof ApiError && error.status === 403) {
      flash(prefix + 'not allowed for this token (403): ' + error.message, true);
    } else {
      flash(prefix + (error && error.message ? error.message : String(error)), true);
    }
    if (!(error instanceof ApiError)) console.error(error);
  }

  function flash(message, isError) {
    const node = $('flash');
    node.textContent = message || '';
    node.classList.toggle('flash-error', !!isError);
    node.hidden = !message;
  }

  // ---- sign-in ---------------------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolls();
    show('app', false);
    show('session', false);
    show('login-view', true);
    flash('');
    const error = $('login-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('token').value = '';
    $('token').focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const candidate = $('token').value.trim();
    const error = $('login-error');
    if (!candidate) {
      error.textContent = 'Enter the support token.';
      error.hidden = false;
      $('token').focus();
      return;
    }
    $('login-submit').disabled = true;
    try {
      await api('GET', '/v1/tenants', undefined, candidate);
      sessionStorage.setItem(TOKEN_KEY, candidate);
      $('token').value = '';
      error.hidden = true;
      enterApp();
    } catch (e) {
      let message;
      if (e.status === 401) {
        message = 'This token was not accepted (401): check it and try again.';
      } else if (e.status === 403) {
        message = 'This token is valid but may not use the support console (403): ' + e.message;
      } else {
        message = 'Could not sign in: ' + e.message;
      }
      error.textContent = message;
      error.hidden = false;
      $('token').select();
    } finally {
      $('login-submit').disabled = false;
    }
  }

  async function enterApp() {
    show('login-view', false);
    show('app', true);
    show('session', true);
    await loadCauses();
    route();
  }

  // ---- routing: #/ · #/t/{tenant}?state=&cause=&q= · #/t/{tenant}/i/{invoice} -----------

  function parseHash() {
    const raw = window.location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    if (parts[0] === 't' && parts[1] && parts[2] === 'i' && parts[3]) {
      return { view: 'invoice', tenant: parts[1], invoice: parts[3], params: params };
    }
    if (parts[0] === 't' && parts[1]) return { view: 'tenant', tenant: parts[1], params: params };
    return { view: 'tenants', params: params };
  }

  function tenantHash(tenant, filters) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(filters || {})) if (v) params.set(k, v);
    const q = params.toString();
    return '#/t/' + enc(tenant) + (q ? '?' + q : '');
  }

  function invoiceHash(tenant, invoice) {
    return '#/t/' + enc(tenant) + '/i/' + enc(invoice);
  }

  let polls = [];
  function stopPolls() {
    for (const p of polls) p.stopped = true;
    polls = [];
  }
  function newPoll() {
    const p = { stopped: false };
    polls.push(p);
    return p;
  }

  function crumbs(items) {
    const list = clear($('crumbs-list'));
    items.forEach(([label, href], i) => {
      const last = i === items.length - 1;
      list.append(el('li', {}, last || !href
        ? el('span', { 'aria-current': last ? 'page' : null, text: label })
        : el('a', { href: href, text: label })));
    });
  }

  async function route() {
    if (!token()) {
      signOut('');
      return;
    }
    stopPolls();
    flash('');
    const r = parseHash();
    show('tenants-view', r.view === 'tenants');
    show('tenant-view', r.view === 'tenant');
    show('invoice-view', r.view === 'invoice');
    if (r.view === 'tenants') {
      crumbs([['Tenants', null]]);
      document.title = 'Tenants · Support console';
      await loadTenants(true);
    } else if (r.view === 'tenant') {
      crumbs([['Tenants', '#/'], [r.tenant, null]]);
      document.title = r.tenant + ' · Support console';
      await loadTenant(r.tenant, r.params);
    } else {
      crumbs([['Tenants', '#/'], [r.tenant, tenantHash(r.tenant)], ['Invoice ' + r.invoice, null]]);
      document.title = 'Invoice ' + r.invoice + ' · Support console';
      await loadInvoice(r.tenant, r.invoice);
    }
  }

  // ---- tenants ---------------------------------------------------------------------------

  function connectionSummary(c) {
    const parts = [];
    if (c.state === 'connected' && c.access_expires_at) {
      const secs = (new Date(c.access_expires_at).getTime() - Date.now()) / 1000;
      parts.push(secs > 0 ? 'access token expires in ' + duration(secs) + ' (renewed automatically)'
        : 'access token expired ' + duration(secs) + '; renewal pending');
    }
    if (c.state === 'revoked') {
      let why = 'revoked since ' + when(c.revoked_since);
      const ev = c.revoked_evidence;
      if (ev && typeof ev === 'object') {
        why += ': Bling answered ' + [ev.status, ev.error_type].filter(Boolean).join(' ') +
          (ev.call ? ' to ' + ev.call : '') + (ev.message ? ' (' + ev.message + ')' : '');
      }
      parts.push(why);
    }
    if (c.state === 'disconnected') {
      parts.push('disconnected' + (c.disconnected_by ? ' by ' + c.disconnected_by : '') +
        (c.disconnected_at ? ' on ' + when(c.disconnected_at) : ''));
    }
    if (c.state === 'never_connected') parts.push('the shop has not connected Bling yet');
    if (c.state === 'awaiting_authorization') parts.push('waiting for the shop to approve in Bling');
    if (c.last_error) parts.push('last renewal problem: ' + c.last_error);
    return parts.join('; ');
  }

  async function loadTenants(autoOpen) {
    let data;
    try {
      data = await api('GET', '/v1/tenants');
    } catch (e) {
      failed(e, 'Tenants');
      return;
    }
    const tenants = data.tenants || [];
    if (autoOpen && tenants.length === 1 && parseHash().view === 'tenants') {
      // A token scoped to one shop: go straight to it.
      window.location.replace(tenantHash(tenants[0].tenant));
      return;
    }
    const body = clear($('tenants-body'));
    show('tenants-empty', tenants.length === 0);
    for (const t of tenants) {
      const c = t.connection || { state: 'never_connected' };
      const verb = c.state === 'never_connected' ? 'Connect' : 'Reconnect';
      const button = el('button', { type: 'button', class: 'quiet', text: verb,
        'aria-label': verb + ' ' + t.tenant + ' to Bling' });
      button.addEventListener('click', () => reconnect(t.tenant, button, $('flash')));
      body.append(el('tr', { 'data-tenant': t.tenant },
        el('th', { scope: 'row' }, el('a', { href: tenantHash(t.tenant), text: t.tenant })),
        el('td', {}, connectionBadge(c.state)),
        el('td', { text: connectionSummary(c) }),
        el('td', {}, button)));
    }
  }

  // POST authorize, then open Bling's consent page for the shop's user; watch the state.
  async function reconnect(tenant, button, output) {
    button.disabled = true;
    try {
      const answer = await api('POST', tenantPath(tenant) + '/connection/authorize');
      const url = safeUrl(answer && answer.authorize_url);
      if (!url) throw new Error('the ledger returned no usable authorization URL');
      window.open(url, '_blank', 'noopener,noreferrer');
      const minutes = answer.expires_in_seconds ? Math.round(answer.expires_in_seconds / 60) : null;
      clear(output);
      output.hidden = false;
      output.classList.remove('flash-error');
      append(output, [
        "Bling's authorization page was opened in a new window: the shop's Bling user approves there",
        minutes ? ' (the link works for ' + minutes + ' min). ' : '. ',
        'No window? ',
        el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'authorize-link',
          text: 'Open the authorization page' }),
        '.',
      ]);
      watchConnection(tenant);
    } catch (e) {
      failed(e, 'Reconnect ' + tenant);
    } finally {
      button.disabled = false;
    }
  }

  // After a reconnection starts: refresh the connection panel until it reads connected.
  async function watchConnection(tenant) {
    const poll = newPoll();
    const until = Date.now() + 10 * 60 * 1000;
    while (!poll.stopped && Date.now() < until) {
      await sleep(3000);
      if (poll.stopped) return;
      try {
        const status = await connectionOf(tenant);
        const r = parseHash();
        if (r.view === 'tenant' && r.tenant === tenant) renderConnection(status);
        if (r.view === 'tenants') await loadTenants(false);
        if (status.state === 'connected' && status.connected_at &&
            Date.now() - new Date(status.connected_at).getTime() < 15 * 60 * 1000) {
          flash(tenant + ' is connected to Bling again; parked invoices replay by themselves.');
          return;
        }
      } catch (e) {
        failed(e, 'Connection');
        return;
      }
    }
  }

  // ---- one tenant: connection, failures by cause, invoices ------------------------------

  let current = { tenant: null, filters: {}, cursor: null };

  async function loadTenant(tenant, params) {
    setText('tenant-title', tenant);
    const filters = { state: params.get('state') || '', cause: params.get('cause') || '', q: params.get('q') || '' };
    current = { tenant: tenant, filters: filters, cursor: null };
    $('filter-state').value = filters.state;
    $('filter-cause').value = filters.cause;
    $('filter-q').value = filters.q;
    setText('reconnect-result', '');
    setText('link-result', '');
    await Promise.all([loadConnection(tenant), loadFailures(tenant), loadInvoices(false),
      loadLinks(tenant), loadEndpoints(tenant)]);
  }

  // ---- reconnect links and notifications -------------------------------------------------

  const LINK_STATES = { unused: 'not opened yet', opened: 'opened, not used', used: 'used', expired: 'expired' };

  async function loadLinks(tenant) {
    let data;
    try {
      data = await api('GET', tenantPath(tenant) + '/connection/reconnect-links');
    } catch (e) {
      failed(e, 'Reconnect links');
      return;
    }
    const body = clear($('links-body'));
    for (const l of data.links || []) {
      append(body, [el('tr', { 'data-link': l.link_id },
        el('td', {}, timeEl(l.created_at)),
        el('td', { text: l.created_by }),
        el('td', {}, badge('link-' + l.state, LINK_STATES[l.state] || l.state)),
        el('td', {}, l.opened_at ? timeEl(l.opened_at) : '—'),
        el('td', {}, l.used_at ? timeEl(l.used_at) : '—'),
        el('td', {}, timeEl(l.expires_at)))]);
    }
  }

  async function newLink(tenant) {
    const output = $('link-result');
    clear(output);
    try {
      const answer = await api('POST', tenantPath(tenant) + '/connection/reconnect-link');
      const url = safeUrl(answer.url);
      append(output, ['Send this link to the shop owner (it works once, until ', when(answer.expires_at), '): ',
        el('code', { 'data-testid': 'link-url', text: url || answer.url })]);
      await loadLinks(tenant);
    } catch (e) {
      failed(e, 'Reconnect link');
    }
  }

  const DELIVERY_STATES = { pending: 'pending', delivered: 'delivered', failed: 'gave up' };

  async function loadEndpoints(tenant) {
    let data;
    try {
      data = await api('GET', tenantPath(tenant) + '/endpoints');
    } catch (e) {
      failed(e, 'Notifications');
      return;
    }
    const box = clear($('endpoints'));
    show('endpoints-empty', !(data.endpoints || []).length);
    for (const ep of data.endpoints || []) {
      const section = el('section', { class: 'endpoint', 'data-endpoint': ep.id },
        el('h3', {}, el('code', { text: ep.url }), ' ',
          ep.enabled ? badge('synced', 'enabled') : badge('failed', 'disabled')),
        el('p', { class: 'hint', text: ep.event_types.join(', ') + (ep.description ? ' · ' + ep.description : '') }));
      const warnings = [];
      if (ep.disabled_reason) warnings.push('Disabled ' + when(ep.disabled_at) + ': ' + ep.disabled_reason + '. An admin enables it again once the receiver works; then resend the time range it missed.');
      else if (!ep.enabled) warnings.push('Disabled by an admin.');
      if (ep.failing_since) warnings.push('Every attempt has failed since ' + when(ep.failing_since) + '.');
      for (const w of warnings) append(section, [el('p', { class: 'error', 'data-testid': 'endpoint-warning', text: w })]);
      const range = el('form', { class: 'inline' },
        el('label', { for: 'from-' + ep.id, text: 'Resend from' }),
        el('input', { id: 'from-' + ep.id, type: 'datetime-local', required: true }),
        el('label', { for: 'to-' + ep.id, text: 'to' }),
        el('input', { id: 'to-' + ep.id, type: 'datetime-local', required: true }),
        el('button', { type: 'submit', class: 'quiet', text: 'Resend range' }));
      range.addEventListener('submit', async (event) => {
        event.preventDefault();
        const from = $('from-' + ep.id).value;
        const to = $('to-' + ep.id).value;
        if (!from || !to) return;
        await resend(tenant, ep.id, { from: new Date(from).toISOString(), to: new Date(to).toISOString() });
      });
      append(section, [range]);
      const table = el('table', { 'data-testid': 'deliveries' },
        el('thead', {}, el('tr', {},
          ['Message', 'Type', 'State', 'Attempts', 'Last status', 'Updated', ''].map((h) => el('th', { scope: 'col', text: h })))));
      const tbody = el('tbody', {});
      append(table, [tbody]);
      append(section, [el('div', { class: 'table-wrap' }, table)]);
      append(box, [section]);
      try {
        const d = await api('GET', tenantPath(tenant) + '/endpoints/' + enc(ep.id) + '/deliveries?limit=50');
        for (const row of d.deliveries || []) append(tbody, [deliveryRow(tenant, ep.id, row)]);
      } catch (e) {
        failed(e, 'Deliveries');
      }
    }
  }

  function deliveryRow(tenant, endpoint, row) {
    const details = el('button', { type: 'button', class: 'quiet', text: 'Attempts' });
    const again = el('button', { type: 'button', class: 'quiet', text: 'Resend' });
    const tr = el('tr', { 'data-message': row.message_id },
      el('td', {}, el('code', { text: row.message_id })),
      el('td', { text: row.event_type }),
      el('td', {}, badge(row.state === 'delivered' ? 'synced' : row.state === 'failed' ? 'failed' : 'pending',
        DELIVERY_STATES[row.state] || row.state)),
      el('td', { class: 'num', text: row.attempts }),
      el('td', { text: row.last_status === null ? (row.last_error || '—') : row.last_status }),
      el('td', {}, timeEl(new Date(row.updated_at_ms).toISOString())),
      el('td', {}, details, ' ', again));
    again.addEventListener('click', () => resend(tenant, endpoint, { message_id: row.message_id }));
    details.addEventListener('click', async () => {
      const next = tr.nextElementSibling;
      if (next && next.classList.contains('attempts')) { next.remove(); return; }
      try {
        const m = await api('GET', tenantPath(tenant) + '/messages/' + enc(row.message_id));
        const list = el('ol', { class: 'timeline' });
        for (const a of (m.attempts || []).filter((x) => x.endpoint_id === endpoint)) {
          append(list, [el('li', {},
            '#' + a.attempt + ' ', timeEl(new Date(a.at_ms).toISOString()), ' · ',
            a.status === null ? (a.error || 'no answer') : 'HTTP ' + a.status,
            ' · ' + a.latency_ms + ' ms',
            a.response_excerpt ? el('pre', { class: 'bling-says', text: a.response_excerpt }) : null)]);
        }
        tr.after(el('tr', { class: 'attempts' }, el('td', { colspan: 7 }, list)));
      } catch (e) {
        failed(e, 'Attempts');
      }
    });
    return tr;
  }

  async function resend(tenant, endpoint, body) {
    try {
      const answer = await api('POST', tenantPath(tenant) + '/endpoints/' + enc(endpoint) + '/resend', body);
      flash(answer.resent + ' message(s) will be sent again to this endpoint.');
      await loadEndpoints(tenant);
    } catch (e) {
      failed(e, 'Resend');
    }
  }

  async function loadConnection(tenant) {
    try {
      renderConnection(await connectionOf(tenant));
    } catch (e) {
      failed(e, 'Connection');
    }
  }

  // The live status, with the support view's "revoked since" (the status has the evidence).
  async function connectionOf(tenant) {
    const [status, list] = await Promise.all([
      api('GET', tenantPath(tenant) + '/connection'),
      api('GET', '/v1/tenants'),
    ]);
    const row = (list.tenants || []).find((t) => t.tenant === tenant);
    status.revoked_since = row && row.connection ? row.connection.revoked_since : null;
    return status;
  }

  function renderConnection(s) {
    const state = $('connection-state');
    state.textContent = CONNECTION_STATES[s.state] || s.state;
    state.className = 'badge badge-conn-' + s.state;
    const rev = s.revoked;
    facts($('connection-details'), [
      ['Access token expires in', s.state === 'connected' ? duration(s.expires_in_seconds) + ' (renewed automatically)' : null],
      ['Connected since', s.state === 'connected' && s.connected_at ? timeEl(s.connected_at) : null],
      ['Revoked since', s.state === 'revoked' && s.revoked_since ? timeEl(s.revoked_since) : null],
      ['Last renewal', s.last_refresh_at ? timeEl(s.last_refresh_at) : null],
      ['Token fingerprint', s.token_fingerprint ? el('code', { text: s.token_fingerprint }) : null],
      ['Revoked: Bling answered', rev ? [rev.status, rev.error_type].filter(Boolean).join(' ') + ' to ' + rev.call : null],
      ['Bling said', rev ? rev.message : null],
      ['Last renewal problem', s.last_error ? s.last_error + (s.last_error_at ? ' (' + when(s.last_error_at) + ')' : '') : null],
    ]);
    const reconnect = $('reconnect');
    reconnect.classList.toggle('quiet', s.state === 'connected');
    reconnect.textContent = s.state === 'never_connected' ? 'Connect to Bling' : 'Reconnect to Bling';
  }

  async function loadFailures(tenant) {
    const period = $('failures-period').value;
    const base = tenantPath(tenant) + '/failures?limit=500';
    const since = period ? '&since=' + enc(new Date(Date.now() - Number(period) * 1000).toISOString()) : '';
    const all = [];
    let cursor = null;
    let truncated = false;
    try {
      for (let page = 0; page < 4; page++) {
        const data = await api('GET', base + since + (cursor ? '&cursor=' + enc(cursor) : ''));
        all.push(...(data.failures || []));
        cursor = data.next_cursor;
        if (!cursor) break;
        if (page === 3) truncated = true;
      }
    } catch (e) {
      failed(e, 'Failures');
      return;
    }
    renderFailures(tenant, all, truncated);
  }

  function renderFailures(tenant, failures, truncated) {
    const groups = new Map();
    for (const f of failures) {
      const g = groups.get(f.cause) || { cause: f.cause, subjects: new Set(), invoices: new Set(), attempts: 0, last: null, advice: f.advice };
      g.attempts += 1;
      if (f.invoice_id) g.invoices.add(f.invoice_id);
      g.subjects.add(f.invoice_id ? 'i:' + f.invoice_id : 'c:' + (f.customer_id || ''));
      if (!g.last || f.at > g.last) g.last = f.at;
      groups.set(f.cause, g);
    }
    // Connection causes first: when they are there, they explain the rest.
    const rank = (g) => (causeInfo(g.cause).connection ? 1 : 0);
    const sorted = [...groups.values()].sort((a, b) => rank(b) - rank(a) ||
      b.subjects.size - a.subjects.size || b.attempts - a.attempts);
    const body = clear($('failures-body'));
    const most = sorted.reduce((m, g) => Math.max(m, g.invoices.size), 0);
    for (const g of sorted) {
      const info = causeInfo(g.cause);
      const showButton = el('button', { type: 'button', class: 'quiet', text: 'Show invoices',
        'aria-label': 'Show invoices whose last failure is ' + info.label });
      showButton.addEventListener('click', () => {
        window.location.hash = tenantHash(tenant, { cause: g.cause });
      });
      body.append(el('tr', { 'data-cause': g.cause, 'data-testid': 'failure-group' },
        el('th', { scope: 'row' }, el('span', { class: 'cause-name', text: info.label }), ' ',
          el('code', { text: g.cause }),
          el('div', { class: 'hint', text: g.advice || info.advice })),
        el('td', { class: 'num' },
          el('span', { 'data-testid': 'failure-invoices', text: String(g.invoices.size) }),
          most > 0 ? el('meter', { min: 0, max: most, value: g.invoices.size, 'aria-hidden': 'true' }) : null),
        el('td', { class: 'num', 'data-testid': 'failure-attempts', text: String(g.attempts) }),
        el('td', {}, timeEl(g.last)),
        el('td', {}, showButton)));
    }
    const headline = $('failures-headline');
    const period = $('failures-period').selectedOptions[0].textContent;
    if (!sorted.length) {
      headline.textContent = 'No failure in the ' + (period === 'all time' ? 'whole history' : period) + '.';
      headline.className = 'headline ok';
    } else {
      const top = sorted[0];
      const info = causeInfo(top.cause);
      const connection = sorted.filter((g) => causeInfo(g.cause).connection)
        .reduce((n, g) => n + g.invoices.size, 0);
      if (connection > 0) {
        headline.textContent = connection + ' invoice(s) failed on the Bling connection itself: ' +
          'this is a connection problem, not a data problem. Check the connection and reconnect.';
      } else {
        headline.textContent = 'Most failures: ' + info.label + ' (' + top.invoices.size + ' invoice(s)).';
      }
      headline.className = 'headline warn';
    }
    setText('failures-note', truncated
      ? 'Only the 2000 most recent failures are counted; narrow the period for exact counts.'
      : failures.length + ' failed attempt(s) counted; an invoice counts once per cause.');
  }

  async function loadInvoices(more) {
    const f = current.filters;
    const params = new URLSearchParams({ limit: '50' });
    if (f.state) params.set('state', f.state);
    if (f.cause) params.set('cause', f.cause);
    if (f.q) params.set('q', f.q);
    if (more && current.cursor) params.set('cursor', current.cursor);
    setText('invoices-status', 'Loading…');
    let data;
    try {
      data = await api('GET', tenantPath(current.tenant) + '/invoices?' + params.toString());
    } catch (e) {
      setText('invoices-status', '');
      if (e.status === 400 && e.fields && e.fields.length) {
        flash('Search: ' + e.fields.map((p) => p.field + ' ' + p.problem).join('; '), true);
      } else {
        failed(e, 'Invoices');
      }
      return;
    }
    const body = $('invoices-body');
    if (!more) clear(body);
    for (const inv of data.invoices || []) body.append(invoiceRow(inv));
    current.cursor = data.next_cursor || null;
    show('invoices-more', !!current.cursor);
    const n = body.rows.length;
    const filtered = f.state || f.cause || f.q;
    setText('invoices-status', n === 0
      ? (filtered ? 'No invoice matches these filters.' : 'No invoice yet.')
      : n + ' invoice(s) shown, newest first' + (current.cursor ? '; more below.' : '.'));
  }

  function invoiceRow(inv) {
    const cause = inv.last_cause;
    const showCause = cause && inv.state !== 'synced' && inv.state !== 'cancelled';
    return el('tr', { 'data-invoice': inv.invoice_id, 'data-state': inv.state },
      el('th', { scope: 'row' },
        el('a', { href: invoiceHash(inv.tenant, inv.invoice_id), text: inv.number }),
        inv.number !== inv.invoice_id ? el('div', { class: 'hint', text: inv.invoice_id }) : null),
      el('td', { text: inv.customer_id }),
      el('td', { class: 'num', 'data-testid': 'invoice-total', text: money(inv.total_centavos, inv.total) }),
      el('td', {}, stateBadge(inv.state)),
      el('td', {}, showCause
        ? [el('span', { text: causeInfo(cause.kind).label }), el('div', { class: 'hint', text: cause.message || '' })]
        : '—'),
      el('td', {}, timeEl(inv.updated_at)));
  }

  // ---- one invoice: state, cause and advice, timeline, reprocess ------------------------

  async function loadInvoice(tenant, invoice) {
    setText('invoice-title', 'Invoice ' + invoice);
    setText('reprocess-status', '');
    let history;
    try {
      history = await api('GET', tenantPath(tenant) + '/invoices/' + enc(invoice) + '/history');
    } catch (e) {
      if (e.status === 404) {
        flash('No invoice "' + invoice + '" in ' + tenant + ' (yet: views follow the log within a moment).', true);
      } else {
        failed(e, 'Invoice');
      }
      return null;
    }
    renderInvoice(history.invoice);
    renderTimeline(history);
    loadCustomer(tenant, history.invoice.customer_id);
    return history.invoice;
  }

  function renderInvoice(inv) {
    setText('invoice-title', 'Invoice ' + inv.number);
    document.title = 'Invoice ' + inv.number + ' · Support console';
    crumbs([['Tenants', '#/'], [inv.tenant, tenantHash(inv.tenant)], ['Invoice ' + inv.number, null]]);
    const state = $('invoice-state');
    state.textContent = inv.state;
    state.className = 'badge badge-' + inv.state;
    state.dataset.state = inv.state;
    setText('invoice-state-note', STATE_NOTES[inv.state] || '');
    const cause = inv.last_cause;
    const open = cause && (inv.state === 'failed' || inv.state === 'parked' || inv.state === 'pending');
    show('invoice-cause', !!open);
    if (open) {
      const info = causeInfo(cause.kind);
      setText('cause-label', info.label);
      setText('cause-kind', cause.kind);
      const fromBling = cause.kind.startsWith('bling_') || cause.kind === 'rate_limited' || cause.kind === 'order_refused';
      setText('cause-message', cause.message ? (fromBling ? 'Bling said: ' : 'Details: ') + cause.message : '');
      setText('cause-advice', cause.advice || info.advice);
      $('invoice-cause').dataset.cause = cause.kind;
    }
    show('invoice-reconnect', !!(open && causeInfo(cause.kind).connection));
    // Replaying a synced invoice is allowed (it checks Bling again) but rarely what is needed.
    $('reprocess').classList.toggle('quiet', inv.state === 'synced' || inv.state === 'cancelled');
    const b = inv.bling || {};
    facts($('invoice-facts'), [
      ['Invoice id', el('code', { text: inv.invoice_id })],
      ['Number', inv.number],
      ['Total', el('span', { 'data-testid': 'total', text: money(inv.total_centavos, inv.total) })],
      ['Issue date', el('span', { 'data-testid': 'issue-date', text: day(inv.issue_date) })],
      ['Billed', el('span', { 'data-testid': 'billed-at' }, timeEl(inv.billed_at))],
      ['Bling order', b.order_id ? String(b.order_id) + (b.order_number ? ' (nº ' + b.order_number + ')' : '') : 'not created yet'],
      ['Situação', b.situacao ? b.situacao.name + ' (' + b.situacao.id + ')' : null],
      ['NF-e', b.nfe_id ? String(b.nfe_id) + (b.nfe ? ' (' + b.nfe.status + ')' : '') : null],
      ['NF-e number', b.nfe && b.nfe.numero ? 'nº ' + b.nfe.numero + ' série ' + b.nfe.serie : null],
      ['Chave de acesso', b.nfe && b.nfe.chave_acesso ? el('code', { 'data-testid': 'nfe-chave', text: b.nfe.chave_acesso }) : null],
      ['DANFE', b.nfe && b.nfe.link_danfe ? el('a', { href: b.nfe.link_danfe, text: 'DANFE', rel: 'noopener' }) : null],
      ['NF-e PDF', b.nfe && b.nfe.link_pdf ? el('a', { href: b.nfe.link_pdf, text: 'PDF', rel: 'noopener' }) : null],
      ['SEFAZ reason', b.nfe && b.nfe.reason ? b.nfe.reason : null],
      ['NF-e to cancel in Bling', b.nfe && b.nfe.attention ? b.nfe.attention : null],
      ['Changed in Bling', b.divergence ? el('span', { 'data-testid': 'divergence', text: 'situação ' + (b.divergence.found.situacao_id === null ? 'none (order deleted)' : b.divergence.found.situacao_id) + ' where we set ' + b.divergence.expected.situacao_id + '; by ' + b.divergence.changed_by + ' — resolve with POST …/divergence {"choice":"push_ours"|"accept_bling"}' }) : null],
      ['Content version', 'v' + inv.content_version + (inv.synced_version ? ', Bling has v' + inv.synced_version : '')],
      ['Cancelled', inv.cancelled ? 'yes' + (inv.cancel_reason ? ': ' + inv.cancel_reason : '') : null],
      ['Attempts since last success', inv.attempts ? String(inv.attempts) : null],
      ['Failures in total', String(inv.failures_total)],
      ['Next automatic retry', inv.retry_at ? timeEl(inv.retry_at) : (open && inv.state === 'failed' ? 'none: waits for support' : null)],
      ['Last failure', !open && cause ? causeInfo(cause.kind).label + ' on ' + when(cause.at) + ' (resolved)' : null],
      ['Updated', timeEl(inv.updated_at)],
    ]);
  }

  async function loadCustomer(tenant, customer) {
    const dl = $('customer-facts');
    try {
      const c = await api('GET', tenantPath(tenant) + '/customers/' + enc(customer));
      const lf = c.last_failure;
      facts(dl, [
        ['Customer id', el('code', { text: c.customer_id })],
        ['Name', c.name],
        ['CPF/CNPJ', el('span', { 'data-testid': 'tax-id', text: documentNumber(c.tax_id) })],
        ['Bling contato', c.bling_contact_id ? String(c.bling_contact_id) : 'not linked yet'],
        ['Contato sync', stateBadge(c.state)],
        ['Record version', 'v' + c.profile_version + (c.synced_version ? ', Bling has v' + c.synced_version : '')],
        ['Last contato failure', lf ? causeInfo(lf.kind).label + ': ' + (lf.message || '') : null],
      ]);
    } catch (e) {
      if (e.status === 401) return failed(e);
      facts(dl, [['Customer id', customer], ['Record', 'unavailable: ' + e.message]]);
    }
  }

  function renderTimeline(history) {
    const list = clear($('timeline'));
    for (const e of history.entries || []) {
      const calls = Array.isArray(e.calls) ? e.calls : [];
      const item = el('li', { class: 'entry entry-' + e.subject + (e.cause ? ' entry-failure' : ''),
        'data-event': e.event, 'data-testid': 'timeline-entry' },
      el('div', { class: 'entry-head' },
        timeEl(e.at), ' ',
        el('span', { class: 'subject', text: SUBJECTS[e.subject] || e.subject }), ' ',
        el('strong', { class: 'event', text: e.event }), ' ',
        el('span', { class: 'conn', title: 'Bling connection at that moment' },
          'connection: ', connectionBadge(e.connection_state))),
      el('p', { class: 'summary', text: e.summary }),
      e.actor ? el('p', { class: 'hint', text: 'by ' + e.actor + (e.correlation_id ? ' · request ' + e.correlation_id : '') }) : null);
      if (e.cause) {
        const info = causeInfo(e.cause.kind);
        item.append(el('div', { class: 'entry-cause' },
          el('p', {}, el('strong', { text: info.label }), ' ', el('code', { text: e.cause.kind }),
            e.cause.message ? ': ' + e.cause.message : ''),
          el('p', {}, el('strong', { text: 'What to do: ' }), e.cause.advice || info.advice)));
      }
      if (calls.length) item.append(callsTable(calls));
      list.append(item);
    }
    if (!list.children.length) list.append(el('li', { class: 'hint', text: 'No event yet.' }));
    setText('timeline-note', history.truncated ? 'The timeline is long: only its first entries are shown.' : '');
  }

  function callsTable(calls) {
    const rows = calls.map((c) => el('tr', { class: c.status && c.status < 400 ? 'ok' : 'bad' },
      el('td', {}, el('code', { text: c.method + ' ' + c.path })),
      el('td', { class: 'num', text: c.status === null || c.status === undefined ? 'no answer' : String(c.status) }),
      el('td', { class: 'num', text: c.latency_ms !== undefined ? c.latency_ms + ' ms' : '' }),
      el('td', { text: [c.error_type, c.error_message].filter(Boolean).join(': ') || '—' })));
    return el('div', { class: 'table-wrap' }, el('table', { class: 'calls' },
      el('caption', { class: 'sr-only', text: 'Calls to Bling' }),
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col', text: 'Call to Bling' }),
        el('th', { scope: 'col', class: 'num', text: 'Status' }),
        el('th', { scope: 'col', class: 'num', text: 'Time' }),
        el('th', { scope: 'col', text: "Bling's error" }))),
      el('tbody', {}, rows)));
  }

  // Replay the invoice, then refresh until its state moves on (or fails again).
  async function reprocess() {
    const r = parseHash();
    if (r.view !== 'invoice') return;
    const button = $('reprocess');
    const status = $('reprocess-status');
    button.disabled = true;
    let before;
    try {
      before = await api('GET', tenantPath(r.tenant) + '/invoices/' + enc(r.invoice));
      const answer = await api('POST', tenantPath(r.tenant) + '/replay', { invoice_id: r.invoice });
      status.textContent = 'Reprocessing requested (' + answer.requeued + ' item(s) queued). Waiting for the sync…';
    } catch (e) {
      button.disabled = false;
      status.textContent = '';
      failed(e, 'Reprocess');
      return;
    }
    const poll = newPoll();
    const until = Date.now() + 120 * 1000;
    let last = before.state;
    try {
      while (!poll.stopped && Date.now() < until) {
        await sleep(700);
        if (poll.stopped) return;
        const inv = await api('GET', tenantPath(r.tenant) + '/invoices/' + enc(r.invoice));
        const failedAgain = (inv.state === 'failed' || inv.state === 'parked') && inv.failures_total > before.failures_total;
        if (inv.state !== last) {
          last = inv.state;
          status.textContent = 'Now ' + inv.state + '…';
          renderInvoice(inv);
        }
        if (inv.state === 'synced' || inv.state === 'cancelled' || failedAgain) {
          await loadInvoice(r.tenant, r.invoice);
          status.textContent = failedAgain
            ? 'It failed again: ' + causeInfo(inv.last_cause && inv.last_cause.kind).label + '. See the timeline.'
            : 'Done: the invoice is ' + inv.state + '.';
          return;
        }
      }
      if (!poll.stopped) status.textContent = 'Still ' + last + ' after two minutes; the worker may be busy. Refresh later.';
    } catch (e) {
      status.textContent = '';
      failed(e, 'Reprocess');
    } finally {
      button.disabled = false;
    }
  }

  // Ask for a fresh read of the order and NF-e in Bling, then show the invoice again.
  async function readBling() {
    const r = parseHash();
    if (r.view !== 'invoice') return;
    const button = $('read-bling');
    const status = $('reprocess-status');
    button.disabled = true;
    try {
      await api('POST', tenantPath(r.tenant) + '/invoices/' + enc(r.invoice) + '/refresh');
      status.textContent = 'Reading the order and its NF-e from Bling…';
      await sleep(3000);
      await loadInvoice(r.tenant, r.invoice);
      status.textContent = 'Read from Bling: what it showed is in the timeline (nothing new if it matched).';
    } catch (e) {
      status.textContent = '';
      failed(e, 'Read from Bling');
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring ------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', signIn);
    $('logout').addEventListener('click', () => {
      // The next person starts from the list (a 401 instead keeps the place, to come back to).
      window.history.replaceState(null, '', window.location.pathname + '#/');
      signOut('Signed out.');
    });
    $('invoice-filters').addEventListener('submit', (event) => {
      event.preventDefault();
      window.location.hash = tenantHash(current.tenant, {
        state: $('filter-state').value, cause: $('filter-cause').value, q: $('filter-q').value.trim(),
      });
    });
    $('filter-clear').addEventListener('click', () => {
      window.location.hash = tenantHash(current.tenant);
    });
    $('invoices-more').addEventListener('click', () => loadInvoices(true));
    $('failures-period').addEventListener('change', () => loadFailures(current.tenant));
    $('reconnect').addEventListener('click', () => reconnect(current.tenant, $('reconnect'), $('reconnect-result')));
    $('invoice-reconnect').addEventListener('click', () => {
      const r = parseHash();
      reconnect(r.tenant, $('invoice-reconnect'), $('reprocess-status'));
    });
    $('invoice-refresh').addEventListener('click', () => {
      const r = parseHash();
      if (r.view === 'invoice') loadInvoice(r.tenant, r.invoice);
    });
    $('reprocess').addEventListener('click', reprocess);
    $('read-bling').addEventListener('click', readBling);
    $('link-new').addEventListener('click', () => newLink(current.tenant));
    window.addEventListener('hashchange', () => {
      if (token()) route();
    });
    if (token()) enterApp();
    else signOut('');
  });
})();
