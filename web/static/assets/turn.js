// The TURN tester: like the WebRTC samples' trickle-ICE page, wired to the
// hub's /ice. Gathers candidates against the listed servers and says, per
// server URL, whether it works.

import { describeIceServer, el, fmtExpiry, parseCandidate, parseRestUsername } from './util.js';
import { checkTesterURL, judge } from './verdict.js';

const $ = (id) => document.getElementById(id);
// How long a server gets to answer. Chrome itself reports an unanswered UDP
// server (701) only after about 40 s, and a refused TCP/TLS one not at all;
// a server on the internet answers within a second or two.
const DEFAULT_ANSWER_S = 5;
const TICK_MS = 200; // countdown refresh
const servers = []; // {urls: [...], username, credential}; credentials stay in memory, never rendered
const params = new URLSearchParams(location.search);
const token = params.get('token') || '';

function note(text) {
  $('form-note').textContent = text;
}

$('username').addEventListener('input', () => {
  const rest = parseRestUsername($('username').value);
  $('username-expiry').textContent = rest ? `REST credential: ${fmtExpiry(rest.expiry)}` : '';
});

// Verdicts belong to the servers they were made for: a changed list
// clears them (unless a run is still going, which keeps its own copy).
function clearResults() {
  if (run && !run.finished) return;
  run = null;
  $('verdicts').replaceChildren();
  $('cand-rows').replaceChildren();
  $('error-rows').replaceChildren();
  setStatus('idle', 'Not started.');
}

function renderServers() {
  clearResults();
  const list = $('server-list');
  list.replaceChildren();
  servers.forEach((s, i) => {
    const d = describeIceServer(s);
    let cred = 'no credential';
    if (d.hasCredential) cred = d.expiry ? `credential hidden, ${fmtExpiry(d.expiry)}` : 'credential hidden';
    const rm = el('button', { type: 'button', class: 'secondary', text: 'Remove' });
    rm.addEventListener('click', () => {
      servers.splice(i, 1);
      renderServers();
    });
    list.append(el('li', { 'data-testid': 'server' },
      el('div', { class: 'row' },
        el('div', { class: 'grow' },
          el('div', { class: 'mono', text: d.urls.join('  ') }),
          el('div', { class: 'note', text: s.username ? `user ${s.username} · ${cred}` : cred })),
        rm)));
  });
  if (!servers.length) list.append(el('li', { class: 'note', text: 'No servers yet: gathering will find host candidates only.' }));
}

$('server-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const urls = $('url').value.split(/[\s,]+/).filter(Boolean);
  if (!urls.length) {
    note('Enter at least one stun:, turn: or turns: URL.');
    return;
  }
  const bad = urls.map((u) => [u, checkTesterURL(u)]).filter(([, why]) => why);
  if (bad.length) {
    note(`Not added: ${bad.map(([u, why]) => `${u}: ${why}`).join('; ')}.`);
    $('form-note').dataset.state = 'rejected';
    return;
  }
  $('form-note').dataset.state = 'ok';
  const s = { urls };
  if ($('username').value) s.username = $('username').value;
  if ($('credential').value) s.credential = $('credential').value;
  servers.push(s);
  $('url').value = '';
  $('credential').value = '';
  note(`Added ${urls.length} URL(s).`);
  renderServers();
});

$('clear-servers').addEventListener('click', () => {
  servers.length = 0;
  renderServers();
});

$('fetch-ice').addEventListener('click', async () => {
  note('Asking the hub…');
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const url = token ? `/ice?token=${encodeURIComponent(token)}` : '/ice';
    const res = await fetch(url, { headers, credentials: 'same-origin', cache: 'no-store' });
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && body.message) msg += `: ${body.message}`;
      } catch { /* not JSON */ }
      throw new Error(msg);
    }
    const body = await res.json();
    const list = Array.isArray(body) ? body : body.iceServers;
    if (!Array.isArray(list)) throw new Error('unexpected answer from /ice');
    for (const s of list) {
      const urls = [].concat(s.urls || []).filter((u) => !checkTesterURL(u));
      if (!urls.length) continue;
      servers.push({ urls, username: s.username, credential: s.credential });
    }
    note(`The hub gave ${list.length} server(s).`);
    renderServers();
  } catch (err) {
    note(`Could not get servers from the hub: ${err.message}`);
  }
});

// ---- gathering ----------------------------------------------------------

let run = null;

function setStatus(state, text) {
  const s = $('gather-status');
  s.dataset.state = state;
  s.textContent = text;
}

function renderVerdicts() {
  if (!run) return;
  const urls = run.servers.flatMap((s) => s.urls);
  const list = $('verdicts');
  list.replaceChildren();
  if (!run.finished) run.elapsedMs = performance.now() - run.t0;
  const verdicts = judge(urls, run.cands, run.errors, run);
  for (const v of verdicts) {
    list.append(el('li', { 'data-testid': 'verdict', 'data-verdict': v.verdict, 'data-url': v.url, 'data-left': v.final ? null : String(Math.ceil(v.leftMs / 1000)) },
      el('b', { text: label(v.verdict) }), ' ', el('span', { class: 'mono', text: v.url }), el('br'), el('span', { text: v.text })));
  }
  if (!urls.length) list.append(el('li', { class: 'note', text: 'No servers: host candidates only.' }));
  // Every server has its verdict: nothing more to wait for.
  if (!run.finished && urls.length && verdicts.every((v) => v.final)) finish(false, 'every server has a verdict');
}

