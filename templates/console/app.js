// The operator's console (served as is, no build). Server data only ever goes into the page as
// text (textContent), never as HTML. The API secret is sent once to sign in; afterwards the
// HttpOnly session cookie and the CSRF token held in this module's memory authorise requests.
const $ = (sel) => document.querySelector(sel);

/** Builds an element: h('td', { class: 'x', onclick }, 'text', child…). */
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) if (kid !== undefined && kid !== null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

let csrf = '';
let snap = { rooms: [], ingresses: [], egresses: [], queue: {} };
let events;

function flash(msg, isError = false) {
  const f = $('#flash');
  f.textContent = msg;
  f.className = isError ? 'error' : 'muted';
}

async function api(path, body) {
  const res = await fetch(`/console/api/${path}`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify(body ?? {}),
  });
  const json = await res.json().catch(() => ({}));
  if (res.status === 401) showLogin(json.msg ?? 'signed out');
  if (!res.ok) throw new Error(json.msg ?? `${res.status} ${res.statusText}`);
  return json;
}
const call = (service, method, body) => api(`twirp/${service}/${method}`, body);

/** Runs an action from a button, reporting its outcome in the flash line. */
function act(label, fn) {
  return async (e) => {
    e?.preventDefault?.();
    try {
      await fn();
      flash(`${label}: done`);
    } catch (err) {
      flash(`${label}: ${err.message}`, true);
    }
  };
}

// ---- sign-in ------------------------------------------------------------------------------

function showLogin(message = '') {
  events?.close();
  events = undefined;
  csrf = '';
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login').hidden = false;
  $('#login-error').textContent = message;
}

function signedIn(session) {
  csrf = session.csrf;
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = `${session.apiKey} · until ${new Date(session.expiresAt * 1000).toLocaleTimeString()}`;
  showPage();
  subscribe();
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const res = await fetch('/console/api/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ apiKey: form.apiKey.value, apiSecret: form.apiSecret.value }),
  });
  const json = await res.json().catch(() => ({}));
  form.apiSecret.value = '';
  if (!res.ok) {
    $('#login-error').textContent = json.msg ?? `sign-in failed (${res.status})`;
    return;
  }
  signedIn(json);
});

$('#logout').addEventListener('click', async () => {
  await api('logout').catch(() => undefined);
  showLogin('signed out');
});

function subscribe() {
  events?.close();
  events = new EventSource('/console/api/events');
  events.addEventListener('snapshot', (e) => {
    snap = JSON.parse(e.data);
    render();
  });
  events.addEventListener('expired', () => showLogin('session expired: sign in again'));
  events.addEventListener('problem', (e) => flash(`update failed: ${JSON.parse(e.data).msg}`, true));
  events.onerror = async () => {
    if (events?.readyState !== EventSource.CLOSED) return; // reconnecting by itself
    const res = await fetch('/console/api/session', { credentials: 'same-origin' });
    if (res.status === 401) showLogin((await res.json().catch(() => ({}))).msg ?? 'signed out');
    else setTimeout(subscribe, 2000);
  };
}

// ---- pages --------------------------------------------------------------------------------

function showPage() {
  const page = (location.hash || '#rooms').slice(1);
  for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== `page-${page}`;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  render();
}
window.addEventListener('hashchange', () => csrf && showPage());

/** Replaces a list's content, unless the operator is typing in it (a push would eat the text). */
function fill(container, nodes) {
  const active = document.activeElement;
  if (active && container.contains(active) && (active.tagName === 'INPUT' || active.tagName === 'TEXTAREA')) return;
  container.replaceChildren(...nodes);
}

function render() {
  if (!csrf) return;
  renderRooms();
  renderIngress();
  renderEgress();
}

