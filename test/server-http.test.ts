/**
 * A real loglogd spoken to with a plain HTTP client: the API contract, and every bad
 * input getting its 4xx JSON error while the server keeps serving with data intact.
 */
import test from 'ava';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { request } from 'undici';
import WebSocket from 'ws';
import { startNode } from './helpers/node-process.ts';
import { crc32c, parseFrames, frameSize, Kind, HEADER_SIZE } from '../spec/frame.ts';

async function post(url: string, body: Buffer, headers: Record<string, string> = {}) {
  const r = await request(`${url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), ...headers } });
  return { status: r.statusCode, json: (await r.body.json()) as any };
}

async function get(url: string) {
  const r = await request(url);
  const buf = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers, buf, json: () => JSON.parse(buf.toString()) };
}

/** What a tail from `offset` reports when the server refuses it: its JSON error and close code. */
async function tailError(url: string, offset: string): Promise<{ closeCode: number; error: any }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/tail?offset=${offset}`, { perMessageDeflate: false });
  let error: any = null;
  ws.on('message', (data, isBinary) => { if (!isBinary) error = JSON.parse(String(data)).error; });
  const closeCode = await new Promise<number>((resolve) => ws.once('close', resolve));
  return { closeCode, error };
}

test('append, read, end, status and tail over plain HTTP and WebSocket', async (t) => {
  const n = await startNode(t);
  const payloads = ['alpha', 'beta', 'gamma'].map((s) => Buffer.from(s));
  const offsets: number[] = [];
  for (const p of payloads) {
    const r = await post(n.url, p, { 'x-loglog-crc32c': String(crc32c(p)) });
    t.is(r.status, 200);
    t.is(r.json.end - r.json.offset, frameSize(p.length));
    offsets.push(r.json.offset);
  }
  t.true(offsets[0] < offsets[1] && offsets[1] < offsets[2]);
  const end = (await get(`${n.url}/v1/end`)).json().end;
  t.is(end, offsets[2] + frameSize(payloads[2].length));

  const read = await get(`${n.url}/v1/read?offset=${offsets[0]}`);
  t.is(read.status, 200);
  t.is(Number(read.headers['x-loglog-commit']), end);
  t.is(Number(read.headers['x-loglog-next']), end);
  const frames = [...parseFrames(read.buf, offsets[0])];
  t.deepEqual(frames.map((f) => f.payload.toString()), ['alpha', 'beta', 'gamma']);
  t.deepEqual(frames.map((f) => f.offset), offsets);

  // limit smaller than one frame still returns one whole frame
  const one = await get(`${n.url}/v1/read?offset=${offsets[1]}&limit=1`);
  t.deepEqual([...parseFrames(one.buf, offsets[1])].map((f) => f.payload.toString()), ['beta']);

  const status = (await get(`${n.url}/v1/status`)).json();
  t.is(status.role, 'leader');
  t.is(status.commit, end);
  t.true(status.segments >= 1);

  // The tail pushes what is committed and then what commits later.
  const ws = new WebSocket(`${n.url.replace('http', 'ws')}/v1/tail?offset=${offsets[0]}`, { perMessageDeflate: false });
  const seen: string[] = [];
  let at = offsets[0];
  const got4 = new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer) => {
      for (const f of parseFrames(data, at)) { if (f.kind === Kind.Data) seen.push(f.payload.toString()); at = f.offset + frameSize(f.length); }
      if (seen.length >= 4) resolve();
    });
  });
  await new Promise((r) => ws.once('open', r));
  await post(n.url, Buffer.from('delta'));
  await got4;
  ws.close();
  t.deepEqual(seen, ['alpha', 'beta', 'gamma', 'delta']);

  // Long poll: a read at the end waits for the next commit.
  const tailEnd = (await get(`${n.url}/v1/end`)).json().end;
  const pending = get(`${n.url}/v1/read?offset=${tailEnd}&wait=5000`);
  await post(n.url, Buffer.from('epsilon'));
  const polled = await pending;
  t.deepEqual([...parseFrames(polled.buf, tailEnd)].map((f) => f.payload.toString()), ['epsilon']);
});

