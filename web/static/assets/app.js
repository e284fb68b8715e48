// The demo page: joins a room on the hub, keeps one PeerLink per remote
// peer (a small mesh), and renders chat, file transfers and the live panel.

import { HubClient } from './signaling.js';
import { PeerLink } from './peer.js';
import { answerThroughput, MAX_FILE_BYTES, prepareFile, receiveFile, runThroughput, sendFile } from './transfer.js';
import {
  canHash, describeIceServer, el, fmtBitrate, fmtBytes, fmtDuration, fmtExpiry, fmtRel, hostPort, randomRoomName, validRoomName,
} from './util.js';

const $ = (id) => document.getElementById(id);
const STATS_EVERY_MS = 1000;

// ---- room and URL -------------------------------------------------------

const params = new URLSearchParams(location.search);
let room = params.get('room') || '';
if (!validRoomName(room)) {
  room = randomRoomName();
  params.set('room', room);
  history.replaceState(null, '', `${location.pathname}?${params}`);
}
// A join token (or an invite) leaves the address bar at once, so copying
// the page's URL never shares it; this tab keeps it for reloads.
const TOKEN_KEY = `rtcsuite.token.${room}`;
const token = params.get('token') || sessionGet(TOKEN_KEY);
if (params.has('token')) {
  sessionSet(TOKEN_KEY, token);
  params.delete('token');
  history.replaceState(null, '', `${location.pathname}?${params}`);
}
const relayOnly = $('relay-only');

function sessionGet(key) {
  try {
    return sessionStorage.getItem(key) || '';
  } catch {
    return '';
  }
}

function sessionSet(key, value) {
  try {
    sessionStorage.setItem(key, value);
  } catch { /* storage disabled: a reload needs the link again */ }
}
relayOnly.checked = params.get('relay') === '1';

// In token mode the link carries an invite the hub mints for it (never our
// own token); until it arrives there is nothing to share.
const plainShareURL = `${location.origin}/?room=${encodeURIComponent(room)}`;
let shareURL = token ? '' : plainShareURL;
$('room-name').textContent = room;
$('share-link').value = shareURL;
if (token) {
  $('share-link').placeholder = 'asking the hub for an invite…';
  $('copy-link').disabled = true;
}
$('max-file').textContent = fmtBytes(MAX_FILE_BYTES);
document.title = `rtcsuite · ${room}`;

// ---- secure context -----------------------------------------------------

const canCapture = Boolean(window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
if (!window.isSecureContext) {
  const note = $('secure-note');
  note.hidden = false;
  note.textContent = 'This page came over plain HTTP from another host, so it is not a secure context. ' +
    'Received files cannot be checked with SHA-256 (they are marked "not verified"), the Copy button ' +
    'cannot use the clipboard, and the browser will not give the page your camera or microphone. Open it over ' +
    'HTTPS (signal -dev -dev-https) or on localhost for those features.';
}

// ---- display name -------------------------------------------------------

const NAME_KEY = 'rtcsuite.name';
const MAX_NAME = 64;
const tokenName = jwtName(token); // a join token's name wins over ours
const nameInput = $('display-name');

function storedName() {
  try {
    return (localStorage.getItem(NAME_KEY) || '').slice(0, MAX_NAME);
  } catch {
    return ''; // storage disabled
  }
}

/** The "name" claim of a JWT, without verifying it (the hub does). */
function jwtName(jwt) {
  try {
    const part = jwt.split('.')[1];
    if (!part) return '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
    return typeof claims.name === 'string' ? claims.name : '';
  } catch {
    return '';
  }
}

function cleanName(s) {
  return String(s).replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, MAX_NAME);
}

