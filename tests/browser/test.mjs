// The browser SDK (/signalbox.js) and the web client (/) in headless Chromium against a real
// relay, with the command line on the other side: for WebTransport and for WebSocket,
// connect; 300 numbered signals each way in order; `signal:TYPE` handlers; 400, 404 and 413
// errors in callbacks; connectionCreated / connectionDestroyed; a resume after the relay (or
// the network to it) is blocked for 2 s, with nothing lost; a disconnect seen as `left`.
// A page that signals and leaves over WebTransport twenty times and still answers; a
// WebTransport that never answers; a resume whose answer comes after `connectTimeout`.
// Then the web page itself, at a phone size and a desktop size, and over `--http-tls`.
//
// Run by scripts/browser_test.sh (SIGNALBOX_BIN: the binary; CHROMIUM: the browser;
// SCREENSHOTS: a directory to keep the page's screenshots in).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.SIGNALBOX_BIN || path.join(here, '../../target/debug/signalbox');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const COUNT = 300;
const home = fs.mkdtempSync(path.join(os.tmpdir(), 'signalbox-browser-'));
const dataDir = path.join(home, 'data');
const env = { ...process.env, SIGNALBOX_HOME: home, RUST_LOG: process.env.RUST_LOG || 'warn,web_transport_quinn=error' };
const children = [];

