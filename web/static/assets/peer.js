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
// Switching the transport policy ("relay only") mid-call: the page calls
// setConfiguration() with the full configuration and restartIce(), but
// Chromium keeps the connections of the previous ICE generation alive
// (make-before-break) and keeps the higher-priority direct pair selected, so
// the call would never move to the relay. A policy switch therefore replaces
// the RTCPeerConnection: the side that switches sends {reset, epoch} and
// starts a new connection with the new policy; the other side does the same
// when the reset arrives, and perfect negotiation connects them again (the
// polite side offers). Every signal carries the sender's epoch; signals of an
// older epoch (candidates of the replaced connection still in flight) are
// dropped. Local media tracks are re-added to the new connection.
//
// Incoming signals are handled one at a time, in order, on a promise chain.

import { parseCandidate } from './util.js';

const DISCONNECT_GRACE_MS = 4000;
const MIN_RESTART_GAP_MS = 3000;
const PING_EVERY_MS = 2000;
const MAX_NAME = 64;

/**
 * Events (CustomEvent, payload in .detail):
 *   change      {}                     any state, candidate or metric changed
 *   log         {text}
 *   chat        {text}
 *   datachannel {dc}                   a channel other than the control one
 *   open / close                       the control channel opened / closed
 *   name        {name}                 the peer announced a display name
 *   track       {track, stream}        a remote media track arrived
 *   untrack     {track}                a remote media track stopped (the peer hung up)
 *   reset       {reason}               the connection was replaced (policy switch)
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
    this.epoch = 0; // bumped by every connection replacement, on both sides
    this.localStream = null; // tracks to send; re-added after a replacement
    this.remoteStream = new MediaStream();
    this.media = []; // per-RTP-stream figures from getStats, see pollStats
    this.prevRtp = new Map();
    this.dc = null;
    this.dcOpenAt = NaN; // performance.now() when the control channel opened
    this.lastRestart = -Infinity;
    this.restarts = 0;
    this.connections = 1; // RTCPeerConnections so far (policy switches replace it)
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

  /** Sends a signal to the peer, stamped with our connection epoch. */
  #signal(data) {
    this.send({ ...data, epoch: this.epoch });
  }

  #createPC() {
    const pc = new RTCPeerConnection({ ...this.config });
    this.pc = pc;
    const current = () => pc === this.pc && !this.closed;

    pc.addEventListener('negotiationneeded', async () => {
      // The polite side (the later joiner) opens every connection. Chrome
      // can still ask the impolite side to negotiate before anything was
      // negotiated (for example after setConfiguration); an offer without
      // media then would only collide with the real one.
      if (!current() || (!this.polite && !pc.currentRemoteDescription)) return;
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
      if (!current() || !candidate || !candidate.candidate) return; // end of a gathering generation
      this.#addCandidate('local', candidate.candidate, candidate.relayProtocol || '', candidate.url || '');
      this.#signal({ candidate: candidate.toJSON() });
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

    pc.addEventListener('track', ({ track, streams }) => {
      if (!current()) return;
      this.remoteStream.addTrack(track);
      const gone = () => {
        if (!this.remoteStream.getTracks().includes(track)) return;
        this.remoteStream.removeTrack(track);
        this.#note('track', `${track.kind} stopped`);
        this.#emit('untrack', { track });
      };
      track.addEventListener('ended', gone);
      // The sender hung up: removeTrack on its side renegotiates, and the
      // track leaves the stream it arrived in.
      for (const s of streams) s.addEventListener('removetrack', (e) => e.track === track && gone());
      this.#note('track', `${track.kind} arrived`);
      this.#emit('track', { track, stream: streams[0] || this.remoteStream });
    });

    pc.addEventListener('datachannel', ({ channel }) => {
      if (!current()) return;
      if (channel.label === 'control' && !this.dc) this.#adoptControl(channel);
      else this.#emit('datachannel', { dc: channel });
    });

    // The later joiner (polite) opens the control channel; that fires
    // negotiationneeded and sends the first offer.
    if (this.polite) this.#adoptControl(pc.createDataChannel('control'));
    this.#addLocalTracks();
  }

  #addLocalTracks() {
    if (!this.localStream) return;
    const sending = new Set(this.pc.getSenders().map((s) => s.track).filter(Boolean));
    for (const track of this.localStream.getTracks()) {
      if (!sending.has(track)) this.pc.addTrack(track, this.localStream);
    }
  }

  /**
   * Sends stream's tracks to the peer (null stops sending). Adding or
   * removing tracks renegotiates through negotiationneeded.
   */
  setLocalStream(stream) {
    this.localStream = stream;
    if (this.closed) return;
    const keep = new Set(stream ? stream.getTracks() : []);
    for (const sender of this.pc.getSenders()) {
      if (sender.track && !keep.has(sender.track)) this.pc.removeTrack(sender);
    }
    this.#addLocalTracks();
  }

  #adoptControl(dc) {
    this.dc = dc;
    const opened = () => {
      if (dc !== this.dc) return;
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
      if (dc !== this.dc) return; // a replaced connection's channel
      clearInterval(this.pingTimer);
      this.#note('datachannel', 'closed');
      this.#emit('close');
    });
    dc.addEventListener('message', (ev) => dc === this.dc && this.#onControl(ev.data));
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
      case 'name':
        if (typeof msg.name === 'string') this.#emit('name', { name: msg.name.trim().slice(0, MAX_NAME) });
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

  async #handle({ description, candidate, reset, epoch = 0 }) {
    if (this.closed) return;
    if (reset) {
      // The peer replaced its connection (it switched its transport
      // policy): follow, unless we already did for this epoch.
      if (epoch > this.epoch) {
        this.epoch = epoch;
        this.#replacePC('the peer switched its transport policy');
      }
      return;
    }
    if (epoch < this.epoch) return; // for a connection we replaced
    if (epoch > this.epoch) {
      // A reset we never saw (it cannot be lost in order, but a resumed hub
      // session may have dropped it): catch up.
      this.epoch = epoch;
      this.#replacePC('the peer is on a newer connection');
    }
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
    this.#signal({ description: d.toJSON() });
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

  /**
   * Applies a new transport policy now (see the file comment): tells the
   * peer and replaces the connection. Data channels reopen and media tracks
   * are sent again on the new connection.
   */
  switchPolicy(config, reason) {
    this.config = config;
    if (this.closed) return;
    this.epoch++;
    this.send({ reset: true, epoch: this.epoch });
    this.#replacePC(reason);
  }

  #replacePC(reason) {
    const old = this.pc;
    clearTimeout(this.disconnectTimer);
    clearInterval(this.pingTimer);
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pending = [];
    this.selected = null;
    this.prevBytes = null;
    this.prevRtp = new Map();
    this.media = [];
    this.dc = null;
    this.dcOpenAt = NaN;
    this.candidates = []; // the panel lists the current connection's candidates
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
    this.#createPC();
    old.close();
    this.connections++;
    this.log(`new connection (${reason}), policy ${this.config.iceTransportPolicy || 'all'}`);
    this.#emit('reset', { reason });
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
    const pc = this.pc;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (pc !== this.pc) return; // replaced meanwhile: these figures are history
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
    this.media = this.#mediaStats(byId);
    this.#emit('change');
  }

  // One entry per RTP stream, both directions: codec, bitrate since the
  // last poll, frame rate, frames decoded and packet loss (inbound: lost of
  // expected; outbound: what the receiver reported back in RTCP).
  #mediaStats(byId) {
    const out = [];
    const next = new Map();
    for (const s of byId.values()) {
      if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') continue;
      const inbound = s.type === 'inbound-rtp';
      const bytes = inbound ? s.bytesReceived ?? 0 : s.bytesSent ?? 0;
      const prev = this.prevRtp.get(s.id);
      next.set(s.id, { t: s.timestamp, bytes });
      const codec = byId.get(s.codecId);
      let lost = NaN;
      let packets = NaN;
      if (inbound) {
        lost = s.packetsLost ?? 0;
        packets = (s.packetsReceived ?? 0) + Math.max(lost, 0);
      } else {
        const remote = [...byId.values()].find((r) => r.type === 'remote-inbound-rtp' && r.localId === s.id);
        if (remote) {
          lost = remote.packetsLost ?? 0;
          packets = s.packetsSent ?? 0;
        }
      }
      out.push({
        dir: inbound ? 'in' : 'out',
        kind: s.kind || s.mediaType || '',
        codec: codec ? codec.mimeType.replace(/^(audio|video)\//, '') : '',
        bitrate: prev && s.timestamp > prev.t ? ((bytes - prev.bytes) * 8) / ((s.timestamp - prev.t) / 1000) : NaN,
        fps: s.framesPerSecond ?? NaN,
        framesDecoded: s.framesDecoded ?? NaN,
        framesSent: s.framesSent ?? NaN,
        loss: packets > 0 ? Math.max(lost, 0) / packets : NaN,
        width: s.frameWidth,
        height: s.frameHeight,
      });
    }
    this.prevRtp = next;
    out.sort((a, b) => (a.dir + a.kind).localeCompare(b.dir + b.kind));
    return out;
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
