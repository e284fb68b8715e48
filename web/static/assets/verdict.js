// Pure verdict logic of the TURN tester: given the server URLs, the
// candidates gathered and the icecandidateerror events seen, say per URL
// whether the server works. Kept free of DOM so it can be tested alone.

/** The URL schemes browsers gather with (no browser implements stuns:). */
export const SCHEMES = ['stun', 'turn', 'turns'];

/**
 * Checks a URL typed into the tester: returns '' when it is a stun:, turn:
 * or turns: URL the browser can use, else why not.
 */
export function checkTesterURL(url) {
  const p = parseIceURL(url);
  if (!p) return 'not a stun:, turn: or turns: URL (like turn:turn.example.com:3478?transport=udp)';
  if (!SCHEMES.includes(p.scheme)) return `${p.scheme}: is not supported by browsers; use stun:, turn: or turns:`;
  if (p.scheme === 'stun' && p.transport) return 'stun: URLs take no ?transport';
  if (p.port < 1 || p.port > 65535) return 'port out of range';
  return '';
}

/** Splits a STUN/TURN URL (RFC 7064/7065) into {scheme, host, port, transport}. */
export function parseIceURL(url) {
  const m = /^(stuns?|turns?):(\[[^\]]+\]|[^:?\s]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/i.exec(String(url).trim());
  if (!m) return null;
  const scheme = m[1].toLowerCase();
  const secure = scheme.endsWith('s');
  return {
    scheme,
    host: m[2].toLowerCase(),
    port: m[3] ? Number(m[3]) : secure ? 5349 : 3478,
    transport: m[4] ? m[4].toLowerCase() : '',
  };
}

/** Whether two URLs name the same server (transport only compared when both give it). */
export function sameServer(a, b) {
  const x = parseIceURL(a);
  const y = parseIceURL(b);
  if (!x || !y) return false;
  if (x.scheme !== y.scheme || x.host !== y.host || x.port !== y.port) return false;
  return !x.transport || !y.transport || x.transport === y.transport;
}

/** Whether two URLs name the same host and port, whatever the scheme. */
export function sameHostPort(a, b) {
  const x = parseIceURL(a);
  const y = parseIceURL(b);
  return Boolean(x && y && x.host === y.host && x.port === y.port && (!x.transport || !y.transport || x.transport === y.transport));
}

const AUTH_CODES = new Set([401, 431, 437, 441]);

/**
 * Returns [{url, verdict, text, final, leftMs}] where verdict is one of
 *   works | auth-failed | unreachable | no-answer | error | no-candidates | pending.
 * cands: [{type, url, address, port, protocol, relayProtocol, t}] (t in ms since start)
 * errors: [{url, errorCode, errorText}]
 * state: {finished: bool, timedOut: bool, timeoutMs: number, elapsedMs: number, deadlineMs: number}
 *
 * A server gets deadlineMs (default 5 s) to answer. Past it, a TCP or TLS
 * TURN URL is "unreachable" (a TCP or TLS handshake with a live server takes
 * one or two round trips; Chrome reports a refused or failed one with no
 * error at all) and any other URL has "no answer" (Chrome itself would wait
 * about 40 s before reporting 701 for UDP). Before it, a pending verdict says
 * how long is left (leftMs).
 */
export function judge(urls, cands, errors, state) {
  const out = judgeEach(urls, cands, errors, state);
  for (const v of out) v.final = v.verdict !== 'pending';
  return out;
}

const DEFAULT_DEADLINE_MS = 5000;

function judgeEach(urls, cands, errors, state) {
  const deadline = state.deadlineMs || DEFAULT_DEADLINE_MS;
  const elapsed = Number.isFinite(state.elapsedMs) ? state.elapsedMs : 0;
  const overdue = elapsed >= deadline;
  const secs = `${Math.round(deadline / 1000)} s`;
  const out = [];
  const singleServer = urls.length === 1;
  for (const url of urls) {
    const p = parseIceURL(url);
    if (!p) {
      out.push({ url, verdict: 'error', text: 'not a STUN/TURN URL' });
      continue;
    }
    const isTurn = p.scheme.startsWith('turn');
    const want = isTurn ? 'relay' : 'srflx';
    // Browsers name the server a candidate came from; if one does not,
    // a lone server is the only possible source.
    const mine = (u) => (u ? sameServer(u, url) : singleServer);
    const hit = cands.find((c) => c.type === want && mine(c.url));
    if (hit) {
      const via = hit.relayProtocol ? ` via ${hit.relayProtocol}` : '';
      out.push({ url, verdict: 'works', text: `${want} candidate ${hit.address}:${hit.port}${via} after ${(hit.t / 1000).toFixed(2)} s` });
      continue;
    }
    // Chrome names a TURN server's own STUN binding failure with a stun: URL
    // of the same host and port, so errors match on host and port only.
    const errs = errors.filter((e) => (e.url ? sameHostPort(e.url, url) : singleServer));
    const auth = errs.find((e) => AUTH_CODES.has(e.errorCode));
    if (auth) {
      out.push({ url, verdict: 'auth-failed', text: `authentication failed? the server refused the credentials (${auth.errorCode} ${auth.errorText || ''})`.trim() });
      continue;
    }
    const unreach = errs.find((e) => e.errorCode === 701);
    const other = errs.find((e) => e.errorCode !== 701);
    if (other) {
      out.push({ url, verdict: 'error', text: `the server answered with error ${other.errorCode} ${other.errorText || ''}`.trim() });
      continue;
    }
    if (unreach && state.finished) {
      out.push({ url, verdict: 'unreachable', text: `unreachable? no usable answer from the server (701 ${unreach.errorText || ''})`.trim() });
      continue;
    }
    if (state.timedOut) {
      out.push({ url, verdict: 'unreachable', text: `unreachable? no answer within ${Math.round(state.timeoutMs / 1000)} s` });
      continue;
    }
    const streamed = isTurn && (p.transport === 'tcp' || p.scheme === 'turns');
    if (overdue) {
      out.push(streamed
        ? { url, verdict: 'unreachable', text: `unreachable: no relay candidate after ${secs} over ${p.scheme === 'turns' ? 'TLS' : 'TCP'} (refused, filtered, or a failed TLS handshake; the browser reports none of these as an error)` }
        : { url, verdict: 'no-answer', text: `no answer after ${secs}: nothing came back from ${p.host}:${p.port} over UDP (wrong address or port, a firewall dropping UDP, or no server there)` });
      continue;
    }
    if (state.finished && isTurn && (p.transport === 'tcp' || p.scheme === 'turns')) {
      // Chrome reports no icecandidateerror when a TCP/TLS connection to the
      // server is refused or fails: gathering just ends without a relay.
      out.push({
        url,
        verdict: 'unreachable',
        text: 'unreachable? no relay candidate and no error: that is how the browser reports a refused or failed TCP/TLS connection (a server that answers without a realm looks the same)',
      });
      continue;
    }
    if (state.finished) {
      out.push({
        url,
        verdict: 'no-candidates',
        text: isTurn
          ? 'no relay candidate and no error: the server may answer without a realm, or the URL transport is blocked'
          : 'no server-reflexive candidate: the server may be unreachable, or there is no NAT in between (the browser drops a srflx equal to a host candidate)',
      });
      continue;
    }
    const leftMs = Math.max(deadline - elapsed, 0);
    out.push({ url, verdict: 'pending', leftMs, text: `${unreach ? 'no answer yet (701 so far)' : 'waiting for an answer'}: ${Math.ceil(leftMs / 1000)} s left` });
  }
  return out;
}
