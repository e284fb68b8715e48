// HubClient speaks the hub's wire protocol (docs/protocol.md) over one
// WebSocket and keeps it alive: a dropped socket reconnects with backoff and
// sends {"type":"resume","token":...} with the token from the last welcome
// (or resumed), so the room sees no leave/join flap and signals sent
// meanwhile are delivered. When the hub answers resume-failed (grace window
// over) the client joins again as a new peer.

const MAX_QUEUE = 512; // signals held while the socket is down
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

/**
 * Events (CustomEvent, payload in .detail):
 *   state        {state, text}   state: connecting | joined | reconnecting | full | closed | failed
 *   welcome      {id, room, peers, iceServers, resumed}
 *   peer-joined  {id, name}
 *   peer-left    {id}
 *   signal       {from, data}
 *   ice-servers  {iceServers}
 *   hub-error    {code, message}
 *   invite       {room, token, expires}   answer to requestInvite (token '' on an open hub)
 */
export class HubClient extends EventTarget {
  constructor({ url, room, token = '', name = '' }) {
    super();
    this.name = name; // asked for at join; a token's name wins (welcome.name)
    this.url = url;
    this.room = room;
    this.token = token;
    this.id = '';
    this.resumeToken = '';
    this.iceServers = [];
    this.state = 'connecting';
    this.ws = null;
    this.queue = [];
    this.attempt = 0;
    this.stopped = false;
    this.timer = 0;
  }

  start() {
    this.#connect();
  }

  /** Sends data to peer `to`; held (bounded) while not joined. */
  sendSignal(to, data) {
    const msg = { type: 'signal', to, data };
    if (this.state === 'joined' && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return;
    }
    if (this.queue.length >= MAX_QUEUE) this.queue.shift();
    this.queue.push(msg);
  }

  /**
   * Asks the hub for an invite to this room, for a share link: in token
   * mode a room-scoped, nameless, short-lived join token minted by the hub,
   * so our own token is never shared. The answer comes as an "invite" event.
   */
  requestInvite() {
    if (this.state === 'joined' && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'invite' }));
      return true;
    }
    return false;
  }

  /** Leaves the room for good. */
  leave() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'leave' }));
      this.ws.close(1000, 'leave');
    }
    this.#setState('closed', 'Left the room.');
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state, text) {
    this.state = state;
    this.#emit('state', { state, text });
  }

  #connect() {
    clearTimeout(this.timer);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.#setState('failed', `Cannot open the signaling socket: ${err.message}`);
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.resumeToken) ws.send(JSON.stringify({ type: 'resume', token: this.resumeToken }));
      else this.#sendJoin(ws);
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // the hub only sends JSON; ignore anything else
      }
      this.#onMessage(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.#onClose(ev);
    });
  }

  #sendJoin(ws) {
    const join = { type: 'join', room: this.room };
    if (this.token) join.token = this.token;
    if (this.name) join.name = this.name;
    ws.send(JSON.stringify(join));
  }

  #onMessage(msg) {
    switch (msg.type) {
      case 'welcome':
      case 'resumed': {
        // welcome: a fresh identity (any earlier one is gone, and so are the
        // signals queued for its peers). resumed: the hub kept our place.
        const resumed = msg.type === 'resumed';
        this.id = msg.id;
        this.room = msg.room || this.room;
        this.resumeToken = msg.resume || '';
        if (Array.isArray(msg.iceServers) && msg.iceServers.length) this.iceServers = msg.iceServers;
        this.attempt = 0;
        if (!resumed) this.queue = [];
        this.#setState('joined', resumed ? 'Reconnected; the room kept your place.' : 'Joined.');
        this.#emit('welcome', {
          id: msg.id,
          room: this.room,
          name: typeof msg.name === 'string' ? msg.name : '',
          // resumed may not list the peers; null means "unchanged as far as we know".
          peers: Array.isArray(msg.peers) ? msg.peers.map((p) => (typeof p === 'string' ? { id: p } : p)) : resumed ? null : [],
          names: msg.names || {},
          iceServers: this.iceServers,
          resumed,
        });
        const q = this.queue;
        this.queue = [];
        for (const m of q) this.ws.send(JSON.stringify(m));
        break;
      }
      case 'peer-joined':
        this.#emit('peer-joined', { id: msg.id, name: msg.name || '' });
        break;
      case 'peer-left':
        this.#emit('peer-left', { id: msg.id });
        break;
      case 'signal':
        if (msg.from && msg.data && typeof msg.data === 'object') this.#emit('signal', { from: msg.from, data: msg.data });
        break;
      case 'ice-servers':
        if (Array.isArray(msg.iceServers)) {
          this.iceServers = msg.iceServers;
          this.#emit('ice-servers', { iceServers: msg.iceServers });
        }
        break;
      case 'invite':
        this.#emit('invite', { room: msg.room || this.room, token: msg.token || '', expires: Number(msg.expires) || 0 });
        break;
      case 'error':
        this.#onError(msg);
        break;
      default:
        // Unknown types are allowed by the protocol (it may grow); ignore.
    }
  }

  #onError(msg) {
    this.#emit('hub-error', { code: msg.code, message: msg.message });
    switch (msg.code) {
      case 'room-full':
        this.stopped = true;
        this.#setState('full', 'This room is full. Open / for a fresh room.');
        if (this.ws) this.ws.close(1000, 'room full');
        break;
      case 'unauthorized':
        this.stopped = true;
        this.#setState('failed', `The hub refused to let you in: ${msg.message || 'unauthorized'}.`);
        if (this.ws) this.ws.close(1000, 'unauthorized');
        break;
      case 'resume-failed':
        // The grace window is over (or the hub restarted): join as a new peer.
        this.resumeToken = '';
        this.id = '';
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.#sendJoin(this.ws);
        break;
      case 'unavailable':
        // A multi-node hub that lost its Redis (docs/protocol.md §13): a join or
        // resume was refused, nothing changed; reconnect after the usual backoff.
        if (this.state !== 'joined' && this.ws) this.ws.close(1000, 'retry');
        break;
      default:
    }
  }

  #onClose(ev) {
    if (this.stopped) {
      if (this.state === 'joined' || this.state === 'connecting') this.#setState('closed', 'Disconnected.');
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.75 + Math.random() * 0.5);
    this.attempt++;
    const why = ev.code === 1012 ? 'the hub is restarting' : `connection closed (${ev.code})`;
    this.#setState('reconnecting', `Signaling lost: ${why}. Reconnecting in ${(delay / 1000).toFixed(1)} s…`);
    this.timer = setTimeout(() => this.#connect(), delay);
  }
}