test('a tail without offset starts at the commit end: only entries committed after it opens', async (t) => {
  const n = await startNode(t);
  await post(n.url, Buffer.from('before'));
  const end = (await get(`${n.url}/v1/end`)).json().end;
  const ws = new WebSocket(`${n.url.replace('http', 'ws')}/v1/tail`, { perMessageDeflate: false });
  t.teardown(() => ws.close());
  const first = new Promise<Buffer>((resolve) => ws.once('message', resolve));
  // The server takes its offset in the tick that answers the handshake: 'after' commits past it.
  await new Promise((r) => ws.once('open', r));
  const { offset } = (await post(n.url, Buffer.from('after'))).json;
  t.is(offset, end);
  t.deepEqual([...parseFrames(await first, end)].map((f) => f.payload.toString()), ['after']);
});

test('every bad input gets a 4xx JSON error and the server keeps serving with data intact', async (t) => {
  const n = await startNode(t, { args: ['--max-entry-bytes', '1MiB'] });
  const first = await post(n.url, Buffer.from('keep me'));
  t.is(first.status, 200);
  const end0 = first.json.end;

  const expectError = async (p: Promise<{ status: number; json: any }>, status: number, code: string) => {
    const r = await p;
    t.is(r.status, status, `${code}: ${JSON.stringify(r.json)}`);
    t.is(r.json.error.code, code);
    t.is(typeof r.json.error.message, 'string');
    return r.json.error;
  };
  const getJson = async (path: string) => { const r = await get(`${n.url}${path}`); return { status: r.status, json: r.json() }; };
  const call = async (method: string, path: string) => {
    const r = await request(`${n.url}${path}`, { method });
    return { status: r.statusCode, headers: r.headers, json: (await r.body.json()) as any };
  };

  // Every offset that cannot be read gets the readable range in its error, on /v1/read and
  // on /v1/tail (which sends the same JSON error, then closes with 4000 + the HTTP status).
  // Checked before the bad appends: the checksum mismatch's aborted frame commits after its
  // answer, so the end would move under the checks.
  const range = { start: 0, end: end0 };
  const refused: Array<[offset: string, status: number, code: string]> = [
    ['-1', 400, 'bad_offset'],
    ['abc', 400, 'bad_offset'],
    ['1.5', 400, 'bad_offset'],
    ['99999999999999999999', 400, 'bad_offset'],
    ['9007199254740993', 400, 'bad_offset'], // above 2^53: a double would round it to another offset
    [String(first.json.offset + 3), 400, 'bad_offset'], // mid-frame
    [String(range.end + 1000), 416, 'out_of_range'],
    ['99999999999999', 416, 'out_of_range'],
    [String(Number.MAX_SAFE_INTEGER), 416, 'out_of_range'],
  ];
  for (const [offset, status, code] of refused) {
    t.like(await expectError(getJson(`/v1/read?offset=${offset}`), status, code), range, `read at ${offset}`);
    const tail = await tailError(n.url, offset);
    t.is(tail.closeCode, 4000 + status, `tail at ${offset}`);
    t.like(tail.error, { code, ...range }, `tail at ${offset}`);
  }
  t.like(await expectError(getJson('/v1/read'), 400, 'bad_offset'), range);
  // A bad limit or wait is a malformed request, not a bad offset.
  t.regex((await expectError(getJson('/v1/read?offset=0&limit=-1'), 400, 'bad_request')).message, /^limit .* bytes/);
  t.regex((await expectError(getJson('/v1/read?offset=0&wait=abc'), 400, 'bad_request')).message, /^wait .* milliseconds/);

  // 413 before any byte is written
  await expectError(post(n.url, Buffer.alloc(2 * 1024 * 1024)), 413, 'too_large');
  // 411 without Content-Length (chunked body)
  const r411 = await new Promise<{ status: number; json: any }>((resolve, reject) => {
    const req = httpRequest(`${n.url}/v1/append`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(b) }));
    });
    req.on('error', reject);
    req.end('no length');
  });
  t.is(r411.status, 411);
  t.is(r411.json.error.code, 'length_required');
  // wrong client checksum
  await expectError(post(n.url, Buffer.from('xyz'), { 'x-loglog-crc32c': '12345' }), 400, 'checksum_mismatch');
  await expectError(post(n.url, Buffer.from('xyz'), { 'x-loglog-crc32c': 'abc' }), 400, 'bad_request');
  await expectError(post(n.url, Buffer.from('xyz'), { 'x-loglog-acks': 'some' }), 400, 'bad_request');
  await expectError(post(n.url, Buffer.from('xyz'), { 'x-loglog-copies': 'some' }), 400, 'bad_request');
  await expectError(post(n.url, Buffer.from('xyz'), { 'x-loglog-after': '-1' }), 400, 'bad_offset');
  await expectError(getJson('/v1/fate/some-id?after=x'), 400, 'bad_offset');
  await expectError(getJson('/v1/fate/bad%20id'), 400, 'bad_request');
  // Malformed percent-encoding is the client's mistake, not a retriable 500.
  await expectError(getJson('/v1/fate/%ZZ'), 400, 'bad_request');
  await expectError(call('PUT', '/v1/upload/%E0%A4%A'), 400, 'bad_request');

  await expectError(getJson('/v1/nope'), 404, 'not_found');
  // A known path asked with the wrong method: 405, naming the methods it takes.
  const wrongMethods: Array<[method: string, path: string, allow: string[]]> = [
    ['GET', '/v1/append', ['POST']], ['POST', '/v1/read', ['GET', 'HEAD']], ['GET', '/v1/trim', ['POST']],
    ['DELETE', '/v1/end', ['GET', 'HEAD']], ['POST', '/v1/status', ['GET', 'HEAD']], ['POST', '/v1/tail', ['GET', 'HEAD']],
    ['GET', '/v1/upload/some-id', ['PUT']], ['POST', '/v1/fate/some-id', ['GET', 'HEAD']],
  ];
  for (const [method, path, allow] of wrongMethods) {
    const r = await call(method, path);
    const e = await expectError(Promise.resolve(r), 405, 'method_not_allowed');
    t.is(r.headers.allow, allow.join(', '), `${method} ${path}`);
    t.deepEqual(e.allow, allow);
  }
  await expectError(getJson('/v1/tail'), 400, 'bad_request'); // a WebSocket endpoint, asked without an upgrade
  await expectError(call('POST', '/v1/trim?before=x'), 400, 'bad_offset');

  // Still serving, earlier data intact, the aborted checksum-mismatch frame is skipped by readers.
  const again = await post(n.url, Buffer.from('after errors'));
  t.is(again.status, 200);
  t.true(again.json.offset >= end0);
  const all = await get(`${n.url}/v1/read?offset=0`);
  const data = [...parseFrames(all.buf, 0)].filter((f) => f.kind === Kind.Data).map((f) => f.payload.toString());
  t.deepEqual(data, ['keep me', 'after errors']);
});