let myName = tokenName || storedName();
nameInput.value = myName;
if (tokenName) {
  nameInput.disabled = true;
  $('name-note').textContent = 'Your name comes from your join token.';
}
nameInput.addEventListener('change', () => {
  myName = cleanName(nameInput.value);
  nameInput.value = myName;
  try {
    localStorage.setItem(NAME_KEY, myName);
  } catch { /* storage disabled: the name lasts for this page only */ }
  hub.name = myName; // for the next join
  for (const { link } of links.values()) announceName(link);
  $('name-note').textContent = myName ? 'Saved on this device; the others see it now.' : '';
});

function announceName(link) {
  if (!tokenName && myName) link.sendControl({ type: 'name', name: myName });
}

$('copy-link').addEventListener('click', async () => {
  const note = $('copy-note');
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(shareURL);
      note.textContent = 'Link copied.';
      return;
    } catch (err) {
      note.textContent = `Copying failed (${err.message}); the link is selected, copy it by hand.`;
    }
  } else {
    note.textContent = 'Copying to the clipboard needs a secure context (HTTPS); the link is selected, copy it by hand.';
  }
  $('share-link').select();
});
$('share-link').addEventListener('focus', (e) => e.target.select());

// ---- signaling ----------------------------------------------------------

const wsURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const hub = new HubClient({ url: wsURL, room, token, name: tokenName ? '' : myName });
const links = new Map(); // peer id -> {link, card}
// Display names of peers: from the hub (join names, token names), or
// announced over the control channel. In token mode a name the hub gave
// (it may come from the peer's token) is not overridden by an announcement.
const names = new Map(); // peer id -> {name, fromHub}

function nameOf(id) {
  const n = names.get(id);
  return n && n.name ? n.name : '';
}

function setName(id, name, fromHub) {
  const cur = names.get(id);
  if (!fromHub && token && cur && cur.fromHub && cur.name) return;
  names.set(id, { name, fromHub: fromHub && Boolean(name) });
  const entry = links.get(id);
  if (entry) {
    field(entry.card, 'id').textContent = name ? `${name} · ${id}` : id;
    entry.card.dataset.peerName = name;
    if (entry.tile) entry.tile.querySelector('figcaption').textContent = name || id;
  }
  for (const li of document.querySelectorAll(`[data-testid=chat-msg][data-from="${CSS.escape(id)}"] .who`)) li.textContent = name || id;
}

function iceConfig() {
  return { iceServers: hub.iceServers, iceTransportPolicy: relayOnly.checked ? 'relay' : 'all' };
}

