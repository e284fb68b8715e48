// Small helpers shared by the demo and the TURN tester. No DOM state here
// beyond building elements; everything is a pure function where possible.

/** Builds an element; children are nodes or strings (set as text, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data')) node.setAttribute(k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) node.append(c);
  return node;
}

const ROOM_ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789';

/** A random room name: 12 characters from an unambiguous alphabet (60 bits). */
export function randomRoomName() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes); // available outside secure contexts too
  let s = '';
  for (const b of bytes) s += ROOM_ALPHABET[b % ROOM_ALPHABET.length];
  return s;
}

/** Room names the page accepts from its URL: letters, digits, '-', '_', '.', 1-64 long. */
export function validRoomName(name) {
  return typeof name === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name);
}

/**
 * Parses a TURN REST username "<unix-expiry>:<user>" (or a bare timestamp).
 * Returns {expiry: Date, user} or null when the username is not in that form.
 */
export function parseRestUsername(username) {
  if (typeof username !== 'string') return null;
  const m = /^(\d{1,12})(?::(.*))?$/.exec(username);
  if (!m) return null;
  return { expiry: new Date(Number(m[1]) * 1000), user: m[2] ?? '' };
}

/**
 * Describes an RTCIceServer without its secret: {urls, kind, expiry}.
 * kind is "turn" when any URL is turn:/turns:, else "stun".
 */
export function describeIceServer(server) {
  const urls = [].concat(server.urls ?? server.url ?? []);
  const kind = urls.some((u) => /^turns?:/i.test(u)) ? 'turn' : 'stun';
  const rest = parseRestUsername(server.username);
  return { urls, kind, hasCredential: Boolean(server.credential), expiry: rest ? rest.expiry : null };
}

/** "expires 16:20:05 (in 59 min)" / "expired 3 min ago". */
export function fmtExpiry(expiry, now = Date.now()) {
  if (!expiry) return '';
  const ms = expiry.getTime() - now;
  const when = expiry.toLocaleTimeString([], { hour12: false });
  return ms >= 0 ? `expires ${when} (in ${fmtDuration(ms)})` : `expired ${when} (${fmtDuration(-ms)} ago)`;
}

export function fmtDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = s / 60;
  if (m < 90) return `${Math.round(m)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

export function fmtBitrate(bitsPerSecond) {
  if (!Number.isFinite(bitsPerSecond)) return '–';
  if (bitsPerSecond < 1000) return `${Math.round(bitsPerSecond)} bit/s`;
  if (bitsPerSecond < 1e6) return `${(bitsPerSecond / 1e3).toFixed(1)} kbit/s`;
  if (bitsPerSecond < 1e9) return `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;
  return `${(bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
}

/** "addr:port", with IPv6 addresses in brackets. */
export function hostPort(address, port) {
  return String(address).includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Seconds since t0 (performance.now() based) as "+1.234 s". */
export function fmtRel(t, t0) {
  return `+${((t - t0) / 1000).toFixed(3)} s`;
}

/**
 * Parses an ICE candidate line (RFC 8839 "candidate:..." attribute, with or
 * without the "a=" prefix) into {foundation, component, protocol, priority,
 * address, port, type, relayProtocol, tcpType}. Returns null when malformed.
 * Browsers expose most of this on RTCIceCandidate, but not all of them do,
 * and remote candidates arrive as plain JSON.
 */
export function parseCandidate(line) {
  if (typeof line !== 'string') return null;
  const s = line.replace(/^a=/, '').replace(/^candidate:/, '').trim();
  const f = s.split(/\s+/);
  if (f.length < 8 || f[6] !== 'typ') return null;
  const port = Number(f[5]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  const c = {
    foundation: f[0],
    component: Number(f[1]),
    protocol: f[2].toLowerCase(),
    priority: Number(f[3]),
    address: f[4],
    port,
    type: f[7],
    relayProtocol: '',
    tcpType: '',
  };
  for (let i = 8; i + 1 < f.length; i += 2) {
    if (f[i] === 'tcptype') c.tcpType = f[i + 1];
  }
  // Chrome's relay candidates carry the client-to-TURN transport in the
  // priority's type preference; RTCIceCandidate.relayProtocol says it when
  // the browser exposes it, so the caller may fill it in.
  return c;
}

/** True when SubtleCrypto (SHA-256) is usable: secure contexts only. */
export function canHash() {
  return Boolean(globalThis.isSecureContext && globalThis.crypto && crypto.subtle);
}

/** Hex SHA-256 of an ArrayBuffer; throws when not in a secure context. */
export async function sha256Hex(buf) {
  const d = await crypto.subtle.digest('SHA-256', buf);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Resolves when the data channel's bufferedAmount drops to its low threshold, or it closes. */
export function bufferedLow(dc) {
  return new Promise((resolve) => {
    const done = () => {
      dc.removeEventListener('bufferedamountlow', done);
      dc.removeEventListener('close', done);
      resolve();
    };
    dc.addEventListener('bufferedamountlow', done);
    dc.addEventListener('close', done);
  });
}