const num = (v) => Number(v ?? 0);
const kbps = (bps) => `${Math.round(num(bps) / 1000)} kb/s`;
function bytes(n) {
  n = num(n);
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
const seconds = (ns) => `${(num(ns) / 1e9).toFixed(1)} s`;
const KINDS = { STANDARD: 'standard', INGRESS: 'ingress', EGRESS: 'egress', AGENT: 'agent', SIP: 'SIP' };

// ---- rooms --------------------------------------------------------------------------------

function renderRooms() {
  if (snap.rooms.length === 0) return fill($('#rooms'), [h('p', { class: 'muted' }, 'No live rooms.')]);
  fill(
    $('#rooms'),
    snap.rooms.map((room) => {
      const speaking = new Map(room.activeSpeakers.map((s) => [s.identity, s.level]));
      return h(
        'div',
        { class: 'card room', dataset: { room: room.name } },
        h('h2', {}, room.name, ' ', h('span', { class: 'muted' }, `${room.sid} · ${room.participants.length} participant(s)`), ' ',
          h('button', { class: 'danger', onclick: act(`delete ${room.name}`, () => call('livekit.RoomService', 'DeleteRoom', { room: room.name })) }, 'Delete room')),
        room.participants.length === 0
          ? h('p', { class: 'muted' }, 'Nobody here.')
          : h('table', {},
              h('tr', {}, h('th', {}, 'Participant'), h('th', {}, 'Kind'), h('th', {}, 'Tracks'), h('th', {}, 'Permissions'), h('th', {}, '')),
              room.participants.map((p) => participantRow(room.name, p, speaking))),
      );
    }),
  );
}

function participantRow(room, p, speaking) {
  const perm = p.permission ?? {};
  const boxes = {};
  const box = (field, label) => {
    boxes[field] = h('input', { type: 'checkbox', checked: perm[field] === true, dataset: { perm: field } });
    return h('label', {}, boxes[field], ' ', label);
  };
  const level = speaking.get(p.identity);
  return h(
    'tr',
    { class: 'participant', dataset: { identity: p.identity, kind: KINDS[p.kind] ?? String(p.kind).toLowerCase() } },
    h('td', {}, h('strong', {}, p.identity), p.name && p.name !== p.identity ? ` (${p.name})` : '', h('br'),
      level !== undefined ? h('span', { class: 'speaking' }, `speaking ${Math.round(level * 100)}%`) : h('span', { class: 'muted' }, p.state)),
    h('td', {}, h('span', { class: 'badge' }, KINDS[p.kind] ?? String(p.kind).toLowerCase())),
    h('td', {}, (p.tracks ?? []).map((t) => trackLine(room, p, t))),
    h('td', {}, box('can_publish', 'publish'), box('can_subscribe', 'subscribe'), box('can_publish_data', 'data'), ' ',
      h('button', {
        onclick: act(`permissions of ${p.identity}`, () =>
          call('livekit.RoomService', 'UpdateParticipant', {
            room,
            identity: p.identity,
            permission: { ...perm, can_publish: boxes.can_publish.checked, can_subscribe: boxes.can_subscribe.checked, can_publish_data: boxes.can_publish_data.checked },
          })),
      }, 'Save')),
    h('td', {}, h('button', { class: 'danger', onclick: act(`remove ${p.identity}`, () => call('livekit.RoomService', 'RemoveParticipant', { room, identity: p.identity })) }, 'Remove')),
  );
}

function trackLine(room, p, t) {
  const video = t.type === 'VIDEO';
  const layers = (t.layers ?? []).map((l) => `${l.width}×${l.height}`).join(', ');
  return h(
    'div',
    { class: 'track', dataset: { sid: t.sid, type: t.type.toLowerCase() } },
    h('span', { class: 'badge' }, video ? 'video' : 'audio'), ' ',
    t.mime_type || '?', video && t.width ? ` ${t.width}×${t.height}` : '',
    t.simulcast ? ` · simulcast ${layers}` : '',
    t.muted ? h('span', { class: 'badge bad' }, ' muted') : '', ' ',
    h('span', { class: 'muted' }, t.sid), ' ',
    h('button', { onclick: act(`${t.muted ? 'unmute' : 'mute'} ${t.sid}`, () => call('livekit.RoomService', 'MutePublishedTrack', { room, identity: p.identity, track_sid: t.sid, muted: !t.muted })) }, t.muted ? 'Unmute' : 'Mute'),
    video ? h('button', { class: 'preview', onclick: act(`preview ${t.sid}`, () => preview(room, p.identity, t.sid)) }, 'Preview') : '',
  );
}

// WHEP preview: a hidden subscribe-only token, minted by the server for this room, one minute long.
let pc;
let whepSession;
async function preview(room, identity, trackSid) {
  await stopPreview();
  const { token } = await api('preview', { room });
  $('#preview').hidden = false;
  $('#preview-what').textContent = `${room} / ${identity} / ${trackSid}`;
  const status = (s) => ($('#preview-status').textContent = s);
  pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    $('#preview-video').srcObject = stream;
  };
  pc.onconnectionstatechange = () => status(`connection: ${pc?.connectionState}`);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    setTimeout(resolve, 2000);
  });
  const path = ['whep', room, identity, trackSid].map(encodeURIComponent).join('/');
  const res = await fetch(`/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` }, body: pc.localDescription.sdp });
  if (res.status !== 201) throw new Error(`WHEP ${res.status}: ${(await res.json().catch(() => ({}))).detail ?? res.statusText}`);
  whepSession = new URL(res.headers.get('Location'), location.href).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  status('connecting');
}
async function stopPreview() {
  if (whepSession) await fetch(whepSession, { method: 'DELETE' }).catch(() => undefined);
  whepSession = undefined;
  pc?.close();
  pc = undefined;
  $('#preview').hidden = true;
}
$('#preview-close').addEventListener('click', () => void stopPreview());
window.addEventListener('pagehide', () => whepSession && fetch(whepSession, { method: 'DELETE', keepalive: true }).catch(() => undefined));