/** The step under way, told if the run fails (an error from the browser names no line). */
let step = 'starting';
const at = (what) => {
  step = what;
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, check, ms = 20000) {
  const until = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function freePort(kind) {
  if (kind === 'udp') {
    const s = dgram.createSocket('udp4');
    await new Promise((r) => s.bind(0, '127.0.0.1', r));
    const { port } = s.address();
    s.close();
    return port;
  }
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function run(args, opts = {}) {
  const child = spawn(BIN, args, { env, stdio: ['pipe', 'pipe', 'inherit'], ...opts });
  children.push(child);
  return child;
}

/** `signalbox listen --json`: its events, as they come. */
function listen(invite, name) {
  const child = run(['listen', '--invite', invite, '--json', '--name', name]);
  const events = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => events.push(JSON.parse(l)));
  return { child, events };
}

/** `signalbox send --lines --type num`, fed `lines`, then closed. */
async function sendLines(invite, lines) {
  const child = run(['send', '--invite', invite, '--lines', '--type', 'num', '--name', 'cli-sender']);
  child.stdout.resume();
  child.stdin.end(lines.join('\n') + '\n');
  const code = await new Promise((r) => child.on('exit', r));
  assert.equal(code, 0, 'signalbox send exits 0');
}

/** A TCP proxy to the relay's HTTP listener that the test can cut for a while, or make slow
 * to answer. */
async function proxy(target) {
  const sockets = new Set();
  let blocked = false;
  let slow = 0;
  const server = net.createServer((client) => {
    if (blocked) return client.resetAndDestroy();
    const up = net.connect(target, '127.0.0.1');
    sockets.add(client).add(up);
    const drop = () => {
      sockets.delete(client);
      sockets.delete(up);
      client.destroy();
      up.destroy();
    };
    client.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    client.pipe(up);
    const delay = slow;
    slow = 0;
    if (!delay) return up.pipe(client);
    // The relay's first bytes (the WebSocket upgrade) at once, the rest `delay` ms late.
    let first = true;
    up.on('data', (d) => {
      const write = () => !client.destroyed && client.write(d);
      if (first) write();
      else setTimeout(write, delay);
      first = false;
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    async block(ms) {
      blocked = true;
      for (const s of sockets) s.resetAndDestroy();
      await sleep(ms);
      blocked = false;
    },
    /** The next connection gets the relay's answers `ms` late. */
    slowNext(ms) {
      slow = ms;
    },
    close: () => server.close(),
  };
}

function numsFrom(events, from) {
  return events
    .filter((e) => e.event === 'signal' && e.type === 'num' && e.from === from)
    .map((e) => Number(e.data));
}

function inOrder(list, first, last) {
  const want = [];
  for (let i = first; i <= last; i++) want.push(i);
  assert.deepEqual(list, want);
}

async function main() {
  const quic = await freePort('udp');
  const http = await freePort('tcp');
  // A short idle timeout: a relay frozen for 2 s loses its connections, and every client —
  // the browser's and the command line's — must resume.
  const relay = run([
    'relay',
    '--listen', `127.0.0.1:${quic}`,
    '--http', `127.0.0.1:${http}`,
    '--data-dir', dataDir,
    '--idle-timeout', '1s',
    '--keep-alive', '250ms',
  ]);
  relay.stdout.resume();
  const base = `http://127.0.0.1:${http}`;
  await waitFor('the relay', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok);
  const invite = (session, name, ...more) =>
    execFileSync(BIN, ['invite', '--session', session, '--data-dir', dataDir, '--host', `127.0.0.1:${quic}`, '--name', name, ...more], { env })
      .toString()
      .trim();
  const tokenOf = (inv) => new URL(inv.replace(/^signalbox:/, 'http:')).searchParams.get('token');
  // The relay's Vonage-compatible credentials: a page may join with a client token an OpenTok
  // server SDK minted (signed as the SDKs sign them).
  const creds = execFileSync(BIN, ['credentials', '--data-dir', dataDir], { env }).toString();
  const apiKey = /api_key: (\S+)/.exec(creds)[1];
  const apiSecret = /api_secret: (\S+)/.exec(creds)[1];
  const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const vonageToken = (session, data) => {
    const now = Math.floor(Date.now() / 1000);
    const body = `${b64({ typ: 'JWT', alg: 'HS256' })}.${b64({
      iss: apiKey, ist: 'project', iat: now, exp: now + 3600, nonce: Math.random(),
      scope: 'session.connect', session_id: session, role: 'publisher', connection_data: data,
    })}`;
    return `${body}.${crypto.createHmac('sha256', apiSecret).update(body).digest('base64url')}`;
  };

  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // A page that stops answering fails the step in a minute (puppeteer's default is 3).
    protocolTimeout: 60000,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    for (const transport of ['webtransport', 'websocket']) {
      await sdkTest({ transport, base, relay, invite, tokenOf, vonageToken, apiKey, browser });
    }
    await leaveTest({ base, invite, tokenOf, browser });
    for (const transport of ['websocket', 'webtransport']) {
      await kickTest({ transport, base, invite, tokenOf, browser });
    }
    await silentTest({ base, invite, tokenOf, browser });
    await malformedHeaderTest({ base, invite, tokenOf, browser });
    await lateResumeTest({ base, invite, tokenOf, browser });
    await pageTest({ base, invite, browser });
  } finally {
    await browser.close();
  }
  await tlsTest();
}

/** A relay whose WebTransport never answers (the page is told a UDP port where nothing
 * replies): a page that insists on WebTransport gets a clear error once `connectTimeout` is
 * over, not a promise that never settles, and `auto` gives up on it and joins over WebSocket. */
async function silentTest({ base, invite, tokenOf, browser }) {
  console.log('== a WebTransport that never answers');
  at('joining where WebTransport never answers');
  const silent = dgram.createSocket('udp4');
  silent.on('message', () => {});
  await new Promise((r) => silent.bind(0, '127.0.0.1', r));
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    if (new URL(req.url()).pathname !== '/v1/webtransport') return req.continue();
    return req.respond({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({
        port: silent.address().port,
        path: '/v1/wt',
        serverCertificateHashes: [
          { algorithm: 'sha-256', value: Buffer.alloc(32, 7).toString('base64') },
        ],
      }),
    });
  });
  try {
    await page.goto(`${base}/join`, { waitUntil: 'load' });
    const got = await page.evaluate(
      async (o) => {
        const out = {};
        const forced = OT.initSession('', 'silent', { transport: 'webtransport', connectTimeout: 1000 });
        const started = Date.now();
        try {
          await forced.connect(o.first);
          out.forced = 'connected';
        } catch (e) {
          out.forced = `${e.name}: ${e.message}`;
        }
        out.forcedMs = Date.now() - started;
        out.forcedState = forced.isConnected();
        const auto = OT.initSession('', 'silent', { connectTimeout: 1000 });
        await auto.connect(o.second);
        out.auto = auto.transport;
        auto.disconnect();
        return out;
      },
      { first: tokenOf(invite('silent', 'insists')), second: tokenOf(invite('silent', 'flexible')) },
    );
    assert.match(got.forced, /^OT_NOT_CONNECTED: .*no answer over webtransport in 1 s/, got.forced);
    assert.ok(got.forcedMs >= 900 && got.forcedMs < 5000, `gave up after ${got.forcedMs} ms`);
    assert.equal(got.forcedState, false);
    assert.equal(got.auto, 'websocket', 'auto falls back to WebSocket');
    console.log(`   ok: WebTransport given up after ${got.forcedMs} ms; auto joined over WebSocket`);
  } finally {
    await page.close();
    silent.close();
  }
}

/** A delivery stream whose header does not parse (here, one the page's WebSocket is made to
 * receive as if from the relay): the SDK closes the link and says so, as it does for a frame
 * that does not parse, rather than stop reading that stream alone and lose its signals. */
async function malformedHeaderTest({ base, invite, tokenOf, browser }) {
  console.log('== a delivery stream with a malformed header');
  at('joining, then receiving a malformed delivery header');
  const page = await browser.newPage();
  try {
    await page.goto(`${base}/join`, { waitUntil: 'load' });
    const got = await page.evaluate(async (token) => {
      const Plain = window.WebSocket;
      let socket = null;
      window.WebSocket = class extends Plain {
        constructor(...args) {
          super(...args);
          socket = this;
        }
      };
      const s = Signalbox.initSession('', 'malformed', { transport: 'websocket' });
      await s.connect(token);
      window.WebSocket = Plain;
      const ended = new Promise((r) => {
        setTimeout(() => r('still connected after 10 s'), 10000);
        s.on('sessionDisconnected', (e) => r(e.reason));
      });
      // Stream 99, one frame of two bytes: "a sender" (1), then 7 where a connection id's
      // length (16) belongs.
      const bytes = new Uint8Array([99, 0, 0, 0, 2, 1, 7]);
      socket.onmessage(new MessageEvent('message', { data: bytes.buffer }));
      return { reason: await ended, connected: s.isConnected() };
    }, tokenOf(invite('malformed', 'page')));
    assert.equal(got.reason, 'networkDisconnected', JSON.stringify(got));
    assert.equal(got.connected, false);
    await stillAnswers(page);
  } finally {
    await page.close();
  }
  console.log('   ok: the link closed (networkDisconnected), the page answering');
}

/** The page still answers, and its timers run: five evaluations, each through a timer. */
async function stillAnswers(page) {
  for (let i = 0; i < 5; i++) {
    await sleep(60);
    assert.equal(await page.evaluate(() => new Promise((r) => setTimeout(() => r(7), 10))), 7);
  }
}

/** A page that joins over WebTransport, signals to everyone (its own signal comes back on a
 * delivery stream it reads) and leaves, twenty times: the page answers after each. (When the
 * relay closed such a session with WebTransport's own goodbye, Chromium's renderer hung for
 * good within a few rounds: no timer ran, and every evaluation timed out.) */
async function leaveTest({ base, invite, tokenOf, browser }) {
  console.log('== joining, signalling and leaving over WebTransport, twenty times');
  const page = await browser.newPage();
  try {
    await page.goto(`${base}/join`, { waitUntil: 'load' });
    for (let round = 0; round < 20; round++) {
      at(`joining, signalling and leaving, round ${round}`);
      const got = await page.evaluate(async (token) => {
        const s = Signalbox.initSession('', 'leaving', { transport: 'webtransport' });
        await s.connect(token);
        const echo = await new Promise((r) => {
          setTimeout(() => r('no signal'), 10000);
          s.on('signal:hello', (e) => r(e.data));
          s.signal({ type: 'hello', data: 'to all' });
        });
        s.disconnect();
        return echo;
      }, tokenOf(invite('leaving', `round-${round}`)));
      assert.equal(got, 'to all');
      await stillAnswers(page);
    }
  } finally {
    await page.close();
  }
  console.log('   ok: twenty rounds, the page answering after each');
}

/** A moderator removes a WebTransport member while its page reads the member's delivery
 * stream, twenty times: the page is told `forceDisconnected` and goes on answering (the close
 * that comes with a kick must not hang the page, as the one after a leave once did). */
async function kickTest({ transport, base, invite, tokenOf, browser }) {
  console.log(`== a moderator removes a member on ${transport}, twenty times`);
  const page = await browser.newPage();
  try {
    await page.goto(`${base}/join`, { waitUntil: 'load' });
    for (let round = 0; round < 20; round++) {
      at(`a moderator removes a member, round ${round}`);
      const got = await page.evaluate(
        async (o) => {
          const m = Signalbox.initSession('', 'kicking', { transport: 'websocket' });
          await m.connect(o.moderator);
          const s = Signalbox.initSession('', 'kicking', { transport: o.transport });
          await s.connect(o.member);
          const out = {};
          out.echo = await new Promise((r) => {
            setTimeout(() => r('no signal'), 10000);
            s.on('signal:hello', (e) => r(e.data));
            s.signal({ type: 'hello', data: 'to all' });
          });
          out.reason = await new Promise((r) => {
            setTimeout(() => r('not disconnected'), 10000);
            s.on('sessionDisconnected', (e) => r(e.reason));
            // The member keeps its delivery streams busy while it is removed.
            for (let i = 0; i < 20; i++) m.signal({ type: 'busy', data: 'x'.repeat(1000) });
            m.forceDisconnect(s.connection.connectionId);
          });
          m.disconnect();
          return out;
        },
        {
          moderator: tokenOf(invite('kicking', `moderator-${round}`, '--role', 'moderator')),
          member: tokenOf(invite('kicking', `member-${round}`)),
          transport,
        },
      );
      assert.deepEqual(got, { echo: 'to all', reason: 'forceDisconnected' });
      await stillAnswers(page);
    }
  } finally {
    await page.close();
  }
  console.log('   ok: twenty rounds, the page told and answering after each');
}

/** A resume whose `Welcome` comes after `connectTimeout`: the page gives that attempt up, and
 * its next one resumes the same connection (a resume given up on is not a leave, though the
 * relay may have taken it over already). */
async function lateResumeTest({ base, invite, tokenOf, browser }) {
  console.log('== a resume whose answer comes late');
  at('a resume whose answer comes late');
  const cut = await proxy(new URL(base).port);
  const page = await browser.newPage();
  try {
    await page.goto(`${base}/join`, { waitUntil: 'load' });
    const me = await page.evaluate(
      async (o) => {
        const events = (window.events = []);
        const s = (window.s = Signalbox.initSession('', 'late-resume', {
          transport: 'websocket',
          relay: o.relay,
          connectTimeout: 1000,
        }));
        for (const name of ['sessionReconnecting', 'sessionReconnected', 'sessionDisconnected']) {
          s.on(name, () => events.push(name));
        }
        await s.connect(o.token);
        return s.connection.connectionId;
      },
      { relay: `http://127.0.0.1:${cut.port}`, token: tokenOf(invite('late-resume', 'late')) },
    );
    // The network drops; the first resume's answer then comes 2 s late.
    cut.slowNext(2000);
    await cut.block(0);
    const events = await waitFor('the page to resume or give up', async () => {
      const e = await page.evaluate(() => window.events);
      return e.includes('sessionReconnected') || e.includes('sessionDisconnected') ? e : null;
    });
    assert.deepEqual(events, ['sessionReconnecting', 'sessionReconnected']);
    assert.equal(await page.evaluate(() => s.connection.connectionId), me, 'the same connection');
    await page.evaluate(() => s.disconnect());
  } finally {
    await page.close();
    cut.close();
  }
  console.log('   ok: a resume given up on is not a leave; the next attempt resumed');
}

/** `--http-tls`: the page over https is a secure context, so it uses WebTransport; and the
 * WebSocket is served over TLS too (an https page cannot open ws://). */
async function tlsTest() {
  console.log('== the web page over --http-tls');
  at('the web page over --http-tls');
  const quic = await freePort('udp');
  const http = await freePort('tcp');
  const relay = run([
    'relay', '--open', '--http-tls',
    '--listen', `127.0.0.1:${quic}`,
    '--http', `127.0.0.1:${http}`,
    '--data-dir', path.join(home, 'tls'),
  ]);
  relay.stdout.resume();
  const base = `https://127.0.0.1:${http}`;
  // The relay's self-signed certificate: a person accepts it once; the test browser always.
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    acceptInsecureCerts: true,
    protocolTimeout: 60000,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    await waitFor('the TLS relay', async () =>
      page.goto(`${base}/join?session=lobby&name=Tess`, { waitUntil: 'load' }).then(() => true, () => false),
    );
    await page.evaluate(() => document.getElementById('go').click());
    const status = await waitFor('the join over TLS', () =>
      page.evaluate(() => !document.getElementById('room').classList.contains('hidden') &&
        document.getElementById('status').textContent),
    );
    assert.ok(await page.evaluate(() => window.isSecureContext));
    assert.match(status, /webtransport/);
    const forced = await page.evaluate(async () => {
      const s = Signalbox.initSession('', 'lobby', { transport: 'websocket' });
      await s.connect(null);
      const got = await new Promise((r) => {
        s.on('signal:ping', (e) => r(e.data));
        s.signal({ type: 'ping', data: 'over wss' });
      });
      s.disconnect();
      return [s.transport, got];
    });
    assert.deepEqual(forced, ['websocket', 'over wss']);
  } finally {
    await browser.close();
    relay.kill('SIGKILL');
  }
  console.log('   ok: the web page over --http-tls');
}

