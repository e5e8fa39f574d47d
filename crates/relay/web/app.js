// The web client: join a session, see who is there, chat with read receipts, watch and
// send signals, drive a robot from the pad. Built on /signalbox.js only; everything a peer
// sends is shown as text, never as markup.
'use strict';

const $ = (id) => document.getElementById(id);
const CHAT = 'chat';
const READ = 'chat-read';
const MAX_LOG = 500;
const MAX_MESSAGES = 500;

let session = null;
/** My chat messages by seq: their element and who read them. */
const mine = new Map();

function text(tag, content, cls) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (content !== undefined) el.textContent = content;
  return el;
}

function bounded(list, max) {
  while (list.childElementCount > max) list.firstElementChild.remove();
}

function stickToBottom(list, add) {
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  add();
  if (atEnd) list.scrollTop = list.scrollHeight;
}

function status(state, detail) {
  const s = $('status');
  s.replaceChildren(text('span', '', 'dot' + (state === 'on' ? ' on' : state === 'wait' ? ' wait' : '')));
  s.append(detail);
}

function nameOf(connection) {
  if (!connection) return 'relay';
  if (session && session.connection && connection.connectionId === session.connection.connectionId) {
    return `${connection.name} (you)`;
  }
  return connection.name || connection.connectionId.slice(0, 8);
}

/** What the join form was given: an invite link, a web link, or a session name. */
function parseInvite(value) {
  const v = value.trim();
  if (/^(signalbox|https?):\/\//i.test(v)) {
    const url = new URL(v.replace(/^signalbox:/i, 'http:'));
    const session = url.searchParams.get('session') || decodeURIComponent(url.pathname.replace(/^\/+/, ''));
    return { session: session === 'join' ? '' : session, token: url.searchParams.get('token') || '' };
  }
  return { session: v, token: '' };
}

function renderPeople() {
  const list = $('people-list');
  const everyone = [session.connection, ...session.connections.values()].filter(Boolean);
  list.replaceChildren(
    ...everyone.map((c) => {
      const row = text('div', nameOf(c), 'person');
      row.append(text('small', `${c.role} · ${c.connectionId.slice(0, 8)}`));
      row.title = 'send signals to ' + c.name;
      row.onclick = () => {
        $('sig-to').value = c.connectionId;
      };
      return row;
    }),
  );
  $('count').textContent = `(${everyone.length})`;
  const to = $('sig-to');
  const chosen = to.value;
  to.replaceChildren(text('option', 'everyone'));
  to.firstChild.value = '';
  for (const c of everyone) {
    const o = text('option', nameOf(c));
    o.value = c.connectionId;
    to.append(o);
  }
  to.value = everyone.some((c) => c.connectionId === chosen) ? chosen : '';
}

function logSignal(event) {
  const list = $('log');
  stickToBottom(list, () => {
    const row = text('div');
    row.append(text('span', new Date().toLocaleTimeString() + ' ', 'f'));
    row.append(text('span', event.type.replace(/^signal:?/, '') || '(ping)', 't'));
    row.append(text('span', ` from ${nameOf(event.from)}: `, 'f'));
    const data = event.data.length > 300 ? event.data.slice(0, 300) + '…' : event.data;
    row.append(text('span', data));
    list.append(row);
    bounded(list, MAX_LOG);
  });
}

function showChat(event) {
  const list = $('messages');
  const me = session.connection && event.from && event.from.connectionId === session.connection.connectionId;
  stickToBottom(list, () => {
    const row = text('div', '', 'msg' + (me ? ' mine' : ''));
    row.append(text('b', nameOf(event.from) + ': '));
    row.append(text('span', event.data));
    if (me) {
      const receipt = text('span', '', 'receipt');
      row.append(receipt);
      mine.set(event.seq, { receipt, readers: new Set() });
      if (mine.size > MAX_MESSAGES) mine.delete(mine.keys().next().value);
    }
    list.append(row);
    bounded(list, MAX_MESSAGES);
  });
  if (!me && event.from) {
    // A read receipt: the message's seq, back to its sender only.
    session.signal({ type: READ, data: String(event.seq), to: event.from });
  }
}

function showReceipt(event) {
  const m = mine.get(Number(event.data));
  if (!m || !event.from) return;
  m.readers.add(event.from.connectionId);
  m.receipt.textContent = `✓ read by ${m.readers.size}`;
}

function sent(where) {
  return (error) => {
    $(where).textContent = error ? `${error.name} (${error.code}): ${error.message}` : '';
  };
}

function target() {
  const id = $('sig-to').value;
  if (!id) return undefined;
  return session.connections.get(id) || session.connection;
}

async function join(event) {
  event.preventDefault();
  const { session: id, token } = parseInvite($('invite').value);
  const name = $('name').value.trim();
  $('join-error').textContent = '';
  if (!id) {
    $('join-error').textContent = 'Give a session name or an invite link.';
    return;
  }
  localStorage.setItem('signalbox.name', name);
  $('go').disabled = true;
  status('wait', 'joining…');
  session = Signalbox.initSession('', id, { transport: $('transport').value, name: name || undefined });
  session.on({
    connectionCreated: renderPeople,
    connectionDestroyed: renderPeople,
    signal: logSignal,
    [`signal:${CHAT}`]: showChat,
    [`signal:${READ}`]: showReceipt,
    sessionReconnecting: () => status('wait', 'connection lost; reconnecting…'),
    sessionReconnected: () => connected(),
    sessionDisconnected: (e) => {
      status('off', `disconnected (${e.reason})`);
      $('room').classList.add('hidden');
      $('join').classList.remove('hidden');
      $('leave').classList.add('hidden');
      $('go').disabled = false;
    },
  });
  try {
    await session.connect($('token').value.trim() || token || null);
  } catch (e) {
    $('join-error').textContent = e.message;
    status('off', 'not connected');
    $('go').disabled = false;
    return;
  }
  $('join').classList.add('hidden');
  $('room').classList.remove('hidden');
  $('leave').classList.remove('hidden');
  connected();
  renderPeople();
}

function connected() {
  status('on', `${session.sessionId} · ${session.connection.name} · ${session.transport}`);
}

function start() {
  const q = new URLSearchParams(location.search);
  const invite = q.get('invite') || q.get('session') || '';
  $('invite').value = invite;
  $('token').value = q.get('token') || '';
  $('name').value = q.get('name') || localStorage.getItem('signalbox.name') || '';
  if (q.get('transport')) $('transport').value = q.get('transport');
  $('join').addEventListener('submit', join);
  $('leave').onclick = () => session && session.disconnect();
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('chat-input');
    if (!input.value.trim()) return;
    session.signal({ type: CHAT, data: input.value }, sent('chat-error'));
    input.value = '';
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    session.signal({ type: $('sig-type').value, data: $('sig-data').value, to: target() }, sent('send-error'));
  });
  for (const b of document.querySelectorAll('#pad button')) {
    b.onclick = () => session.signal({ type: 'robot', data: b.dataset.cmd, to: target() }, sent('send-error'));
  }
  const keys = { ArrowUp: 'forward', ArrowLeft: 'left', ' ': 'stop', ArrowRight: 'right', ArrowDown: 'back' };
  document.addEventListener('keydown', (e) => {
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
    if (typing || !session || !session.isConnected() || !keys[e.key]) return;
    e.preventDefault();
    session.signal({ type: 'robot', data: keys[e.key], to: target() }, sent('send-error'));
  });
  if (!invite) $('invite').value = 'lobby';
}

start();