// ---- ingress ------------------------------------------------------------------------------

const ingressForm = $('#ingress-form');
const syncIngressForm = () => {
  for (const el of ingressForm.querySelectorAll('.url-only')) el.hidden = ingressForm.type.value !== 'URL_INPUT';
};
ingressForm.type.addEventListener('change', syncIngressForm);
syncIngressForm();
ingressForm.addEventListener('submit', act('create ingress', async () => {
  const f = ingressForm;
  const info = await call('livekit.Ingress', 'CreateIngress', {
    input_type: f.type.value,
    name: f.name.value || f.identity.value,
    room_name: f.room.value,
    participant_identity: f.identity.value,
    participant_name: f.identity.value,
    ...(f.type.value === 'URL_INPUT' ? { url: f.url.value } : {}),
    ...(f.transcode.checked ? { enable_transcoding: true } : {}),
  });
  showObs(info);
}));

function copyButton(text) {
  return h('button', {
    class: 'copy',
    onclick: act('copy', async () => {
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        // No clipboard permission (an insecure origin): select the text for Ctrl+C instead.
        const ta = h('textarea', {}, text);
        document.body.append(ta);
        ta.select();
        document.execCommand('copy');
        ta.remove();
      }
    }),
  }, 'Copy');
}

/** Exactly what to paste into OBS (Settings → Stream), or into any WHIP publisher. */
function showObs(info) {
  const obs = $('#obs');
  const row = (label, value, field) => [h('dt', {}, label), h('dd', {}, h('code', { class: 'secret', dataset: { field } }, value)), h('dd', {}, copyButton(value))];
  let body;
  if (info.input_type === 'RTMP_INPUT') {
    body = [
      h('p', {}, 'In OBS: Settings → Stream → Service ', h('strong', {}, 'Custom…'), ', then paste:'),
      h('dl', {}, row('Server', info.url, 'server'), row('Stream Key', info.stream_key, 'key')),
      h('p', { class: 'muted' }, 'Output: keyframe interval 2 s, no B-frames (x264 profile baseline or "zerolatency" tune) for passthrough.'),
    ];
  } else if (info.input_type === 'WHIP_INPUT') {
    body = [
      h('p', {}, 'In OBS 30+: Settings → Stream → Service ', h('strong', {}, 'WHIP'), ', then paste:'),
      h('dl', {}, row('Server', info.url, 'server'), row('Bearer Token', info.stream_key, 'key')),
    ];
  } else {
    body = [h('p', {}, 'This ingress pulls ', h('code', {}, info.url), ' itself: nothing to paste.')];
  }
  obs.replaceChildren(h('h2', {}, `Stream settings for ${info.name || info.ingress_id} `, h('button', { onclick: () => (obs.hidden = true) }, 'Close')), ...body);
  obs.dataset.ingress = info.ingress_id;
  obs.hidden = false;
}