async function sdkTest({ transport, base, relay, invite, tokenOf, vonageToken, apiKey, browser }) {
  const session = `browser-${transport}`;
  console.log(`== ${transport}`);
  const cut = transport === 'websocket' ? await proxy(new URL(base).port) : null;
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  at(`${transport}: joining`);
  await page.goto(`${base}/join`, { waitUntil: 'load' });
  const joined = await page.evaluate(
    async (o) => {
      const t = (window.t = { nums: [], perType: 0, any: 0, events: [], errors: [] });
      const s = (window.s = OT.initSession(o.apiKey, o.session, {
        transport: o.transport,
        relay: o.relay,
      }));
      s.on('signal:num', (e) => t.nums.push([e.from && e.from.connectionId, Number(e.data)]));
      s.on('signal', (e) => {
        if (e.type === 'signal:num') t.any += 1;
      });
      for (const name of ['connectionCreated', 'connectionDestroyed']) {
        s.on(name, (e) => t.events.push([name, e.connection.connectionId, e.reason || null]));
      }
      for (const name of ['sessionReconnecting', 'sessionReconnected', 'sessionDisconnected']) {
        s.on(name, (e) => t.events.push([name, e.reason || null]));
      }
      await s.connect(o.token);
      return {
        me: s.connection.connectionId,
        data: s.connection.data,
        transport: s.transport,
        OT: window.OT === window.Signalbox,
      };
    },
    {
      session,
      transport,
      apiKey,
      // Over WebSocket the page joins with an OpenTok client token; over WebTransport with
      // a Signalbox one.
      token:
        transport === 'websocket'
          ? vonageToken(session, 'userId=42')
          : tokenOf(invite(session, 'browser')),
      relay: cut ? `http://127.0.0.1:${cut.port}` : base,
    },
  );
  assert.equal(joined.transport, transport);
  assert.ok(joined.OT, 'OT is defined as Signalbox');
  assert.equal(joined.data, transport === 'websocket' ? 'userId=42' : '', 'connection data from the token');
  const me = joined.me;
  const state = () => page.evaluate(() => window.t);

  // The command line joins: the page sees it; it sees the page's signals in order.
  const watcher = listen(invite(session, 'watcher'), 'watcher');
  const connected = await waitFor('listen to connect', () => watcher.events.find((e) => e.event === 'connected'));
  const watcherId = connected.me.id;
  await waitFor('connectionCreated for the listener', async () =>
    (await state()).events.some((e) => e[0] === 'connectionCreated' && e[1] === watcherId),
  );

  // 300 numbered signals from the page, to everyone.
  at(`${transport}: 300 signals from the page`);
  await page.evaluate((n) => {
    window.acks = 0;
    for (let i = 1; i <= n; i++) {
      s.signal({ type: 'num', data: String(i) }, (err) => {
        if (err) t.errors.push(err.message);
        else window.acks += 1;
      });
    }
  }, COUNT);
  await waitFor('the listener to get 300 signals', () => numsFrom(watcher.events, me).length >= COUNT);
  inOrder(numsFrom(watcher.events, me), 1, COUNT);
  await waitFor('every signal acknowledged', () => page.evaluate((n) => window.acks === n, COUNT));

  // 300 from the command line to everyone: in order, through both handlers.
  at(`${transport}: 300 signals from the command line`);
  const lines = Array.from({ length: COUNT }, (_, i) => String(i + 1));
  await sendLines(invite(session, 'cli-sender'), lines);
  const fromOthers = async () => (await state()).nums.filter(([from]) => from !== me);
  await waitFor('the page to get 300 signals', async () => (await fromOthers()).length >= COUNT);
  inOrder((await fromOthers()).map(([, n]) => n), 1, COUNT);
  const t1 = await state();
  // Its own 300 came back to it too (a signal to everyone reaches its sender).
  assert.equal(t1.nums.length, 2 * COUNT);
  assert.equal(t1.any, t1.nums.length, "'signal' and 'signal:num' saw the same signals");

  // Errors come to the callback with OpenTok's codes and names.
  at(`${transport}: errors`);
  const errors = await page.evaluate(async () => {
    // The relay's answer, or 'no answer' after 10 s (a lost answer fails the assertion
    // below, naming the signal, instead of hanging the page).
    const ask = (sig) =>
      new Promise((r) => {
        setTimeout(() => r('no answer'), 10000);
        s.signal(sig, (e) => r(e ? [e.code, e.name] : null));
      });
    return {
      tooLong: await ask({ type: 'num', data: 'x'.repeat(9000) }),
      badType: await ask({ type: 'no spaces', data: '' }),
      typeTooLong: await ask({ type: 'x'.repeat(129), data: '' }),
      unknown: await ask({ type: 'num', data: '', to: { connectionId: '00000000-0000-4000-8000-000000000000' } }),
    };
  });
  assert.deepEqual(errors.tooLong, [413, 'OT_INVALID_PARAMETER']);
  assert.deepEqual(errors.badType, [400, 'OT_INVALID_PARAMETER']);
  assert.deepEqual(errors.typeTooLong, [413, 'OT_INVALID_PARAMETER']);
  assert.deepEqual(errors.unknown, [404, 'OT_NOT_FOUND'], 'the relay names an unknown target');
  // A page's callback that throws is the page's error: the answers after it still come.
  const after = await page.evaluate(() => {
    s.signal({ type: 'thrower', data: '' }, () => {
      throw new Error('a callback that throws (expected)');
    });
    return new Promise((r) => {
      setTimeout(() => r('no answer'), 10000);
      s.signal({ type: 'thrower', data: '' }, (e) => r(e ? e.message : 'answered'));
    });
  });
  assert.equal(after, 'answered', 'a callback that throws does not stop the next');
  // A subscriber may only receive: the relay refuses its signal with 403.
  const subscriber = execFileSync(BIN, ['invite', '--session', session, '--data-dir', dataDir, '--host', '127.0.0.1:1', '--role', 'subscriber'], { env })
    .toString()
    .trim();
  const forbidden = await page.evaluate(
    async (o) => {
      const sub = Signalbox.initSession('', o.session, { transport: o.transport, relay: o.relay });
      await sub.connect(o.token);
      const got = await new Promise((r) => {
        setTimeout(() => r('no answer'), 10000);
        sub.signal({ type: 'num', data: '0' }, (e) => r(e ? [e.code, e.name] : null));
      });
      sub.disconnect();
      return got;
    },
    { session, transport, token: tokenOf(subscriber), relay: cut ? `http://127.0.0.1:${cut.port}` : base },
  );
  assert.deepEqual(forbidden, [403, 'OT_PERMISSION_DENIED']);

  // A second listener comes and goes: created, then destroyed as clientDisconnected.
  at(`${transport}: a listener comes and goes`);
  const visitor = listen(invite(session, 'visitor'), 'visitor');
  const visitorId = (await waitFor('the visitor', () => visitor.events.find((e) => e.event === 'connected'))).me.id;
  await waitFor('connectionCreated for the visitor', async () =>
    (await state()).events.some((e) => e[0] === 'connectionCreated' && e[1] === visitorId),
  );
  visitor.child.kill('SIGINT');
  const destroyed = await waitFor('connectionDestroyed for the visitor', async () =>
    (await state()).events.find((e) => e[0] === 'connectionDestroyed' && e[1] === visitorId),
  );
  assert.equal(destroyed[2], 'clientDisconnected');

  at(`${transport}: a resume`);
  // The relay (WebTransport) or the network to it (WebSocket) is blocked for 2 s while both
  // sides keep sending: the page resumes, and nothing is lost or doubled.
  const block = cut
    ? cut.block(2000)
    : (async () => {
        relay.kill('SIGSTOP');
        await sleep(2000);
        relay.kill('SIGCONT');
      })();
  await sleep(100);
  await page.evaluate((n) => {
    for (let i = n + 1; i <= n + 100; i++) s.signal({ type: 'num', data: String(i) });
  }, COUNT);
  const more = Array.from({ length: 100 }, (_, i) => String(COUNT + i + 1));
  const sending = sendLines(invite(session, 'cli-sender'), more);
  await block;
  await sending;
  await waitFor('the listener to get 400 signals', () => numsFrom(watcher.events, me).length >= COUNT + 100, 40000);
  inOrder(numsFrom(watcher.events, me), 1, COUNT + 100);
  await waitFor('the page to get 400 from others', async () => (await fromOthers()).length >= COUNT + 100, 40000).catch(async (e) => {
    const o = await fromOthers();
    const by = {};
    for (const [f, n] of o) (by[f] = by[f] || []).push(n);
    for (const [f, l] of Object.entries(by)) console.log(f, l.length, l[0], l[l.length - 1]);
    console.log(JSON.stringify((await state()).events));
    throw e;
  });
  // Two `send` runs: the first numbered 1..300, the second 301..400, each in order.
  const others = await fromOthers();
  const bySender = new Map();
  for (const [from, n] of others) bySender.set(from, [...(bySender.get(from) || []), n]);
  const runs = [...bySender.values()].sort((a, b) => a[0] - b[0]);
  assert.equal(runs.length, 2);
  inOrder(runs[0], 1, COUNT);
  inOrder(runs[1], COUNT + 1, COUNT + 100);
  const t2 = await state();
  const names = t2.events.map((e) => e[0]);
  assert.ok(names.includes('sessionReconnecting'), `the page noticed the loss (${names})`);
  assert.ok(names.includes('sessionReconnected'), 'and resumed');
  assert.ok(!names.includes('sessionDisconnected'));
  assert.deepEqual(t2.errors, []);
  assert.equal(await page.evaluate(() => s.connection.connectionId), me, 'the same connection');

  // The page leaves: the listener sees `left` as clientDisconnected at once.
  at(`${transport}: leaving`);
  await page.evaluate(() => s.disconnect());
  const left = await waitFor('the listener to see the page leave', () =>
    watcher.events.find((e) => e.event === 'left' && e.connection === me),
  );
  assert.equal(left.reason, 'clientDisconnected');
  watcher.child.kill('SIGINT');
  await page.close();
  if (cut) cut.close();
  console.log(`   ok: ${transport}`);
}

