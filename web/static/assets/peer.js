// PeerLink is one RTCPeerConnection to one remote peer, negotiated with the
// "perfect negotiation" pattern (W3C webrtc-pc, section 10.7):
//
//   - the peer that joined the room later is polite (docs/protocol.md);
//   - a makingOffer flag plus the signaling state detect glare;
//   - the impolite side ignores a colliding offer, the polite side accepts
//     it, which rolls its own offer back implicitly inside
//     setRemoteDescription, and answers with setLocalDescription() without
//     arguments;
//   - trickled candidates that arrive before any remote description are
//     queued and added once one is set;
//   - ICE failure (or a long disconnection) triggers restartIce() with the
//     freshest ICE servers from the hub.
//
// Incoming signals are handled one at a time, in order, on a promise chain.

import { parseCandidate } from './util.js';

const DISCONNECT_GRACE_MS = 4000;
const MIN_RESTART_GAP_MS = 3000;
const PING_EVERY_MS = 2000;

/**
 * Events (CustomEvent, payload in .detail):
 *   change      {}                     any state, candidate or metric changed
 *   log         {text}
 *   chat        {text}
 *   datachannel {dc}                   a channel other than the control one
 *   open / close                       the control channel opened / closed
 */
export class PeerLink extends EventTarget {
  constructor({ id, name = '', polite, config, send }) {
    super();
    this.id = id;
    this.name = name;
    this.polite = polite;
    this.config = config; // {iceServers, iceTransportPolicy}
    this.send = send; // (data) => void, to the hub
    this.t0 = performance.now();
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pending = []; // remote candidates waiting for a remote description
    this.chain = Promise.resolve();
    this.timeline = []; // {t, what, value}
    this.candidates = []; // {side, t, type, protocol, address, port, relayProtocol, url}
    this.selected = null; // {local, remote, rtt, state}
    this.appRtt = NaN;
    this.rateOut = NaN;
    this.rateIn = NaN;
    this.throughput = '';
    this.dc = null;
    this.dcOpenAt = NaN; // performance.now() when the control channel opened
    this.lastRestart = -Infinity;
    this.restarts = 0;
    this.closed = false;
    this.prevBytes = null;
    this.disconnectTimer = 0;
    this.pingTimer = 0;
    this.#createPC();
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #note(what, value) {
    this.timeline.push({ t: performance.now(), what, value });
    if (this.timeline.length > 200) this.timeline.shift();
    this.#emit('change');
  }

  log(text) {
    this.#note('log', text);
    this.#emit('log', { text });
  }

  #createPC() {
    const pc = new RTCPeerConnection({ ...this.config });
    this.pc = pc;