function renderIngress() {
  const speakers = new Map(snap.rooms.flatMap((r) => r.activeSpeakers.map((s) => [`${r.name}\u0000${s.identity}`, s.level])));
  if (snap.ingresses.length === 0) return fill($('#ingresses'), [h('p', { class: 'muted' }, 'No ingresses yet.')]);
  fill($('#ingresses'), [
    h('table', {},
      h('tr', {}, h('th', {}, 'Ingress'), h('th', {}, 'Room / participant'), h('th', {}, 'State'), h('th', {}, 'Health'), h('th', {}, '')),
      snap.ingresses.map((i) => {
        const st = i.state ?? {};
        const v = st.video;
        const a = st.audio;
        const gop = i.health?.keyframeIntervalMs ?? 0;
        const handling = { passthrough: 'passthrough (no re-encode)', bframes_reencoded: 'B-frames: re-encoded', transcoded: 'transcoded' }[i.health?.videoHandling] ?? '';
        const level = speakers.get(`${i.room_name}\u0000${i.participant_identity}`);
        const live = st.status === 'ENDPOINT_PUBLISHING' || st.status === 'ENDPOINT_BUFFERING';
        return h('tr', { class: 'ingress', dataset: { ingress: i.ingress_id, status: st.status } },
          h('td', {}, h('strong', {}, i.name || i.ingress_id), h('br'), h('span', { class: 'muted' }, `${i.input_type.replace('_INPUT', '')} · ${i.ingress_id}`),
            i.stream_key ? h('div', { class: 'muted' }, 'key ', h('code', {}, `${i.stream_key.slice(0, 4)}…`)) : ''),
          h('td', {}, i.room_name, ' / ', i.participant_identity),
          h('td', {}, h('span', { class: `badge ${st.status === 'ENDPOINT_PUBLISHING' ? 'ok' : st.status === 'ENDPOINT_ERROR' ? 'bad' : ''}` }, (st.status ?? '').replace('ENDPOINT_', '').toLowerCase()),
            st.error ? h('div', { class: 'error' }, st.error) : ''),
          h('td', { class: 'health' },
            live && v ? h('div', { dataset: { health: 'video' } }, `${(v.mime_type ?? '').replace('video/', '')} ${v.width}×${v.height} · ${num(v.framerate).toFixed(1)} fps · ${kbps(v.average_bitrate)}`) : '',
            live && gop ? h('div', { dataset: { health: 'keyframe' } }, `keyframe every ${(gop / 1000).toFixed(1)} s`) : '',
            live && handling ? h('div', { dataset: { health: 'bframes' } }, handling) : '',
            live && a ? h('div', {}, `${(a.mime_type ?? '').replace('audio/', '')} ${a.channels} ch · ${kbps(a.average_bitrate)}`, level !== undefined ? ` · level ${Math.round(level * 100)}%` : '') : '',
            live && gop > 2500 ? h('div', { class: 'warn', dataset: { warning: 'keyframe' } }, `Keyframe interval ${(gop / 1000).toFixed(1)} s: new viewers wait that long for a picture. Set OBS's Keyframe Interval to 2 s.`) : ''),
          h('td', {},
            i.input_type !== 'URL_INPUT' ? h('button', { onclick: () => showObs(i) }, 'OBS settings') : '', ' ',
            h('button', { class: 'danger', onclick: act(`delete ${i.ingress_id}`, () => call('livekit.Ingress', 'DeleteIngress', { ingress_id: i.ingress_id })) }, 'Delete')));
      })),
  ]);
}

// ---- egress -------------------------------------------------------------------------------

const egressForm = $('#egress-form');
const syncEgressForm = () => {
  const kind = egressForm.kind.value;
  for (const el of egressForm.querySelectorAll('.participant-only')) el.hidden = kind !== 'participant';
  for (const el of egressForm.querySelectorAll('.track-only')) el.hidden = kind !== 'track';
  for (const el of egressForm.querySelectorAll('.stream-only')) el.hidden = kind === 'track';
};
egressForm.kind.addEventListener('change', syncEgressForm);
syncEgressForm();
egressForm.addEventListener('submit', act('start egress', async () => {
  const f = egressForm;
  const file = f.file.value.trim();
  const urls = f.rtmp.value.split(/\s+/).filter(Boolean);
  const outputs = {
    ...(file ? { file_outputs: [{ filepath: file }] } : {}),
    ...(urls.length ? { stream_outputs: [{ protocol: 'RTMP', urls }] } : {}),
  };
  if (f.kind.value === 'room') await call('livekit.Egress', 'StartRoomCompositeEgress', { room_name: f.room.value, ...outputs });
  else if (f.kind.value === 'participant') await call('livekit.Egress', 'StartParticipantEgress', { room_name: f.room.value, identity: f.identity.value, ...outputs });
  else await call('livekit.Egress', 'StartTrackEgress', { room_name: f.room.value, track_id: f.track.value, file: { filepath: file } });
}));