function logSig(text) {
  const log = $('sig-log');
  log.append(el('li', {}, el('time', { text: fmtRel(performance.now(), 0) }), ' ', text));
  while (log.children.length > 200) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

hub.addEventListener('state', ({ detail }) => {
  const status = $('status');
  status.dataset.state = detail.state;
  status.textContent = detail.state === 'full' ? 'Room full: this room already has as many peers as the hub allows.' : detail.text;
  const full = detail.state === 'full';
  document.body.classList.toggle('room-full', full);
  $('full-help').hidden = !full;
  $('hub-state').textContent = detail.state;
  logSig(`hub: ${detail.state}`);
});

hub.addEventListener('welcome', ({ detail }) => {
  $('self-id').textContent = detail.id;
  $('self-name').textContent = detail.name || '';
  if (token) hub.requestInvite();
  renderIceServers(detail.iceServers);
  logSig(detail.resumed ? `resumed as ${detail.id}` : `welcome: id ${detail.id}, ${detail.peers.length} peer(s) already here`);
  if (!detail.resumed) {
    for (const id of [...links.keys()]) dropPeer(id);
  } else if (detail.peers) {
    const present = new Set(detail.peers.map((p) => p.id));
    for (const id of [...links.keys()]) if (!present.has(id)) dropPeer(id);
  }
  // We are the later joiner towards everyone in a fresh welcome (polite); peers
  // that showed up while we were away joined after us (we stay impolite).
  for (const p of detail.peers || []) {
    if (!links.has(p.id)) addPeer(p.id, detail.names[p.id] || p.name || '', !detail.resumed);
  }
});

// ---- invites ------------------------------------------------------------

let inviteTimer = 0;
hub.addEventListener('invite', ({ detail }) => {
  clearTimeout(inviteTimer);
  const note = $('invite-note');
  if (!detail.token) {
    shareURL = plainShareURL; // an open hub: the room name is enough
  } else {
    shareURL = `${plainShareURL}&token=${encodeURIComponent(detail.token)}`;
    const expires = new Date(detail.expires * 1000);
    note.textContent = `The link carries an invite the hub made for this room only (not your own token). ` +
      `It lets people join until ${expires.toLocaleTimeString([], { hour12: false })}; a fresh one replaces it before then.`;
    // Ask again at 80 % of its lifetime so the link on screen keeps working.
    const left = expires.getTime() - Date.now();
    if (left > 0) inviteTimer = setTimeout(() => hub.requestInvite(), Math.max(left * 0.8, 10_000));
  }
  $('share-link').value = shareURL;
  $('share-link').dataset.invite = detail.token ? 'yes' : 'no';
  $('copy-link').disabled = false;
  logSig(detail.token ? 'invite from the hub for the share link' : 'open hub: the plain link admits');
});

hub.addEventListener('peer-joined', ({ detail }) => {
  logSig(`peer-joined ${detail.id}${detail.name ? ` (${detail.name})` : ''}`);
  if (!links.has(detail.id)) addPeer(detail.id, detail.name, false);
});

hub.addEventListener('peer-left', ({ detail }) => {
  logSig(`peer-left ${detail.id}`);
  dropPeer(detail.id);
});

hub.addEventListener('signal', ({ detail }) => {
  let entry = links.get(detail.from);
  if (!entry) {
    // A peer we have not heard of yet (its peer-joined is still in flight).
    entry = addPeer(detail.from, '', false);
  }
  entry.link.handleSignal(detail.data);
});

hub.addEventListener('ice-servers', ({ detail }) => {
  renderIceServers(detail.iceServers);
  logSig('fresh ICE servers from the hub (used at the next ICE restart)');
  for (const { link } of links.values()) link.setConfig(iceConfig());
});

hub.addEventListener('hub-error', ({ detail }) => logSig(`error ${detail.code}: ${detail.message || ''}`));

// The switch applies to this page's side only, now: every link moves to a
// new connection with the new policy (peer.js explains why not just an ICE
// restart). The other page follows without changing its own policy.
relayOnly.addEventListener('change', () => {
  const on = relayOnly.checked;
  logSig(`relay only ${on ? 'on' : 'off'}: reconnecting every peer with iceTransportPolicy "${on ? 'relay' : 'all'}"`);
  for (const { link } of links.values()) link.switchPolicy(iceConfig(), `relay only ${on ? 'on' : 'off'}`);
});

function renderIceServers(servers) {
  const list = $('ice-servers');
  list.replaceChildren();
  for (const s of servers) {
    const d = describeIceServer(s);
    const li = el('li', { 'data-kind': d.kind }, el('span', { class: 'mono', text: d.urls.join(', ') }));
    if (d.hasCredential) li.append(' ', el('span', { class: 'note', text: d.expiry ? `credential ${fmtExpiry(d.expiry)}` : 'credential set' }));
    list.append(li);
  }
  if (!servers.length) list.append(el('li', { class: 'note', text: 'none (host candidates only)' }));
}

// ---- peers --------------------------------------------------------------

function addPeer(id, name, polite) {
  const card = $('peer-template').content.firstElementChild.cloneNode(true);
  card.dataset.peerId = id;
  const link = new PeerLink({ id, name, polite, config: iceConfig(), send: (data) => hub.sendSignal(id, data) });
  const entry = { link, card, renderedCands: 0, scheduled: false, tile: null };
  links.set(id, entry);
  setName(id, name, true);
  if (localStream) link.setLocalStream(localStream);
  field(card, 'role').textContent = polite ? 'we are polite' : 'we are impolite';
  card.querySelector('[data-action="restart"]').addEventListener('click', () => link.restart('button'));
  card.querySelector('[data-action="throughput"]').addEventListener('click', async (e) => {
    e.target.disabled = true;
    link.throughput = 'running…';
    render(entry);
    try {
      const r = await runThroughput(link.pc);
      link.throughput = `${fmtBitrate(r.bitsPerSecond)} (${fmtBytes(r.bytes)} in ${fmtDuration(r.ms)})`;
    } catch (err) {
      link.throughput = `failed: ${err.message}`;
    }
    e.target.disabled = false;
    render(entry);
  });
  link.addEventListener('change', () => schedule(entry));
  link.addEventListener('chat', ({ detail }) => addChat(id, detail.text));
  link.addEventListener('log', ({ detail }) => logSig(`${id}: ${detail.text}`));
  link.addEventListener('open', () => {
    logSig(link.connections > 1 ? `${id}: data channel open again (connection ${link.connections})`
      : `${id}: data channel open (${fmtDuration(link.dcOpenAt)} after this page started loading)`);
    announceName(link);
  });
  link.addEventListener('name', ({ detail }) => setName(id, cleanName(detail.name), false));
  link.addEventListener('track', () => ensureTile(entry));
  link.addEventListener('untrack', () => {
    if (entry.tile && !link.remoteStream.getTracks().length) {
      entry.tile.remove();
      entry.tile = null;
    }
  });
  link.addEventListener('reset', () => {
    if (entry.tile) entry.tile.remove();
    entry.tile = null;
    entry.renderedCands = 0;
    field(card, 'cands').replaceChildren();
  });
  link.addEventListener('datachannel', ({ detail }) => {
    if (detail.dc.label === 'file') acceptFile(id, detail.dc);
    else if (detail.dc.label === 'bench') answerThroughput(detail.dc);
    else detail.dc.close();
  });
  $('peers').append(card);
  updatePeerCount();
  render(entry);
  return entry;
}

function dropPeer(id) {
  const entry = links.get(id);
  if (!entry) return;
  entry.link.close();
  entry.card.remove();
  if (entry.tile) entry.tile.remove();
  links.delete(id);
  names.delete(id);
  updatePeerCount();
}

function updatePeerCount() {
  $('peer-count').textContent = String(links.size);
  $('no-peers').hidden = links.size > 0;
}

function field(card, name) {
  return card.querySelector(`[data-field="${name}"]`);
}

function schedule(entry) {
  if (entry.scheduled) return;
  entry.scheduled = true;
  requestAnimationFrame(() => {
    entry.scheduled = false;
    render(entry);
  });
}

// The tests read these fields; keep data-testid names stable.
function render(entry) {
  const { link, card } = entry;
  const pc = link.pc;
  const dcState = link.dc ? link.dc.readyState : 'none';
  field(card, 'conn-state').textContent = pc.connectionState;
  card.dataset.conn = pc.connectionState;
  field(card, 'signaling-state').textContent = pc.signalingState;
  field(card, 'ice-state').textContent = pc.iceConnectionState;
  field(card, 'gathering-state').textContent = pc.iceGatheringState;
  field(card, 'dc-state').textContent = dcState;
  card.dataset.dc = dcState;
  if (Number.isFinite(link.dcOpenAt)) card.dataset.dcOpenMs = link.dcOpenAt.toFixed(1);

  const sel = link.selected;
  if (sel && sel.local && sel.remote) {
    const side = (c) => `${c.type} ${c.protocol} ${hostPort(c.address, c.port)}${c.relayProtocol ? ` (TURN over ${c.relayProtocol})` : ''}`;
    field(card, 'selected').textContent = `${side(sel.local)}  ⇄  ${side(sel.remote)}`;
    field(card, 'sel-local-type').textContent = sel.local.type;
    field(card, 'sel-remote-type').textContent = sel.remote.type;
    card.dataset.selectedLocal = sel.local.type;
    card.dataset.selectedRemote = sel.remote.type;
    field(card, 'ice-rtt').textContent = Number.isFinite(sel.rtt) ? fmtDuration(sel.rtt * 1000) : '–';
  } else {
    // No pair selected (yet, or on a connection that just replaced another).
    field(card, 'selected').textContent = '–';
    field(card, 'sel-local-type').textContent = '?';
    field(card, 'sel-remote-type').textContent = '?';
    delete card.dataset.selectedLocal;
    delete card.dataset.selectedRemote;
  }
  field(card, 'app-rtt').textContent = Number.isFinite(link.appRtt) ? fmtDuration(link.appRtt) : '–';
  field(card, 'rate-out').textContent = fmtBitrate(link.rateOut);
  field(card, 'rate-in').textContent = fmtBitrate(link.rateIn);
  field(card, 'throughput').textContent = link.throughput || '–';
  field(card, 'restarts').textContent = String(link.restarts);
  field(card, 'connections').textContent = String(link.connections);
  card.dataset.connections = String(link.connections);
  field(card, 'policy').textContent = link.config.iceTransportPolicy || 'all';
  card.dataset.policy = link.config.iceTransportPolicy || 'all';
  renderMedia(entry);
  card.dataset.restarts = String(link.restarts);
  card.dataset.ice = pc.iceConnectionState;
  card.dataset.localCandidates = String(link.candidates.filter((c) => c.side === 'local').length);

  const body = field(card, 'cands');
  for (; entry.renderedCands < link.candidates.length; entry.renderedCands++) {
    const c = link.candidates[entry.renderedCands];
    body.append(el('tr', { 'data-side': c.side, 'data-type': c.type },
      el('td', { text: c.side }),
      el('td', { text: fmtRel(c.t, link.t0) }),
      el('td', {}, el('span', { class: `pill t-${c.type}`, text: c.type })),
      el('td', { text: c.protocol + (c.relayProtocol ? ` via ${c.relayProtocol}` : '') }),
      el('td', { class: 'mono', text: hostPort(c.address, c.port) })));
  }
  field(card, 'cand-count').textContent = String(link.candidates.length);

  const tl = field(card, 'timeline');
  for (let i = tl.children.length; i < link.timeline.length; i++) {
    const e = link.timeline[i];
    tl.append(el('li', {}, el('time', { text: fmtRel(e.t, link.t0) }), ` ${e.what}: `, el('b', { text: String(e.value) })));
  }
}

setInterval(async () => {
  for (const entry of links.values()) await entry.link.pollStats();
}, STATS_EVERY_MS);

function renderMedia(entry) {
  const rows = entry.link.media;
  const body = field(entry.card, 'media');
  body.replaceChildren(...rows.map((m) => el('tr', {
    'data-testid': 'media-stat', 'data-dir': m.dir, 'data-kind': m.kind, 'data-codec': m.codec,
    'data-frames-decoded': Number.isFinite(m.framesDecoded) ? String(m.framesDecoded) : '',
  },
  el('td', { text: m.dir }),
  el('td', { text: m.kind }),
  el('td', { class: 'mono', text: m.codec || '–' }),
  el('td', { text: fmtBitrate(m.bitrate) }),
  el('td', { text: Number.isFinite(m.fps) ? m.fps.toFixed(0) : '–' }),
  el('td', { text: m.dir === 'in' ? (Number.isFinite(m.framesDecoded) ? String(m.framesDecoded) : '–') : (Number.isFinite(m.framesSent) ? String(m.framesSent) : '–') }),
  el('td', { text: Number.isFinite(m.loss) ? `${(m.loss * 100).toFixed(1)} %` : '–' }))));
  field(entry.card, 'media-count').textContent = String(rows.length);
}

// ---- call ---------------------------------------------------------------

let localStream = null;
let localTile = null;
const callNote = $('call-note');

function showCallNote(text) {
  callNote.hidden = !text;
  callNote.textContent = text;
}

if (!canCapture) {
  $('call-start').disabled = true;
  showCallNote(window.isSecureContext
    ? 'This browser offers no camera or microphone API (navigator.mediaDevices).'
    : 'Camera and microphone need a secure context, and this page is not one: open it over HTTPS ' +
      '(signal -dev -dev-https) or on http://localhost. You still receive the others\' video here.');
}

function tile(label, stream, muted) {
  const video = el('video', { autoplay: true, playsinline: true });
  video.muted = true; // sound plays through the audio element (autoplay rules allow muted video)
  video.srcObject = stream;
  const fig = el('figure', { class: 'tile', 'data-testid': 'tile' }, video, el('figcaption', { text: label }));
  if (!muted) {
    const audio = el('audio', { autoplay: true });
    audio.srcObject = stream;
    fig.append(audio);
    audio.play().catch(() => {
      // The browser wants a gesture before playing sound.
      const b = el('button', { type: 'button', class: 'unmute', text: 'Click for sound' });
      b.addEventListener('click', () => audio.play().then(() => b.remove(), () => {}));
      fig.append(b);
    });
  }
  return fig;
}

function ensureTile(entry) {
  if (entry.tile) return;
  const id = entry.link.id;
  entry.tile = tile(nameOf(id) || id, entry.link.remoteStream, false);
  entry.tile.dataset.peerId = id;
  $('tiles').append(entry.tile);
}

function setCallButtons() {
  const on = Boolean(localStream);
  $('call-start').disabled = on || !canCapture;
  for (const b of ['call-mute', 'call-camera', 'call-stop']) $(b).disabled = !on;
  if (!on) {
    $('call-mute').setAttribute('aria-pressed', 'false');
    $('call-camera').setAttribute('aria-pressed', 'false');
  }
}

$('call-start').addEventListener('click', async () => {
  $('call-start').disabled = true;
  showCallNote('');
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  } catch (err) {
    showCallNote(`The browser gave no camera or microphone: ${err.name === 'NotAllowedError' ? 'permission denied' : err.message}.`);
    localStream = null;
    setCallButtons();
    return;
  }
  localTile = tile(`you${myName ? ` (${myName})` : ''}`, localStream, true);
  localTile.dataset.peerId = 'me';
  $('tiles').prepend(localTile);
  for (const { link } of links.values()) link.setLocalStream(localStream);
  logSig(`call: sending ${localStream.getTracks().map((t) => t.kind).join(' + ')} to ${links.size} peer(s)`);
  setCallButtons();
});