function label(verdict) {
  return { works: 'works', 'auth-failed': 'authentication failed?', unreachable: 'unreachable', 'no-answer': 'no answer', error: 'error', 'no-candidates': 'no candidates', pending: '…' }[verdict] || verdict;
}

function finish(timedOut, why = '') {
  if (!run || run.finished) return;
  run.elapsedMs = performance.now() - run.t0;
  run.finished = true;
  run.timedOut = timedOut;
  clearInterval(run.ticker);
  const took = ((performance.now() - run.t0) / 1000).toFixed(2);
  run.pc.close();
  if (!run.errors.length) $('error-rows').append(el('tr', {}, el('td', { colspan: '5', class: 'note', text: 'none' })));
  setStatus('done', timedOut ? `Stopped after ${took} s without the browser finishing.`
    : `${why ? `Done in ${took} s (${why})` : `Gathering complete in ${took} s`}: ${run.cands.length} candidate(s), ${run.errors.length} error(s).`);
  $('gather').disabled = false;
  $('stop').disabled = true;
  renderVerdicts();
}

$('stop').addEventListener('click', () => finish(true));

$('gather').addEventListener('click', async () => {
  if (run && !run.finished) return;
  $('cand-rows').replaceChildren();
  $('error-rows').replaceChildren();
  $('verdicts').replaceChildren();
  const policy = $('relay-only').checked ? 'relay' : 'all';
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: policy, iceCandidatePoolSize: 0 });
  } catch (err) {
    setStatus('failed', `The browser rejected the server list: ${err.message}`);
    return;
  }
  const answer = Number($('give-up').value);
  const deadlineMs = 1000 * (Number.isFinite(answer) && answer >= 1 && answer <= 60 ? answer : DEFAULT_ANSWER_S);
  run = { pc, servers: servers.map((s) => ({ ...s })), cands: [], errors: [], t0: performance.now(), elapsedMs: 0, finished: false, timedOut: false, timeoutMs: deadlineMs, deadlineMs };
  const r = run;
  // The countdown: re-judge until every server has a verdict.
  r.ticker = setInterval(() => { if (run === r && !r.finished) renderVerdicts(); }, TICK_MS);
  $('gather').disabled = true;
  $('stop').disabled = false;
  setStatus('running', `Gathering (${policy === 'relay' ? 'relay only' : 'all candidate types'})…`);
  renderVerdicts();

  pc.addEventListener('icecandidate', ({ candidate }) => {
    if (run !== r || r.finished) return;
    if (!candidate || !candidate.candidate) {
      finish(false);
      return;
    }
    const p = parseCandidate(candidate.candidate);
    if (!p) return;
    const c = { ...p, t: performance.now() - r.t0, url: candidate.url || '', relayProtocol: candidate.relayProtocol || '' };
    r.cands.push(c);
    $('cand-rows').append(el('tr', { 'data-testid': 'tester-candidate', 'data-type': c.type },
      el('td', { text: `${(c.t / 1000).toFixed(3)} s` }),
      el('td', {}, el('span', { class: `pill t-${c.type}`, text: c.type })),
      el('td', { text: c.protocol }),
      el('td', { text: c.relayProtocol || '' }),
      el('td', { class: 'mono', text: c.address }),
      el('td', { class: 'mono', text: String(c.port) }),
      el('td', { class: 'mono', text: String(c.priority) }),
      el('td', { class: 'mono', text: c.url })));
    renderVerdicts();
  });
  pc.addEventListener('icecandidateerror', (e) => {
    if (run !== r || r.finished) return;
    const err = { t: performance.now() - r.t0, url: e.url || '', errorCode: e.errorCode, errorText: e.errorText || '', address: e.address || '', port: e.port || '' };
    r.errors.push(err);
    $('error-rows').append(el('tr', { 'data-testid': 'tester-error', 'data-code': String(err.errorCode) },
      el('td', { text: `${(err.t / 1000).toFixed(3)} s` }),
      el('td', { class: 'mono', text: err.url }),
      el('td', { text: String(err.errorCode) }),
      el('td', { text: err.errorText }),
      el('td', { class: 'mono', text: err.address ? `${err.address}:${err.port}` : '' })));
    renderVerdicts();
  });
  pc.addEventListener('icegatheringstatechange', () => {
    if (pc.iceGatheringState === 'complete' && run === r) finish(false);
  });

  try {
    pc.createDataChannel('probe'); // something to negotiate, so gathering starts
    await pc.setLocalDescription(await pc.createOffer());
  } catch (err) {
    finish(false);
    setStatus('failed', `Could not start gathering: ${err.message}`);
  }
});

renderServers();
