/**
 * Signalbox for browsers: a JavaScript SDK with OpenTok's signaling API.
 *
 * Load it with `<script src="https://RELAY/signalbox.js"></script>`. It defines a global
 * `Signalbox`, and `OT` when no `OT` is defined already, so a page written for OpenTok that
 * only signals runs unchanged:
 *
 *   const session = OT.initSession(apiKey, sessionId);
 *   session.on('signal:chat', (event) => console.log(event.from.connectionId, event.data));
 *   session.connect(token, (error) => {
 *     if (!error) session.signal({ type: 'chat', data: 'hello' }, (err) => {});
 *   });
 *
 * Underneath it speaks the relay's own protocol, `signalbox/1` (crates/proto/README.md):
 * over WebTransport on the relay's QUIC port when the browser has it — one stream per
 * sender, so one sender's lost packet never delays another's — and otherwise over a
 * WebSocket on the relay's HTTP listener, with the same frames. A dropped network is
 * resumed: the relay replays what the page had not received, and the page resends what the
 * relay had not taken, so nothing is lost and nothing arrives twice.
 *
 * Plain modern JavaScript, no build step.
 */
(function (root) {
  'use strict';

  const PROTOCOL = 1;
  /** Defaults until the relay's `Welcome` says otherwise. */
  const DEFAULT_MAX_DATA = 8192;
  const MAX_TYPE = 128;
  /** The largest frame accepted from the relay (a `Welcome` of a full session fits). */
  const MAX_FRAME = 16 * 1024 * 1024;
  /** How long a lost connection is retried before the session counts as disconnected. */
  const RESUME_FOR_MS = 30000;
  /** How long one transport has to open its link and be welcomed. */
  const CONNECT_TIMEOUT_MS = 10000;
  const TYPE_RULE = /^[A-Za-z0-9\-_~]*$/;

  const ROLES = ['moderator', 'publisher', 'subscriber', 'server'];
  const LEFT_REASONS = [
    'clientDisconnected',
    'forceDisconnected',
    'networkDisconnected',
    'slowConsumer',
    'relayShutdown',
  ];
  /** OpenTok's error names, by code. */
  const ERROR_NAMES = {
    400: 'OT_INVALID_PARAMETER',
    403: 'OT_PERMISSION_DENIED',
    404: 'OT_NOT_FOUND',
    413: 'OT_INVALID_PARAMETER',
    429: 'OT_RATE_LIMIT_EXCEEDED',
    500: 'OT_NOT_CONNECTED',
  };

  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

  // ---------------------------------------------------------------------------------------
  // postcard, in brief: varints, length-prefixed strings, enums as variant indices.

  class Writer {
    constructor() {
      /** @type {number[]} */
      this.out = [];
    }
    u8(b) {
      this.out.push(b & 255);
      return this;
    }
    varint(n) {
      let v = Number(n);
      while (v >= 128) {
        this.out.push((v % 128) | 128);
        v = Math.floor(v / 128);
      }
      this.out.push(v);
      return this;
    }
    bytes(b) {
      for (const x of b) this.out.push(x);
      return this;
    }
    str(s) {
      const b = utf8.encode(s);
      this.varint(b.length);
      return this.bytes(b);
    }
    bool(v) {
      return this.u8(v ? 1 : 0);
    }
    id(uuid) {
      return this.u8(16).bytes(uuidBytes(uuid));
    }
    opt(v, write) {
      if (v === null || v === undefined) return this.u8(0);
      this.u8(1);
      write(v);
      return this;
    }
    /** The message as a frame: a big-endian u32 length, then the bytes. */
    frame() {
      const n = this.out.length;
      const f = new Uint8Array(4 + n);
      new DataView(f.buffer).setUint32(0, n);
      f.set(this.out, 4);
      return f;
    }
  }

  class Reader {
    /** @param {Uint8Array} b */
    constructor(b) {
      this.b = b;
      this.p = 0;
    }
    u8() {
      if (this.p >= this.b.length) throw new Error('truncated frame');
      return this.b[this.p++];
    }
    varint() {
      let v = 0;
      let scale = 1;
      for (let i = 0; i < 10; i++) {
        const x = this.u8();
        v += (x & 127) * scale;
        if (!(x & 128)) return v;
        scale *= 128;
      }
      throw new Error('bad varint');
    }
    raw(n) {
      if (this.p + n > this.b.length) throw new Error('truncated frame');
      const out = this.b.subarray(this.p, this.p + n);
      this.p += n;
      return out;
    }
    str() {
      return fromUtf8.decode(this.raw(this.varint()));
    }
    bool() {
      return this.u8() !== 0;
    }
    id() {
      if (this.u8() !== 16) throw new Error('bad connection id');
      return uuidString(this.raw(16));
    }
    opt(read) {
      return this.u8() ? read() : null;
    }
    end() {
      if (this.p !== this.b.length) throw new Error('bytes left over in a frame');
    }
  }

  function uuidBytes(s) {
    const hex = String(s).replace(/-/g, '');
    if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error('not a connection id: ' + s);
    const out = new Uint8Array(16);
    for (let i = 0; i < 16; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function uuidString(b) {
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** Splits a byte stream into frames. */
  class Frames {
    constructor() {
      this.buf = new Uint8Array(0);
    }
    /** @param {Uint8Array} chunk @returns {Uint8Array[]} */
    push(chunk) {
      let buf = chunk;
      if (this.buf.length) {
        buf = new Uint8Array(this.buf.length + chunk.length);
        buf.set(this.buf);
        buf.set(chunk, this.buf.length);
      }
      const frames = [];
      let at = 0;
      while (buf.length - at >= 4) {
        const n = new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0);
        if (n > MAX_FRAME) throw new Error('frame too large');
        if (buf.length - at - 4 < n) break;
        frames.push(buf.slice(at + 4, at + 4 + n));
        at += 4 + n;
      }
      this.buf = buf.slice(at);
      return frames;
    }
  }

  function readInfo(r) {
    const id = r.id();
    const name = r.str();
    const role = ROLES[r.varint()] || 'publisher';
    const data = r.str();
    const joinedAt = r.varint();
    return { id, name, role, data, joinedAt };
  }

  function readError(r) {
    const kind = r.varint();
    switch (kind) {
      case 0: {
        const found = r.str();
        const position = r.varint();
        return [400, `the type has '${found}' at byte ${position}; types use only A-Z a-z 0-9 - _ ~`];
      }
      case 1:
        return [400, 'the target list is empty'];
      case 2: {
        const count = r.varint();
        const limit = r.varint();
        return [400, `${count} targets; at most ${limit}`];
      }
      case 3:
        return [403, `a ${ROLES[r.varint()]} may not send signals`];
      case 4:
        return [404, `connection ${r.id()} is not in the session`];
      case 5: {
        const len = r.varint();
        const limit = r.varint();
        return [413, `the type is ${len} bytes; at most ${limit}`];
      }
      case 6: {
        const len = r.varint();
        const limit = r.varint();
        return [413, `the data is ${len} bytes; at most ${limit}`];
      }
      case 7: {
        const perSecond = r.varint();
        const burst = r.varint();
        return [429, `rate limited: ${perSecond} signals a second (bursts of ${burst})`];
      }
      case 8:
        return [400, `connection ${r.id()} is named twice`];
      case 9:
        return [429, `rate limited: ${r.varint()} bytes a second times receivers`];
      default:
        return [400, `rejected (reason ${kind})`];
    }
  }

  /** Decodes a relay control message. */
  function readRelayMessage(frame) {
    const r = new Reader(frame);
    const tag = r.varint();
    let m;
    switch (tag) {
      case 0: {
        const me = readInfo(r);
        const n = r.varint();
        const peers = [];
        for (let i = 0; i < n; i++) peers.push(readInfo(r));
        const limits = {
          maxDataBytes: r.varint(),
          signalsPerSecond: r.varint(),
          signalBurst: r.varint(),
          maxConnectionsPerSession: r.varint(),
        };
        const ticket = { connection: r.id(), secret: r.raw(16).slice() };
        m = { kind: 'welcome', me, peers, limits, ticket, acceptedUpTo: r.varint() };
        break;
      }
      case 1:
        m = { kind: 'refused', code: r.varint(), message: r.str() };
        break;
      case 2:
        m = { kind: 'joined', info: readInfo(r) };
        break;
      case 3:
        m = { kind: 'left', id: r.id(), reason: LEFT_REASONS[r.varint()] || 'networkDisconnected' };
        break;
      case 4:
        m = { kind: 'accepted', upTo: r.varint() };
        break;
      case 5: {
        const seq = r.varint();
        const [code, message] = readError(r);
        m = { kind: 'rejected', seq, code, message };
        break;
      }
      case 6:
        m = { kind: 'denied', message: r.str() };
        break;
      case 7:
        m = {
          kind: 'missed',
          from: r.opt(() => r.id()),
          first: r.varint(),
          last: r.varint(),
          count: r.varint(),
        };
        break;
      case 8:
        m = { kind: 'closing', code: r.varint(), reason: r.str() };
        break;
      default:
        throw new Error('unknown relay message ' + tag);
    }
    r.end();
    return m;
  }

  // ---------------------------------------------------------------------------------------
  // Links: WebTransport and WebSocket, the same streams either way.

  /**
   * @typedef {Object} LinkHandlers
   * @property {(chunk: Uint8Array) => void} control  bytes of the control stream
   * @property {() => DeliveryStream} stream          a new delivery stream from the relay
   * @property {(why: {code: ?number, reason: string}) => void} closed
   */

  function base64Bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function pump(readable, onChunk, onEnd) {
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        onChunk(value);
      }
      onEnd();
    } catch (_) {
      // The link is going; its close tells why.
    }
  }

  /** @param {URL} relay @param {LinkHandlers} h */
  async function openWebTransport(relay, h) {
    const answer = await fetch(new URL('/v1/webtransport', relay));
    if (!answer.ok) throw new Error(`the relay answered ${answer.status} for /v1/webtransport`);
    const info = await answer.json();
    const url = `https://${relay.hostname}:${info.port}${info.path}`;
    const wt = new WebTransport(url, {
      serverCertificateHashes: info.serverCertificateHashes.map((x) => ({
        algorithm: x.algorithm,
        value: base64Bytes(x.value),
      })),
    });
    await wt.ready;
    const control = await wt.createBidirectionalStream();
    const controlWriter = control.writable.getWriter();
    pump(control.readable, h.control, () => {});
    (async () => {
      const incoming = wt.incomingUnidirectionalStreams.getReader();
      for (;;) {
        const { value, done } = await incoming.read();
        if (done) return;
        const stream = h.stream();
        pump(value, (c) => stream.push(c), () => stream.end());
      }
    })().catch(() => {});
    wt.closed.then(
      (why) => h.closed({ code: why.closeCode ?? null, reason: why.reason || '' }),
      (err) => h.closed({ code: null, reason: String(err && err.message ? err.message : err) }),
    );
    return {
      kind: 'webtransport',
      // A write fails only when the session is going; its close says why.
      writeControl: (bytes) => controlWriter.write(bytes).catch(() => {}),
      async openSend() {
        const s = await wt.createUnidirectionalStream();
        const w = s.getWriter();
        return (bytes) => w.write(bytes).catch(() => {});
      },
      close(code, reason) {
        try {
          wt.close({ closeCode: code, reason });
        } catch (_) {
          // Already closed.
        }
      },
    };
  }

  function tagged(id, bytes) {
    const w = new Writer().varint(id);
    const out = new Uint8Array(w.out.length + bytes.length);
    out.set(w.out);
    out.set(bytes, w.out.length);
    return out;
  }

  /** @param {URL} relay @param {LinkHandlers} h */
  function openWebSocket(relay, h) {
    const url = new URL('/v1/ws', relay);
    url.protocol = relay.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const streams = new Map();
    return new Promise((resolve, reject) => {
      let open = false;
      ws.onopen = () => {
        open = true;
        resolve({
          kind: 'websocket',
          writeControl: (bytes) => ws.send(tagged(0, bytes)),
          async openSend() {
            return (bytes) => ws.send(tagged(1, bytes));
          },
          close(code, reason) {
            try {
              ws.close(4000 + code, reason);
            } catch (_) {
              // Already closed.
            }
          },
        });
      };
      ws.onerror = () => {
        if (!open) reject(new Error(`could not open a WebSocket to ${url}`));
      };
      ws.onmessage = (e) => {
        const b = new Uint8Array(e.data);
        const r = new Reader(b);
        const id = r.varint();
        const rest = b.subarray(r.p);
        if (id === 0) {
          h.control(rest);
          return;
        }
        let s = streams.get(id);
        if (!s) {
          s = h.stream();
          streams.set(id, s);
        }
        if (rest.length === 0) {
          s.end();
          streams.delete(id);
        } else {
          s.push(rest);
        }
      };
      ws.onclose = (e) => {
        if (!open) reject(new Error(`the WebSocket to ${url} closed (${e.code})`));
        const ours = e.code >= 4000 && e.code < 5000;
        h.closed({ code: ours ? e.code - 4000 : null, reason: e.reason || '' });
      };
    });
  }

  /**
   * One delivery stream: a header naming the sender, then that sender's signals. A sender's
   * newer stream waits until its older one is read to the end.
   */
  class DeliveryStream {
    constructor(session, link) {
      this.session = session;
      this.link = link;
      this.frames = new Frames();
      this.from = undefined;
      this.waiting = [];
      this.active = false;
      this.ended = false;
    }
    push(chunk) {
      if (this.link !== this.session._link) return;
      let frames;
      try {
        frames = this.frames.push(chunk);
      } catch (e) {
        this.session._fail(e);
        return;
      }
      for (const f of frames) {
        if (this.from === undefined) {
          // A header that does not parse is the relay breaking the protocol, as a frame
          // that does not: the link closes. (Thrown from here, it would only have stopped
          // this stream, its signals lost without a word.)
          try {
            const r = new Reader(f);
            this.from = r.opt(() => r.id());
            r.end();
          } catch (e) {
            this.session._fail(e);
            return;
          }
          this.session._queueStream(this);
        } else if (this.active) {
          this.session._incoming(this.from, f);
        } else {
          this.waiting.push(f);
        }
      }
    }
    end() {
      if (this.link !== this.session._link) return;
      this.ended = true;
      if (this.active) this.session._streamDone(this);
    }
    activate() {
      this.active = true;
      for (const f of this.waiting) this.session._incoming(this.from, f);
      this.waiting = [];
      if (this.ended) this.session._streamDone(this);
    }
  }

  // ---------------------------------------------------------------------------------------
  // The OpenTok-shaped API.

  /** A member of the session, as OpenTok's `Connection`. */
  class Connection {
    constructor(info) {
      /** The relay's connection id (the one `signalbox listen` prints). */
      this.connectionId = info.id;
      /** The connection data from its token. */
      this.data = info.data;
      /** When it joined (Unix ms). */
      this.creationTime = info.joinedAt;
      /** Its display name (a Signalbox extra). */
      this.name = info.name;
      /** Its role: moderator, publisher, subscriber or server (a Signalbox extra). */
      this.role = info.role;
    }
  }

  class SignalboxError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
      this.name = ERROR_NAMES[code] || 'OT_UNEXPECTED_SERVER_RESPONSE';
    }
  }

  class EventEmitter {
    constructor() {
      this._handlers = new Map();
    }
    /**
     * Adds a handler: `on(name, handler[, context])`, or `on({name: handler, ...}[, context])`.
     */
    on(name, handler, context) {
      if (typeof name === 'object') {
        for (const [n, h] of Object.entries(name)) this.on(n, h, handler);
        return this;
      }
      for (const n of String(name).split(' ')) {
        if (!n) continue;
        if (!this._handlers.has(n)) this._handlers.set(n, []);
        this._handlers.get(n).push({ handler, context, once: false });
      }
      return this;
    }
    once(name, handler, context) {
      this.on(name, handler, context);
      const list = this._handlers.get(name);
      if (list) list[list.length - 1].once = true;
      return this;
    }
    /** Removes handlers: one, every one for a name, or all. */
    off(name, handler) {
      if (name === undefined) {
        this._handlers.clear();
      } else if (typeof name === 'object') {
        for (const [n, h] of Object.entries(name)) this.off(n, h);
      } else if (handler === undefined) {
        this._handlers.delete(name);
      } else {
        const list = (this._handlers.get(name) || []).filter((x) => x.handler !== handler);
        this._handlers.set(name, list);
      }
      return this;
    }
    _emit(name, event) {
      const list = this._handlers.get(name);
      if (!list) return;
      for (const entry of list.slice()) {
        if (entry.once) this.off(name, entry.handler);
        try {
          entry.handler.call(entry.context || this, event);
        } catch (e) {
          setTimeout(() => {
            throw e;
          });
        }
      }
    }
  }

  /**
   * A page's completion callback, called so that one that throws is reported as an uncaught
   * error (as an event handler's is) instead of stopping the link's reading midway: the
   * answers after it, in the same message or later ones, still come.
   * @param {?Function} callback
   */
  function guarded(callback) {
    if (!callback) return () => {};
    return (...args) => {
      try {
        callback(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    };
  }

  function keyOf(from) {
    return from === null ? '' : from;
  }

  function defaultRelay() {
    const script = typeof document !== 'undefined' ? document.currentScript : null;
    if (script && script.src) return new URL(script.src).origin;
    if (typeof location !== 'undefined') return location.origin;
    return 'http://127.0.0.1:7881';
  }
  const SCRIPT_ORIGIN = defaultRelay();

  /** A Signalbox session, with OpenTok's signaling API. */
  class Session extends EventEmitter {
    /**
     * @param {string} apiKey  the relay's Vonage API key, or anything (Signalbox tokens name
     *   their session themselves)
     * @param {string} sessionId
     * @param {{relay?: string, transport?: 'auto'|'webtransport'|'websocket', name?: string,
     *   receiveBroadcasts?: boolean, connectTimeout?: number}} [options] `connectTimeout`:
     *   milliseconds to open a link and be welcomed over one transport (10 000); `auto` then
     *   tries the next
     */
    constructor(apiKey, sessionId, options) {
      super();
      const o = options || {};
      this.apiKey = apiKey;
      this.sessionId = sessionId;
      this.relay = new URL(o.relay || SCRIPT_ORIGIN);
      this.options = {
        transport: o.transport || 'auto',
        connectTimeout: o.connectTimeout > 0 ? o.connectTimeout : CONNECT_TIMEOUT_MS,
        name: o.name || null,
        receiveBroadcasts: o.receiveBroadcasts !== false,
      };
      /** @type {?Connection} yourself, once connected */
      this.connection = null;
      /** @type {?string} 'webtransport' or 'websocket', once connected */
      this.transport = null;
      /** @type {Map<string, Connection>} everyone else in the session */
      this.connections = new Map();
      this._state = 'disconnected';
      this._link = null;
      this._send = null;
      this._ticket = null;
      this._limits = { maxDataBytes: DEFAULT_MAX_DATA };
      this._seq = 0;
      /** Signals not yet taken by the relay, in seq order. */
      this._outbox = [];
      /** Per sender: the highest seq received. */
      this._seen = new Map();
      /** Per sender: its delivery streams, the oldest first. */
      this._streams = new Map();
      this._frames = null;
      this._welcomed = null;
      this._leaving = false;
    }

    isConnected() {
      return this._state === 'connected';
    }

    /**
     * Joins the session with `token` (a Signalbox token or an OpenTok client token).
     * @param {?string} token
     * @param {(error?: Error) => void} [callback]
     * @returns {Promise<void>}
     */
    connect(token, callback) {
      const done = guarded(callback);
      if (this._state !== 'disconnected') {
        const e = new SignalboxError(400, 'already connected or connecting');
        setTimeout(() => done(e));
        return Promise.reject(e);
      }
      this._token = token || null;
      this._state = 'connecting';
      this._leaving = false;
      const joined = this._open(false).then(
        () => {
          this._state = 'connected';
          this._emit('connectionCreated', { type: 'connectionCreated', connection: this.connection });
          for (const c of this.connections.values()) {
            this._emit('connectionCreated', { type: 'connectionCreated', connection: c });
          }
          this._emit('sessionConnected', { type: 'sessionConnected', target: this });
          done();
        },
        (error) => {
          this._state = 'disconnected';
          done(error);
          throw error;
        },
      );
      // With a callback the error is reported there; the promise still rejects for `await`.
      if (callback) joined.catch(() => {});
      return joined;
    }

    /** Leaves the session: the others see `connectionDestroyed` with `clientDisconnected` at once. */
    disconnect() {
      if (this._state === 'disconnected') return;
      this._leaving = true;
      if (this._welcomed) {
        // A join or resume in flight ends here (its connection gets the `Leave` below).
        this._welcomed.reject(new SignalboxError(500, 'disconnected while joining'));
        this._welcomed = null;
      }
      const link = this._link;
      if (link) {
        try {
          link.writeControl(new Writer().varint(2).frame());
        } catch (_) {
          // The link is gone already.
        }
        // The relay closes after `Leave`; close from here too, with code 0 (a leave).
        setTimeout(() => link.close(0, 'left the session'), 200);
      }
      this._end('clientDisconnected');
    }

    /**
     * Removes `connection` from the session (moderators only).
     * @param {Connection|string} connection
     * @param {(error?: Error) => void} [callback]
     */
    forceDisconnect(connection, callback) {
      const done = guarded(callback);
      if (!this.isConnected()) {
        setTimeout(() => done(new SignalboxError(500, 'not connected to the session')));
        return;
      }
      const id = typeof connection === 'string' ? connection : connection.connectionId;
      this._link.writeControl(new Writer().varint(1).id(id).frame());
      this._kicks = (this._kicks || []).concat([{ id, done }]);
    }

    /**
     * Sends a signal: to everyone (`to` omitted; you get it too), to one connection, or to
     * an array of them.
     * @param {{type?: string, data?: string, to?: Connection|Connection[],
     *   retryAfterReconnect?: boolean}} signal
     * @param {(error?: Error) => void} [callback]
     */
    signal(signal, callback) {
      const done = guarded(callback);
      const fail = (code, message) => setTimeout(() => done(new SignalboxError(code, message)));
      const s = signal || {};
      const type = s.type === undefined ? '' : s.type;
      const data = s.data === undefined ? '' : s.data;
      if (typeof type !== 'string' || typeof data !== 'string') {
        return fail(400, 'type and data must be strings');
      }
      if (utf8.encode(type).length > MAX_TYPE) {
        return fail(413, `the type is longer than ${MAX_TYPE} bytes`);
      }
      if (!TYPE_RULE.test(type)) {
        return fail(400, 'the type may use only A-Z a-z 0-9 - _ ~');
      }
      const bytes = utf8.encode(data).length;
      if (bytes > this._limits.maxDataBytes) {
        return fail(413, `the data is ${bytes} bytes; at most ${this._limits.maxDataBytes}`);
      }
      let to = null;
      if (s.to !== undefined && s.to !== null) {
        const list = Array.isArray(s.to) ? s.to : [s.to];
        const ids = list.map((c) => (typeof c === 'string' ? c : c && c.connectionId));
        if (ids.length === 0 || ids.some((id) => typeof id !== 'string')) {
          return fail(400, 'to must be a connection or an array of connections');
        }
        try {
          ids.forEach(uuidBytes);
        } catch (e) {
          return fail(400, e.message);
        }
        to = Array.isArray(s.to) ? ids : ids[0];
      }
      const reconnecting = this._state === 'reconnecting';
      if (this._state !== 'connected' && !(reconnecting && s.retryAfterReconnect !== false)) {
        return fail(500, 'not connected to the session');
      }
      this._seq += 1;
      const w = new Writer().varint(this._seq);
      if (to === null) w.varint(0);
      else if (typeof to === 'string') w.varint(1).id(to);
      else {
        w.varint(2).varint(to.length);
        for (const id of to) w.id(id);
      }
      w.str(type).str(data);
      const entry = { seq: this._seq, frame: w.frame(), done };
      this._outbox.push(entry);
      if (this._send) {
        try {
          this._send(entry.frame);
        } catch (_) {
          // Resent after the reconnect.
        }
      }
    }

    // --- internals -----------------------------------------------------------------------

    async _open(resume) {
      const kinds =
        this.options.transport === 'auto'
          ? typeof WebTransport === 'function'
            ? ['webtransport', 'websocket']
            : ['websocket']
          : [this.options.transport];
      let lastError = null;
      for (const kind of kinds) {
        const attempt = this._attempt(kind, resume);
        let timer = null;
        const late = new Promise((_, reject) => {
          timer = setTimeout(() => {
            attempt.abandon();
            reject(new Error(`no answer over ${kind} in ${this.options.connectTimeout / 1000} s`));
          }, this.options.connectTimeout);
        });
        try {
          return await Promise.race([attempt.joined, late]);
        } catch (e) {
          // The relay's own answer (a refusal, a resume it cannot take) is final; a link
          // that failed or stayed silent is tried over the next transport.
          if (e instanceof SignalboxError) throw e;
          lastError = e;
        } finally {
          clearTimeout(timer);
        }
      }
      throw new SignalboxError(500, `could not reach the relay: ${lastError}`);
    }

    /**
     * One attempt to join over `kind`: `joined` settles with the welcome's result, and
     * `abandon()` drops the attempt (its link is closed, now or once it opens).
     */
    _attempt(kind, resume) {
      let link = null;
      let abandoned = false;
      // A resume given up on is not a leave: closed with `Abandoned` (7), the member waits for
      // the next attempt (the relay may have taken this one over already). A first join given
      // up on leaves (0), so nobody sees a member that never was.
      const gaveUp = resume ? 7 : 0;
      const handlers = {
        control: (chunk) => link && this._onControl(link, chunk),
        stream: () => new DeliveryStream(this, link),
        closed: (why) => link && this._onClosed(link, why),
      };
      const joined = (async () => {
        const opened =
          kind === 'webtransport'
            ? await openWebTransport(this.relay, handlers)
            : await openWebSocket(this.relay, handlers);
        if (abandoned) {
          opened.close(gaveUp, 'gave up connecting');
          throw new Error('gave up connecting');
        }
        link = opened;
        return this._join(link, resume);
      })();
      const abandon = () => {
        abandoned = true;
        if (link && this._link === link) {
          const welcomed = this._welcomed;
          this._link = null;
          this._welcomed = null;
          if (welcomed) welcomed.reject(new Error('gave up connecting'));
        }
        if (link) link.close(gaveUp, 'gave up connecting');
      };
      // Settled by the race in `_open` when abandoned.
      joined.catch(() => {});
      return { joined, abandon };
    }

    /** Says hello on a new link and waits for the welcome. */
    async _join(link, resume) {
      this._link = link;
      this._frames = new Frames();
      this._streams = new Map();
      const welcomed = new Promise((resolve, reject) => {
        this._welcomed = { resolve, reject };
      });
      const hello = new Writer();
      hello.varint(0).varint(PROTOCOL).str(this.sessionId);
      hello.opt(resume ? null : this._token, (t) => hello.str(t));
      hello.opt(this.options.name, (n) => hello.str(n));
      hello.opt(resume ? this._ticket : null, (t) => hello.id(t.connection).bytes(t.secret));
      hello.bool(this.options.receiveBroadcasts);
      const seen = resume ? Array.from(this._seen.entries()) : [];
      hello.varint(seen.length);
      for (const [from, seq] of seen) {
        hello.opt(from === '' ? null : from, (id) => hello.id(id)).varint(seq);
      }
      link.writeControl(hello.frame());
      const welcome = await welcomed;
      if (this._state === 'disconnected') {
        // The page left while this connection was joining: leave on it too.
        link.writeControl(new Writer().varint(2).frame());
        setTimeout(() => link.close(0, 'left the session'), 200);
        throw new SignalboxError(500, 'disconnected while joining');
      }
      this.transport = link.kind;
      this._limits = welcome.limits;
      this._ticket = welcome.ticket;
      this.connection = new Connection(welcome.me);
      if (!resume) {
        this._seen = new Map();
        this.connections = new Map();
      }
      const created = [];
      for (const p of welcome.peers) {
        if (!this.connections.has(p.id)) {
          const c = new Connection(p);
          this.connections.set(p.id, c);
          created.push(c);
        }
      }
      this._send = await link.openSend();
      // Everything the relay has not taken yet, with its own seq, in order.
      for (const entry of this._outbox) {
        if (entry.seq > welcome.acceptedUpTo) this._send(entry.frame);
      }
      return created;
    }

    _onControl(link, chunk) {
      if (link !== this._link) return;
      let frames;
      try {
        frames = this._frames.push(chunk);
      } catch (e) {
        return this._fail(e);
      }
      for (const f of frames) {
        let m;
        try {
          m = readRelayMessage(f);
        } catch (e) {
          return this._fail(e);
        }
        if (m.kind === 'closing') {
          // Over WebTransport the relay says why it is closing the connection, and waits a
          // moment for the page to close it: the browser would report the relay's own close
          // as "Connection lost", with no code, and drop what the page had not read yet.
          this._onClosed(link, { code: m.code, reason: m.reason });
          link.close(m.code, m.reason);
          return;
        }
        this._onMessage(m);
      }
    }

    _onMessage(m) {
      switch (m.kind) {
        case 'welcome':
          if (this._welcomed) this._welcomed.resolve(m);
          this._welcomed = null;
          break;
        case 'refused':
          if (this._welcomed) {
            const code = [400, 401, 401, 403, 1027, 503, 426, 410][m.code] || 400;
            const e = new SignalboxError(code, m.message);
            e.name = code === 401 ? 'OT_AUTHENTICATION_ERROR' : 'OT_CONNECT_FAILED';
            this._welcomed.reject(e);
            this._welcomed = null;
          }
          break;
        case 'joined': {
          if (this.connections.has(m.info.id)) break;
          const c = new Connection(m.info);
          this.connections.set(c.connectionId, c);
          if (this.isConnected()) {
            this._emit('connectionCreated', { type: 'connectionCreated', connection: c });
          }
          break;
        }
        case 'left': {
          const c = this.connections.get(m.id);
          if (!c) break;
          this.connections.delete(m.id);
          this._emit('connectionDestroyed', {
            type: 'connectionDestroyed',
            connection: c,
            reason: m.reason,
          });
          const kicks = (this._kicks || []).filter((k) => k.id === m.id);
          this._kicks = (this._kicks || []).filter((k) => k.id !== m.id);
          kicks.forEach((k) => k.done());
          break;
        }
        case 'accepted': {
          while (this._outbox.length && this._outbox[0].seq <= m.upTo) {
            this._outbox.shift().done();
          }
          break;
        }
        case 'rejected': {
          const i = this._outbox.findIndex((e) => e.seq === m.seq);
          if (i >= 0) this._outbox.splice(i, 1)[0].done(new SignalboxError(m.code, m.message));
          break;
        }
        case 'denied': {
          const k = (this._kicks || []).shift();
          if (k) k.done(new SignalboxError(403, m.message));
          this._emit('exception', { type: 'exception', code: 403, message: m.message });
          break;
        }
        case 'missed':
          this._emit('signalsMissed', {
            type: 'signalsMissed',
            from: m.from === null ? null : this._connection(m.from),
            first: m.first,
            last: m.last,
            count: m.count,
          });
          break;
      }
    }

    _connection(id) {
      if (this.connection && this.connection.connectionId === id) return this.connection;
      return (
        this.connections.get(id) ||
        new Connection({ id, name: '', role: 'publisher', data: '', joinedAt: 0 })
      );
    }

    _queueStream(stream) {
      const key = keyOf(stream.from);
      const list = this._streams.get(key) || [];
      list.push(stream);
      this._streams.set(key, list);
      if (list.length === 1) stream.activate();
    }

    _streamDone(stream) {
      const key = keyOf(stream.from);
      const list = this._streams.get(key) || [];
      if (list[0] === stream) list.shift();
      if (list.length) list[0].activate();
      else this._streams.delete(key);
    }

    _incoming(from, frame) {
      let seq, type, data;
      try {
        const r = new Reader(frame);
        seq = r.varint();
        r.bool();
        type = r.str();
        data = r.str();
        r.end();
      } catch (e) {
        return this._fail(e);
      }
      const key = keyOf(from);
      // Replays after a resume may repeat a few: each sender's seqs only rise.
      if (seq <= (this._seen.get(key) || 0)) return;
      this._seen.set(key, seq);
      const event = {
        type: type ? `signal:${type}` : 'signal',
        data,
        from: from === null ? null : this._connection(from),
        seq,
      };
      if (type) this._emit(`signal:${type}`, event);
      this._emit('signal', event);
    }

    _fail(error) {
      const link = this._link;
      if (link) link.close(1, String(error && error.message ? error.message : error));
    }

    _onClosed(link, why) {
      if (link !== this._link) return;
      this._link = null;
      this._send = null;
      if (this._welcomed) {
        const w = this._welcomed;
        this._welcomed = null;
        w.reject(new SignalboxError(500, why.reason || 'the connection closed'));
        return;
      }
      if (this._state === 'disconnected' || this._leaving) return;
      if (why.code === null && this._ticket) {
        this._reconnect();
        return;
      }
      const reason =
        why.code === 3 ? 'forceDisconnected' : why.code === 0 ? 'clientDisconnected' : 'networkDisconnected';
      this._end(reason);
    }

    async _reconnect() {
      this._state = 'reconnecting';
      this._emit('sessionReconnecting', { type: 'sessionReconnecting' });
      // Signals the page asked not to retry fail now.
      const deadline = Date.now() + RESUME_FOR_MS;
      let delay = 250;
      while (this._state === 'reconnecting' && Date.now() < deadline) {
        try {
          const created = await this._open(true);
          if (this._state !== 'reconnecting') return;
          this._state = 'connected';
          this._emit('sessionReconnected', { type: 'sessionReconnected' });
          for (const c of created) {
            this._emit('connectionCreated', { type: 'connectionCreated', connection: c });
          }
          return;
        } catch (e) {
          if (e && e.code === 410) break;
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 2000);
        }
      }
      if (this._state === 'reconnecting') this._end('networkDisconnected');
    }

    _end(reason) {
      const wasConnected = this._state === 'connected' || this._state === 'reconnecting';
      this._state = 'disconnected';
      this._link = null;
      this._send = null;
      const outbox = this._outbox;
      this._outbox = [];
      for (const entry of outbox) {
        entry.done(new SignalboxError(500, 'not connected to the session'));
      }
      for (const c of this.connections.values()) {
        this._emit('connectionDestroyed', { type: 'connectionDestroyed', connection: c, reason });
      }
      this.connections = new Map();
      if (wasConnected) {
        this._emit('sessionDisconnected', { type: 'sessionDisconnected', reason });
      }
    }
  }

  const Signalbox = {
    /** Makes a session object; `connect` joins it. */
    initSession(apiKey, sessionId, options) {
      return new Session(apiKey, sessionId, options);
    },
    Session,
    Connection,
    version: '1',
  };

  root.Signalbox = Signalbox;
  if (root.OT === undefined) root.OT = Signalbox;
})(typeof window !== 'undefined' ? window : globalThis);