function toggleTrack(kind, button, offText, onText) {
  if (!localStream) return;
  const tracks = kind === 'audio' ? localStream.getAudioTracks() : localStream.getVideoTracks();
  const enabled = !tracks.every((t) => t.enabled);
  for (const t of tracks) t.enabled = enabled;
  button.setAttribute('aria-pressed', String(!enabled));
  button.textContent = enabled ? offText : onText;
}

$('call-mute').addEventListener('click', (e) => toggleTrack('audio', e.currentTarget, 'Mute', 'Unmute'));
$('call-camera').addEventListener('click', (e) => toggleTrack('video', e.currentTarget, 'Camera off', 'Camera on'));
$('call-stop').addEventListener('click', () => {
  if (!localStream) return;
  for (const t of localStream.getTracks()) t.stop();
  localStream = null;
  if (localTile) localTile.remove();
  localTile = null;
  for (const { link } of links.values()) link.setLocalStream(null);
  $('call-mute').textContent = 'Mute';
  $('call-camera').textContent = 'Camera off';
  logSig('call: hung up');
  setCallButtons();
});

// ---- chat ---------------------------------------------------------------

function addChat(from, text) {
  const log = $('chat-log');
  const mine = from === 'me';
  log.append(el('li', { class: mine ? 'mine' : '', 'data-testid': 'chat-msg', 'data-from': from },
    el('span', { class: 'who', text: mine ? 'you' : nameOf(from) || from }), el('span', { class: 'text', text })));
  while (log.children.length > 300) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text) return;
  let sent = 0;
  for (const { link } of links.values()) if (link.sendControl({ type: 'chat', text })) sent++;
  if (!sent) {
    logSig('chat: nobody connected yet');
    return;
  }
  addChat('me', text);
  input.value = '';
});