test('HEAD on a GET route answers as GET would, without the body (it was 405); on the rest, the same error status', async (t) => {
  const n = await startNode(t);
  const appended = await post(n.url, Buffer.from('head me'));
  t.is(appended.status, 200);
  const end = appended.json.end as number;
  const compare = async (path: string, status: number, sameLength = true) => {
    const g = await request(`${n.url}${path}`);
    const getBody = Buffer.from(await g.body.arrayBuffer());
    const h = await request(`${n.url}${path}`, { method: 'HEAD' });
    const headBody = Buffer.from(await h.body.arrayBuffer());
    t.is(h.statusCode, status, `HEAD ${path}`);
    t.is(g.statusCode, status, `GET ${path}`);
    t.is(headBody.length, 0, `HEAD ${path} has no body`);
    if (sameLength) t.is(h.headers['content-length'], String(getBody.length), `HEAD ${path} says how long the GET body is`);
    t.is(h.headers['content-type'], g.headers['content-type'], path);
    return h.headers;
  };
  await compare('/v1/end', 200);
  await compare('/v1/fate/some-id', 200);
  const read = await compare(`/v1/read?offset=${appended.json.offset}`, 200);
  t.is(read['x-loglog-next'], String(end));
  t.is(read['x-loglog-commit'], String(end));
  // At the commit end without a wait: answered at once, as a GET is (no long poll).
  t.is((await compare(`/v1/read?offset=${end}`, 200))['x-loglog-next'], String(end));
  // With a wait, a HEAD long-polls as a GET does, and is answered by the next commit.
  const polled = request(`${n.url}/v1/read?offset=${end}&wait=30000`, { method: 'HEAD' });
  const next = await post(n.url, Buffer.from('wakes the HEAD'));
  const woken = await polled;
  t.is(woken.statusCode, 200);
  t.is(woken.headers['x-loglog-next'], String(next.json.end));
  t.is((await woken.body.arrayBuffer()).byteLength, 0);
  await compare('/v1/read?offset=x', 400);
  await compare('/v1/read', 400);
  await compare('/v1/tail', 400);
  await compare('/v1/nope', 404, false); // the message names the method
  // /v1/status changes between two requests (traffic counters): only its status and type.
  const st = await request(`${n.url}/v1/status`, { method: 'HEAD' });
  t.is(st.statusCode, 200);
  t.is(st.headers['content-type'], 'application/json');
  t.is((await st.body.arrayBuffer()).byteLength, 0);
  // Still serving on the same connections, and nothing was appended by the HEADs.
  t.is((await get(`${n.url}/v1/end`)).json().end, next.json.end);
});