function egressKind(e) {
  for (const k of ['room_composite', 'participant', 'track_composite', 'track', 'web']) if (e[k]) return k.replace('_', ' ');
  return '?';
}

function renderEgress() {
  const q = snap.queue ?? {};
  fill($('#queue'), [
    q.error
      ? h('p', { class: 'error' }, q.error)
      : h('div', { class: 'card', dataset: { waiting: q.waiting, active: q.active } },
          h('p', {}, `${q.waiting ?? 0} waiting · ${q.active ?? 0} active · ${(q.workers ?? []).length} worker(s)`),
          (q.workers ?? []).length
            ? h('table', {}, h('tr', {}, h('th', {}, 'Worker'), h('th', {}, 'Address'), h('th', {}, 'Jobs'), h('th', {}, 'Load')),
                q.workers.map((w) => h('tr', { class: 'worker' }, h('td', {}, w.name), h('td', {}, w.addr), h('td', {}, w.jobs.join(', ') || '—'),
                  h('td', {}, `${w.reservedCpu.toFixed(2)} / ${num(q.maxCpu).toFixed(1)} cores`))))
            : h('p', { class: 'warn' }, 'No egress worker is connected: jobs wait in the queue.')),
  ]);
  if (snap.egresses.length === 0) return fill($('#egresses'), [h('p', { class: 'muted' }, 'No egresses yet.')]);
  fill($('#egresses'), snap.egresses.map((e) => {
    const live = e.status === 'EGRESS_STARTING' || e.status === 'EGRESS_ACTIVE';
    const file = e.file_results?.[0];
    const addInput = h('input', { placeholder: 'rtmp://… add a destination', class: 'add-url' });
    return h('div', { class: 'card egress', dataset: { egress: e.egress_id, status: e.status } },
      h('h2', {}, `${egressKind(e)} · ${e.room_name} `, h('span', { class: 'muted' }, e.egress_id), ' ',
        h('span', { class: `badge ${e.status === 'EGRESS_COMPLETE' || e.status === 'EGRESS_ACTIVE' ? 'ok' : e.status === 'EGRESS_FAILED' ? 'bad' : ''}` }, e.status.replace('EGRESS_', '').toLowerCase()), ' ',
        live ? h('button', { class: 'danger', onclick: act(`stop ${e.egress_id}`, () => call('livekit.Egress', 'StopEgress', { egress_id: e.egress_id })) }, 'Stop') : ''),
      file
        ? h('p', { class: 'file' },
            h('strong', {}, file.filename || file.location), ' · ',
            h('span', { dataset: { progress: 'duration' } }, seconds(file.duration)), ' · ',
            h('span', { dataset: { progress: 'size' } }, bytes(file.size)),
            e.status === 'EGRESS_ENDING' ? ' · finishing and uploading…' : '',
            file.location ? h('span', {}, ' · stored at ', h('code', { dataset: { progress: 'location' } }, file.location)) : '',
            e.backup_storage_used ? h('span', { class: 'warn' }, ' upload failed: kept in the backup folder, retried later') : '')
        : '',
      e.error ? h('p', { class: 'error' }, e.error) : '',
      e.details ? h('p', { class: 'muted' }, e.details) : '',
      (e.stream_results ?? []).length || (live && e.stream_results)
        ? h('div', {},
            (e.stream_results ?? []).map((s) => h('div', { class: 'stream' }, h('code', {}, s.url), ' ', h('span', { class: 'badge' }, s.status.toLowerCase()),
              s.error ? h('span', { class: 'error' }, ` ${s.error}`) : '', ' ',
              live && s.status === 'ACTIVE'
                ? h('button', { onclick: act('remove destination', () => call('livekit.Egress', 'UpdateStream', { egress_id: e.egress_id, remove_output_urls: [s.url] })) }, 'Remove')
                : '')),
            live && (e.stream_results ?? []).length
              ? h('div', {}, addInput, ' ', h('button', { onclick: act('add destination', () => call('livekit.Egress', 'UpdateStream', { egress_id: e.egress_id, add_output_urls: [addInput.value] })) }, 'Add RTMP'))
              : '')
        : '');
  }));
}

// ---- start --------------------------------------------------------------------------------

const res = await fetch('/console/api/session', { credentials: 'same-origin' });
if (res.ok) signedIn(await res.json());
else showLogin();