    pc.addEventListener('negotiationneeded', async () => {
      // The polite side (the later joiner) opens every connection. Chrome
      // can still ask the impolite side to negotiate before anything was
      // negotiated (for example after setConfiguration); an offer without
      // media then would only collide with the real one.
      if (!this.polite && !pc.currentRemoteDescription) return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.#sendDescription();
      } catch (err) {
        this.log(`offer failed: ${err.message}`);
      } finally {
        this.makingOffer = false;
      }
    });

    pc.addEventListener('icecandidate', ({ candidate }) => {
      if (!candidate || !candidate.candidate) return; // end of a gathering generation
      this.#addCandidate('local', candidate.candidate, candidate.relayProtocol || '', candidate.url || '');
      this.send({ candidate: candidate.toJSON() });
    });

    pc.addEventListener('icecandidateerror', (e) => {
      this.log(`candidate error ${e.errorCode} from ${e.url || e.address || '?'}: ${e.errorText}`);
    });

    pc.addEventListener('signalingstatechange', () => this.#note('signaling', pc.signalingState));
    pc.addEventListener('icegatheringstatechange', () => this.#note('gathering', pc.iceGatheringState));
    pc.addEventListener('connectionstatechange', () => this.#note('connection', pc.connectionState));
    pc.addEventListener('iceconnectionstatechange', () => {
      const s = pc.iceConnectionState;
      this.#note('ice', s);
      clearTimeout(this.disconnectTimer);
      if (s === 'failed') {
        this.restart('ICE failed');
      } else if (s === 'disconnected') {
        this.disconnectTimer = setTimeout(() => {
          if (pc.iceConnectionState === 'disconnected') this.restart('disconnected too long');
        }, DISCONNECT_GRACE_MS);
      }
    });

    pc.addEventListener('datachannel', ({ channel }) => {
      if (channel.label === 'control' && !this.dc) this.#adoptControl(channel);
      else this.#emit('datachannel', { dc: channel });
    });

    // The later joiner (polite) opens the control channel; that fires
    // negotiationneeded and sends the first offer.
    if (this.polite) this.#adoptControl(pc.createDataChannel('control'));
  }

  #adoptControl(dc) {
    this.dc = dc;
    const opened = () => {
      this.dcOpenAt = performance.now();
      this.#note('datachannel', 'open');
      this.#emit('open');
      this.#ping();
      this.pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
    };
    if (dc.readyState === 'open') opened();
    else {
      this.#note('datachannel', dc.readyState);
      dc.addEventListener('open', opened);
    }
    dc.addEventListener('close', () => {
      clearInterval(this.pingTimer);
      this.#note('datachannel', 'closed');
      this.#emit('close');
    });
    dc.addEventListener('message', (ev) => this.#onControl(ev.data));
  }

  #ping() {
    this.sendControl({ type: 'ping', t: performance.now() });
  }

  #onControl(raw) {
    if (typeof raw !== 'string' || raw.length > 16384) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    switch (msg.type) {
      case 'chat':
        if (typeof msg.text === 'string') this.#emit('chat', { text: msg.text.slice(0, 2000) });
        break;
      case 'ping':
        this.sendControl({ type: 'pong', t: msg.t });
        break;
      case 'pong':
        if (typeof msg.t === 'number') {
          this.appRtt = performance.now() - msg.t;
          this.#emit('change');
        }
        break;
      default:
    }
  }

  /** Sends a JSON control message if the control channel is open. */
  sendControl(msg) {
    if (this.dc && this.dc.readyState === 'open') {
      this.dc.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  get open() {
    return Boolean(this.dc && this.dc.readyState === 'open');
  }

  /** Handles one signal from the hub: {description} or {candidate}. */
  handleSignal(data) {
    this.chain = this.chain.then(() => this.#handle(data)).catch((err) => this.log(`signal handling failed: ${err.message}`));
    return this.chain;
  }

  async #handle({ description, candidate }) {
    if (this.closed) return;
    const pc = this.pc;
    if (description) {
      const offerCollision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && offerCollision;
      if (this.ignoreOffer) {
        this.log('ignored a colliding offer (impolite side)');
        return;
      }
      if (offerCollision) this.log('glare: rolling back our offer (polite side)');
      this.#note('sdp', `got ${describeSDP(description)}`);
      await pc.setRemoteDescription(description); // rolls back implicitly when needed
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        this.#sendDescription();
      }
      const queued = this.pending;
      this.pending = [];
      for (const c of queued) await this.#addRemoteCandidate(c);
    } else if (candidate) {
      if (!pc.remoteDescription) {
        this.pending.push(candidate);
        return;
      }
      await this.#addRemoteCandidate(candidate);
    }
  }

  #sendDescription() {
    const d = this.pc.localDescription;
    this.#note('sdp', `sent ${describeSDP(d)}`);
    this.send({ description: d.toJSON() });
  }

  async #addRemoteCandidate(c) {
    if (c.candidate) this.#addCandidate('remote', c.candidate, '', '');
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      // Candidates of an offer we ignored fail to apply; that is expected.
      if (!this.ignoreOffer) this.log(`addIceCandidate: ${err.message}`);
    }
  }

  #addCandidate(side, line, relayProtocol, url) {
    const p = parseCandidate(line);
    if (!p) return;
    this.candidates.push({ side, t: performance.now(), ...p, relayProtocol, url });
    this.#emit('change');
  }

  /**
   * Stores new ICE servers or policy for the next ICE restart. It does not
   * touch the connection now: Chrome treats changed servers in
   * setConfiguration as a reason to renegotiate, so applying every
   * credential refresh at once would restart ICE each time.
   */
  setConfig(config) {
    this.config = config;
  }

  /** Restarts ICE with the latest configuration (fresh TURN credentials, policy). */
  restart(reason) {
    if (this.closed) return;
    if (!this.pc.currentRemoteDescription) {
      this.log(`ICE restart (${reason}) skipped: nothing negotiated yet`);
      return;
    }
    const now = performance.now();
    if (now - this.lastRestart < MIN_RESTART_GAP_MS && reason !== 'button') return;
    this.lastRestart = now;
    this.restarts++;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), ...this.config });
    } catch (err) {
      this.log(`setConfiguration: ${err.message}`);
    }
    this.log(`ICE restart (${reason})`);
    this.pc.restartIce();
  }

  /** Reads getStats(): the selected pair with both candidate types, RTT and bitrate. */
  async pollStats() {
    if (this.closed) return;
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return;
    }
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    for (const s of byId.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    }
    if (!pair) {
      // Firefox marks the pair instead of naming it on the transport.
      for (const s of byId.values()) if (s.type === 'candidate-pair' && s.selected) pair = s;
    }
    const cand = (id) => {
      const c = byId.get(id);
      if (!c) return null;
      return {
        type: c.candidateType,
        protocol: c.protocol,
        address: c.address ?? c.ip ?? '',
        port: c.port,
        relayProtocol: c.relayProtocol || '',
      };
    };
    if (pair) {
      this.selected = {
        local: cand(pair.localCandidateId),
        remote: cand(pair.remoteCandidateId),
        rtt: pair.currentRoundTripTime,
        state: pair.state,
      };
      this.#notePrflx(this.selected.remote, 'remote');
      this.#notePrflx(this.selected.local, 'local');
      const bytes = { t: pair.timestamp ?? performance.now(), sent: pair.bytesSent ?? 0, recv: pair.bytesReceived ?? 0 };
      if (this.prevBytes && bytes.t > this.prevBytes.t) {
        const dt = (bytes.t - this.prevBytes.t) / 1000;
        this.rateOut = ((bytes.sent - this.prevBytes.sent) * 8) / dt;
        this.rateIn = ((bytes.recv - this.prevBytes.recv) * 8) / dt;
      }
      this.prevBytes = bytes;
    } else {
      this.selected = null;
    }
    this.#emit('change');
  }

  // Peer-reflexive candidates are learned from connectivity checks, never
  // signaled: list them once getStats shows them in the selected pair.
  #notePrflx(c, side) {
    if (!c || c.type !== 'prflx') return;
    if (this.candidates.some((x) => x.side === side && x.type === 'prflx' && x.address === c.address && x.port === c.port)) return;
    this.candidates.push({ side, t: performance.now(), type: 'prflx', protocol: c.protocol, address: c.address, port: c.port, relayProtocol: '', url: '' });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.disconnectTimer);
    clearInterval(this.pingTimer);
    this.pc.close();
    this.#note('connection', 'closed');
  }
}

/** "offer (application)" / "answer (application rejected)": the type and the m-sections. */
function describeSDP(d) {
  const media = [...String(d.sdp || '').matchAll(/^m=(\S+) (\d+)/gm)].map((m) => (m[2] === '0' ? `${m[1]} rejected` : m[1]));
  return `${d.type} (${media.length ? media.join(', ') : 'no media'})`;
}