// ---- files --------------------------------------------------------------

function transferItem(direction, peer, name, size) {
  const progress = el('progress', { max: String(Math.max(size, 1)), value: '0' });
  const status = el('span', { class: 'tstatus', text: direction === 'out' ? 'sending…' : 'receiving…' });
  const li = el('li', { 'data-testid': 'transfer', 'data-direction': direction, 'data-peer': peer, 'data-name': name, 'data-state': 'running' },
    el('div', { class: 'tname' }, el('span', { text: direction === 'out' ? '↑ ' : '↓ ' }), el('b', { text: name }),
      el('span', { class: 'note', text: ` ${fmtBytes(size)} ${direction === 'out' ? 'to' : 'from'} ${peer}` })),
    progress, status);
  $('transfers').prepend(li);
  return {
    li,
    progress: (n) => { progress.value = n; },
    finish: (state, text) => {
      li.dataset.state = state;
      status.textContent = text;
      progress.value = progress.max;
    },
  };
}

const VERDICT_TEXT = {
  match: 'SHA-256 matches',
  mismatch: 'SHA-256 MISMATCH: the file is corrupt',
  unverified: 'not verified (SHA-256 needs a secure context on both ends)',
};

$('file-input').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (!file) return;
  const targets = [...links.values()].filter(({ link }) => link.open);
  if (!targets.length) {
    logSig('file: nobody connected yet');
    return;
  }
  let prepared;
  try {
    prepared = await prepareFile(file);
  } catch (err) {
    transferItem('out', 'everyone', file.name, file.size).finish('failed', err.message);
    return;
  }
  await Promise.all(targets.map(async ({ link }) => {
    const item = transferItem('out', link.id, prepared.name, prepared.size);
    try {
      const verdict = await sendFile(link.pc, prepared, { onProgress: item.progress });
      item.li.dataset.hash = verdict;
      item.finish('done', `delivered; receiver: ${VERDICT_TEXT[verdict] || verdict}`);
    } catch (err) {
      item.finish('failed', err.message);
    }
  }));
});

function acceptFile(peer, dc) {
  let item = null;
  receiveFile(dc, {
    onStart: (h) => { item = transferItem('in', peer, h.name, h.size); },
    onProgress: (n) => item && item.progress(n),
    onDone: ({ blob, verdict, sha256 }) => {
      item.li.dataset.hash = verdict;
      if (sha256) item.li.dataset.sha256 = sha256;
      item.finish(verdict === 'mismatch' ? 'failed' : 'done', VERDICT_TEXT[verdict]);
      const a = el('a', { href: URL.createObjectURL(blob), download: item.li.dataset.name, text: 'save' });
      item.li.append(' ', a);
    },
    onError: (msg) => {
      if (!item) item = transferItem('in', peer, '(unknown)', 0);
      item.finish('failed', msg);
    },
  });
}

if (!canHash()) logSig('SHA-256 unavailable here (not a secure context): received files will be "not verified"');

// ---- go -----------------------------------------------------------------

// For the browser console: the hub client and the peer links.
window.rtcsuite = { hub, links, get localStream() { return localStream; } };

updatePeerCount();
hub.start();
window.addEventListener('pagehide', () => hub.leave());