/** Sends `head` (request line and headers) on a raw socket and reads the answer until the server closes it. */
async function rawExchange(url: string, head: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const sock = connect(Number(new URL(url).port), '127.0.0.1');
  let text = '';
  sock.setEncoding('utf8').on('data', (d: string) => { text += d; });
  await new Promise<void>((res, rej) => { sock.once('close', () => res()); sock.once('error', rej); sock.write(`${head}\r\n`); });
  const [top, body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = top.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1] ?? NaN), headers, body };
}

test('a WebSocket upgrade the server refuses gets an HTTP answer with the JSON error and Connection: close (an unknown path had its socket dropped)', async (t) => {
  const n = await startNode(t);
  const upgrade = (method: string, path: string, extra = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n') =>
    `${method} ${path} HTTP/1.1\r\nHost: loglog\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${extra}`;
  const refusals: Array<[request: string, status: number, code: string, message: RegExp]> = [
    [upgrade('GET', '/nope'), 404, 'not_found', /^no route GET \/nope/],
    [upgrade('GET', '/v1/tails?offset=0'), 404, 'not_found', /^no route GET \/v1\/tails/],
    [upgrade('GET', '/v1/status'), 400, 'bad_request', /^\/v1\/status is not a WebSocket endpoint \(\/v1\/tail is\)/],
    [upgrade('POST', '/v1/tail'), 405, 'method_not_allowed', /opens with GET, not POST/],
    [upgrade('GET', '/v1/tail', 'Sec-WebSocket-Version: 13\r\n'), 400, 'bad_request', /^WebSocket handshake refused: .*Sec-WebSocket-Key/],
  ];
  for (const [req, status, code, message] of refusals) {
    const what = req.split('\r\n')[0];
    const r = await rawExchange(n.url, req);
    t.is(r.status, status, `${what}: ${r.body}`);
    t.is(r.headers.connection, 'close', what);
    t.is(r.headers['content-type'], 'application/json', what);
    t.is(Number(r.headers['content-length']), Buffer.byteLength(r.body), what);
    const { error } = JSON.parse(r.body);
    t.is(error.code, code, what);
    t.regex(error.message, message, what);
  }
  // A WebSocket client learns the status too, and the server goes on serving tails and requests.
  const ws = new WebSocket(`${n.url.replace('http', 'ws')}/v1/nope`);
  const status = await new Promise<number>((res) => ws.once('unexpected-response', (_req, response) => { res(response.statusCode!); response.resume(); }));
  t.is(status, 404);
  ws.on('error', () => {});
  t.is((await get(`${n.url}/v1/end`)).status, 200);
  const tail = await tailError(n.url, 'abc');
  t.is(tail.closeCode, 4400);
});

test('an empty query value is a 400 on every route, naming the parameter and what it takes (some were read as absent)', async (t) => {
  const n = await startNode(t);
  const first = await post(n.url, Buffer.from('x'));
  const range = { start: 0, end: first.json.end };
  const call = async (method: string, path: string) => {
    const r = await request(`${n.url}${path}`, { method, body: method === 'POST' ? 'x' : undefined });
    return { status: r.statusCode, json: (await r.body.json()) as any };
  };
  const offsetTakes = 'it takes a byte offset in decimal digits, from 0 to 2^53-1 (e.g. 0)';
  const cases: Array<[method: string, path: string, code: string, message: string]> = [
    ['GET', '/v1/read?offset=', 'bad_offset', `offset is empty: ${offsetTakes}`],
    ['GET', '/v1/read?offset=0&limit=', 'bad_request', 'limit is empty: it takes a non-negative whole number of bytes (default 1048576), or leave it out for its default'],
    ['GET', '/v1/read?offset=0&wait=', 'bad_request', 'wait is empty: it takes a non-negative whole number of milliseconds (default 0), or leave it out for its default'],
    ['GET', '/v1/read?offset=0&wait', 'bad_request', 'wait is empty: it takes a non-negative whole number of milliseconds (default 0), or leave it out for its default'],
    ['GET', '/v1/read?offset=0&minCommit=', 'bad_offset', `minCommit is empty: ${offsetTakes}, or leave it out for its default`],
    ['POST', '/v1/trim?before=', 'bad_offset', `before is empty: ${offsetTakes}`],
    ['GET', '/v1/fate/some-id?after=', 'bad_offset', `after is empty: ${offsetTakes}, or leave it out for its default`],
    ['GET', '/v1/end?linearizable=', 'bad_request', 'linearizable is empty: it takes 1 or true, 0 or false, or leave it out for its default'],
    ['GET', '/v1/end?linearizable', 'bad_request', 'linearizable is empty: it takes 1 or true, 0 or false, or leave it out for its default'],
    ['POST', '/v1/append?acks=', 'bad_request', 'acks is empty: it takes leader, quorum or all (default quorum), or leave it out for its default'],
  ];
  for (const [method, path, code, message] of cases) {
    const r = await call(method, path);
    t.is(r.status, 400, `${method} ${path}: ${JSON.stringify(r.json)}`);
    t.is(r.json.error.code, code, `${method} ${path}`);
    t.is(r.json.error.message, message, `${method} ${path}`);
    if (code === 'bad_offset' && !path.startsWith('/v1/fate')) t.like(r.json.error, range, `${method} ${path}: the readable range`);
  }
  // A yes/no parameter takes yes or no, nothing else (linearizable=yes was read as no).
  const yes = await call('GET', '/v1/end?linearizable=yes');
  t.is(yes.status, 400);
  t.is(yes.json.error.message, 'linearizable takes 1 or true, 0 or false, got "yes"');
  t.like((await call('GET', '/v1/end?linearizable=false')).json, { end: range.end });
  t.like((await call('GET', '/v1/end?linearizable=1')).json, { end: range.end, linearizable: true });

  // The tail refuses an empty offset the same way (it followed from the commit end, as without one).
  const ws = new WebSocket(`${n.url.replace('http', 'ws')}/v1/tail?offset=`, { perMessageDeflate: false });
  const outcome = new Promise<{ closeCode?: number; error?: any; frames?: boolean }>((res) => {
    let error: any = null;
    ws.on('message', (data, isBinary) => { if (isBinary) res({ frames: true }); else error = JSON.parse(String(data)).error; });
    ws.once('close', (closeCode) => res({ closeCode, error }));
  });
  // Were the tail open, this entry would reach it.
  const opened = new Promise<unknown>((res) => {
    ws.once('open', () => res(post(n.url, Buffer.from('y'))));
    ws.once('close', () => res(null));
  });
  const tail = await outcome;
  ws.terminate();
  await opened;
  t.is(tail.closeCode, 4400, JSON.stringify(tail));
  t.like(tail.error, { code: 'bad_offset', message: `offset is empty: ${offsetTakes}, or leave it out for its default`, ...range });
  // Nothing was appended by the refused append (x and y are the test's own).
  const read = await get(`${n.url}/v1/read?offset=0`);
  t.deepEqual([...parseFrames(read.buf, 0)].filter((f) => f.kind === Kind.Data).map((f) => f.payload.toString()), ['x', 'y']);
});

test('trim deletes whole segments, reads below the start get 410, a trim past the commit end 416', async (t) => {
  const n = await startNode(t, { args: ['--segment-bytes', '64KiB'] });
  const body = Buffer.alloc(10_000, 7);
  let last = 0;
  for (let i = 0; i < 30; i++) last = (await post(n.url, body)).json.offset;
  const before = (await get(`${n.url}/v1/status`)).json();
  t.true(before.segments >= 4);
  const tr = await request(`${n.url}/v1/trim?before=${last}`, { method: 'POST' });
  const { start } = (await tr.body.json()) as { start: number };
  t.true(start > 0 && start <= last);
  const after = (await get(`${n.url}/v1/status`)).json();
  t.true(after.segments < before.segments);
  const r = await get(`${n.url}/v1/read?offset=0`);
  t.is(r.status, 410);
  t.is(r.json().error.code, 'trimmed');
  t.is(r.json().error.start, start);
  const ok = await get(`${n.url}/v1/read?offset=${last}`);
  t.is(ok.status, 200);
  t.is([...parseFrames(ok.buf, last)][0].payload.length, body.length);
  t.is(HEADER_SIZE, 32);

  // A trim point past the commit end or malformed is refused with the range; the end itself is fine.
  const end = (await get(`${n.url}/v1/end`)).json().end;
  const trimAt = async (before: string) => {
    const r = await request(`${n.url}/v1/trim?before=${before}`, { method: 'POST' });
    return { status: r.statusCode, json: (await r.body.json()) as any };
  };
  for (const [before, status, code] of [['99999999999', 416, 'out_of_range'], [String(end + 1), 416, 'out_of_range'], ['-1', 400, 'bad_offset']] as const) {
    const r = await trimAt(before);
    t.is(r.status, status, before);
    t.like(r.json.error, { code, start, end }, before);
  }
  const atEnd = await trimAt(String(end));
  t.is(atEnd.status, 200);
  t.true(atEnd.json.start >= start && atEnd.json.start <= end);
});

test('a too-large append gets its 413, not a reset connection, every time', async (t) => {
  // The node answers before reading the body; it used to close with the body unread, and the
  // kernel's reset reached the client first about one time in eight (EPIPE).
  const n = await startNode(t, { args: ['--max-entry-bytes', '1MiB'] });
  for (let i = 0; i < 30; i++) {
    const r = await post(n.url, Buffer.alloc(2 * 1024 * 1024));
    t.is(r.status, 413);
    t.is(r.json.error.code, 'too_large');
  }
  t.is((await post(n.url, Buffer.from('still serving'))).status, 200);
});

test('a trim says in loglogd\'s output which segments it deleted (retention says so too, the same way)', async (t) => {
  const n = await startNode(t, { args: ['--segment-bytes', '4KiB'] });
  for (let i = 0; i < 12; i++) await post(n.url, Buffer.alloc(1000, i));
  const r = await request(`${n.url}/v1/trim?before=6000`, { method: 'POST' });
  const { start } = (await r.body.json()) as { start: number };
  t.true(start > 0);
  const { until } = await import('./helpers/cluster.ts');
  await until('the trim line', 5000, () => (n.stderr().includes(`a trim deleted the segments below ${start} (the log started at 0)`) ? true : undefined), () => n.stderr());
  t.pass();
});

test('retention runs as soon as a restarted node has re-committed its log, not a minute later', async (t) => {
  const n = await startNode(t, { args: ['--segment-bytes', '4KiB'] });
  for (let i = 0; i < 12; i++) await post(n.url, Buffer.alloc(1000, i));
  t.is(await n.stop(), 0);
  // Restarted with a size limit the log is over: the first check (at start) deletes.
  const again = await startNode(t, { dataDir: n.dataDir, args: ['--segment-bytes', '4KiB', '--retention-max-bytes', '4KiB'] });
  const { until } = await import('./helpers/cluster.ts');
  await until('the retention line', 10_000, () => (/retention deleted the segments below \d+ \(the log started at 0\)/.test(again.stderr()) ? true : undefined), () => again.stderr());
  const status = (await get(`${again.url}/v1/status`)).json();
  t.true(status.start > 0, JSON.stringify(status));
});

test('a stop answers a waiting long poll at once (503 unavailable): the node exits long before the wait would end', async (t) => {
  const n = await startNode(t);
  // Once the node's first noop is committed (a read from 0 waits for it): a long poll at the
  // end taken before it would be answered by the noop's commit, not by the stop.
  const first = await get(`${n.url}/v1/read?offset=0&wait=10000`);
  const end = Number(first.headers['x-loglog-commit']);
  t.true(end > 0, `commit end ${end}`);
  const wait = 60_000;
  // A raw socket: once write() calls back, the long poll is in the server's receive buffer.
  const sock = connect(Number(new URL(n.url).port), '127.0.0.1');
  t.teardown(() => { sock.destroy(); });
  let answer = '';
  sock.setEncoding('utf8').on('data', (d: string) => { answer += d; });
  sock.on('error', () => {});
  const closed = new Promise<void>((res) => sock.once('close', () => res()));
  await new Promise<void>((res) => sock.write(`GET /v1/read?offset=${end}&wait=${wait} HTTP/1.1\r\nHost: loglog\r\n\r\n`, () => res()));
  // A request sent after it, on another connection, answered: the server has taken the long poll in.
  t.is((await get(`${n.url}/v1/status`)).status, 200);
  const exited = new Promise<number | null>((res) => n.proc.once('exit', (code) => res(code)));
  const stopAt = Date.now();
  n.proc.kill('SIGTERM');
  t.is(await exited, 0, n.stderr());
  const took = Date.now() - stopAt;
  t.true(took < wait / 2, `stopped in ${took} ms, the long poll waits ${wait} ms`);
  await closed;
  t.regex(answer, /^HTTP\/1\.1 503 /, answer);
  t.regex(answer, /"code":"unavailable"/);
  t.regex(answer, /this node is stopping; read from another replica/);
});