async function pageTest({ base, invite, browser }) {
  console.log('== the web page');
  at('the web page');
  const shots = process.env.SCREENSHOTS;
  const link = invite('lobby', 'Ann');
  const open = async (width, height, name, inviteLink) => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
    await page.setViewport({ width, height });
    await page.goto(`${base}/join`, { waitUntil: 'load' });
    // Join as a newcomer does: paste the invite, type a name, press Join.
    await page.evaluate(
      (link, name) => {
        document.getElementById('invite').value = link;
        document.getElementById('name').value = name;
        document.getElementById('go').click();
      },
      inviteLink,
      name,
    );
    await waitFor(`${name} to join`, () =>
      page.evaluate(() => !document.getElementById('room').classList.contains('hidden')),
    );
    return page;
  };
  const desk = await open(1280, 800, 'Ann', link);
  const phone = await open(390, 844, 'Bob', invite('lobby', 'Bob'));
  const people = (p) => p.evaluate(() => document.getElementById('people-list').textContent);
  await waitFor('both in the people list', async () => (await people(desk)).includes('Bob'));
  const say = (p, words) =>
    p.evaluate((w) => {
      document.getElementById('chat-input').value = w;
      document.querySelector('#chat-form button').click();
    }, words);
  await say(desk, 'Hello from the desktop');
  await waitFor('the phone to show it', () =>
    phone.evaluate(() => document.getElementById('messages').textContent.includes('Hello from the desktop')),
  );
  await waitFor('a read receipt', () =>
    desk.evaluate(() => document.getElementById('messages').textContent.includes('read by 1')),
  );
  await say(phone, 'Hi Ann, on my phone');
  await desk.evaluate(() => document.querySelector('#pad button[data-cmd="forward"]').click());
  await waitFor('the pad signal in the log', () =>
    phone.evaluate(() => document.getElementById('log').textContent.includes('robot')),
  );
  await waitFor('the reply', () =>
    desk.evaluate(() => document.getElementById('messages').textContent.includes('on my phone')),
  );
  if (shots) {
    await desk.screenshot({ path: path.join(shots, 'web-desktop.png') });
    await phone.screenshot({ path: path.join(shots, 'web-phone.png'), fullPage: true });
  }
  // Markup in a message stays text.
  await say(phone, '<img src=x onerror="window.owned=1">');
  await waitFor('the markup as text', () =>
    desk.evaluate(() => document.getElementById('messages').textContent.includes('<img src=x')),
  );
  assert.equal(await desk.evaluate(() => window.owned), undefined);
  // A page that leaves while still joining leaves nobody behind.
  const ghostToken = new URL(invite('lobby', 'ghost').replace(/^signalbox:/, 'http:')).searchParams.get('token');
  const early = await desk.evaluate(async (token) => {
    const g = Signalbox.initSession('', 'lobby', { transport: 'websocket' });
    const joining = g.connect(token).then(() => 'joined', (e) => e.code);
    await new Promise((r) => setTimeout(r, 5));
    g.disconnect();
    return joining;
  }, ghostToken);
  assert.ok(early === 500 || early === 'joined', `${early}`);
  await sleep(1500);
  assert.ok(!(await people(desk)).includes('ghost'), 'no ghost member');
  // Leave from the page.
  await phone.evaluate(() => document.getElementById('leave').click());
  await waitFor('Bob to leave the people list', async () => !(await people(desk)).includes('Bob'));
  console.log('   ok: the web page');
}

try {
  await main();
  console.log('browser tests passed');
} catch (e) {
  console.error(`failed while ${step}:`);
  console.error(e);
  process.exitCode = 1;
} finally {
  for (const c of children) {
    try {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    } catch (_) {
      // Gone already.
    }
  }
  fs.rmSync(home, { recursive: true, force: true });
}
