/**
 * What an append reports when attempts fail in between (lost answers, fate lookups, a closed
 * client), and the limits the client learns; against small fake servers.
 */
import test from 'ava';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Kind, crc32c, encodeFrame } from '../spec/frame.ts';
import { LogClient } from '../client/log-client.ts';
import { LogError } from '../spec/errors.ts';
import { until } from './helpers/cluster.ts';
import { runCli } from './helpers/cli.ts';

type H = (req: IncomingMessage, res: ServerResponse, body: Buffer, path: string) => void;
interface Fake { url: string; server: Server; handler: H; log: string[] }

async function fake(): Promise<Fake> {
  const f = { log: [] as string[] } as Fake;
  f.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path !== '/v1/status') f.log.push(`${req.method} ${path}`);
      f.handler(req, res, Buffer.concat(chunks), path);
    });
  });
  await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', () => r()));
  f.url = `http://127.0.0.1:${(f.server.address() as AddressInfo).port}`;
  return f;
}
function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
function status(res: ServerResponse, id: string, a: Fake, b: Fake): void {
  json(res, 200, { id, role: id === 'a' ? 'leader' : 'follower', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0,
    peers: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }] });
}

test('acks=all: an answer from a later attempt, after a fate lookup that could not finish, is not reported unconfirmed', async (t) => {
  const a = await fake();
  const b = await fake();
  let posts = 0;
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return status(res, 'a', a, b);
    if (path === '/v1/append') return json(res, 500, { error: { code: 'internal', message: 'write failed after sequencing' } });
    // The real server's fate has no term, so the client reads the entry; A dies in between.
    if (path.startsWith('/v1/fate/')) { json(res, 200, { state: 'committed', offset: 0, end: 34 }); a.server.close(); a.server.closeAllConnections(); return; }
    req.socket.destroy();
  };
  b.handler = (req, res, body, path) => {
    if (path === '/v1/status') return status(res, 'b', a, b);
    if (path.startsWith('/v1/upload/')) return json(res, 200, {});
    if (path.startsWith('/v1/fate/')) return json(res, 200, { state: 'aborted' });
    if (path === '/v1/append') { posts++; t.is(req.headers['x-loglog-acks'], 'all'); return json(res, 200, { offset: 100, end: 134, term: 2 }); }
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  const client = new LogClient({ servers: [a.url, b.url], retry: { retries: 4, minDelayMs: 1, maxDelayMs: 5 } });
  let r: unknown; let err: unknown;
  try { r = await client.append(Buffer.from('x'), { acks: 'all' }); } catch (e) { err = e; }
  t.log(a.log, b.log, r, (err as LogError)?.code, (err as Error)?.message);
  await client.close(); b.server.close();
  t.is(posts, 1);
  t.is(err, undefined);
});

test('client.close() while a possibly written append waits to retry: aborted, with the upload id and mayHaveLanded', async (t) => {
  const a = await fake();
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    req.socket.destroy(); // the append may have been written; its answer is lost
  };
  const client = new LogClient({ servers: [a.url], retry: { retries: 4, minDelayMs: 400, maxDelayMs: 400 } });
  const p = client.append(Buffer.from('x'));
  // Closed once the append went out (a sleep here lost the race on a busy machine: closed
  // before anything was sent, the append is plainly aborted).
  await until('the append was sent', 10_000, () => (a.log.includes('POST /v1/append') ? true : undefined));
  await client.close();
  const e = await t.throwsAsync(p);
  a.server.close();
  t.is((e as LogError).code, 'aborted');
  t.is(typeof (e as LogError).details.uploadId, 'string');
  t.is((e as LogError).details.mayHaveLanded, true);
  t.regex(e!.message, /ask fate\(/);
});

test('maxEntryBytes is the smallest of the members, the ones the seeds named included', async (t) => {
  const a = await fake();
  const b = await fake();
  const st = (id: string, max: number) => ({ id, role: id === 'a' ? 'follower' : 'leader', term: 1, leader: 'b', leaderUrl: b.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0,
    maxEntryBytes: max, peers: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }] });
  a.handler = (_req, res) => json(res, 200, st('a', 1 << 20));
  b.handler = (_req, res) => json(res, 200, st('b', 1000));
  const client = new LogClient({ servers: [a.url] });
  await client.discover();
  // The members the seed named are asked in the background.
  await until('the leader\'s limit is heard', 5000, () => (client.maxEntryBytes === 1000 ? true : undefined));
  await client.close(); a.server.close(); b.server.close();
  t.is(client.maxEntryBytes, 1000);
});

test('requestTimeoutMs: 0 (no timeout) leaves no retry budget either: every retry is made', async (t) => {
  const a = await fake();
  let n = 0;
  a.handler = (_req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    if (path === '/v1/end' && ++n <= 3) return json(res, 503, { error: { code: 'unavailable', message: 'electing' } });
    json(res, 200, { start: 0, end: 0 });
  };
  const client = new LogClient({ servers: [a.url], requestTimeoutMs: 0, retry: { minDelayMs: 5, maxDelayMs: 10 } });
  let err: unknown;
  try { await client.end(); } catch (e) { err = e; }
  await client.close(); a.server.close();
  t.log(n, (err as Error)?.message);
  t.is(err, undefined);
});

test('a fate lookup sends the commit end the client knew as "after"; "forgotten" is outcome_unknown, never a resend', async (t) => {
  const a = await fake();
  const fateQueries: string[] = [];
  let posts = 0;
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 700, commit: 640, durable: 700, segments: 1, bytes: 700, peers: [] });
    if (path.startsWith('/v1/fate/')) { fateQueries.push(new URL(req.url!, 'http://x').search); return json(res, 200, { state: 'forgotten', since: 900 }); }
    if (path === '/v1/append') { posts++; req.socket.destroy(); return; } // written, maybe; the answer is lost
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  const client = new LogClient({ servers: [a.url], retry: { retries: 4, minDelayMs: 1, maxDelayMs: 5 } });
  const e = await t.throwsAsync(client.append(Buffer.from('x')), { instanceOf: LogError });
  await client.close(); a.server.close();
  t.is(e?.code, 'outcome_unknown', e?.message);
  t.false(e?.retriable);
  t.like(e?.details, { since: 900, after: 640 });
  t.is(posts, 1, 'not sent again');
  t.deepEqual(fateQueries, ['?after=640']);
});

test('an append the caller aborts while its request is out is "aborted" with mayHaveLanded and the upload id', async (t) => {
  const a = await fake();
  let arrived!: () => void;
  const posted = new Promise<void>((r) => { arrived = r; });
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    if (path === '/v1/append') { arrived(); return; } // received, written maybe; no answer yet
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  const client = new LogClient({ servers: [a.url] });
  const ac = new AbortController();
  const p = client.append(Buffer.from('x'), { signal: ac.signal });
  await posted;
  ac.abort();
  const e = await t.throwsAsync(p, { instanceOf: LogError });
  a.server.closeAllConnections(); a.server.close(); await client.close();
  t.is(e?.code, 'aborted');
  t.true(e?.details.mayHaveLanded);
  t.is(typeof e?.details.uploadId, 'string');
  t.regex(e?.message ?? '', /ask fate/);
});

test('an append that may have landed says the "after" its fate must be asked with: on a trimmed log, fate(id) alone can only answer "forgotten"', async (t) => {
  const a = await fake();
  let arrived!: () => void;
  const posted = new Promise<void>((r) => { arrived = r; });
  // Trimmed to 500 (or far past its memory of upload ids): it remembers every id placed from there on.
  const fatesFrom = 500;
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 500, end: 640, commit: 640, durable: 640, segments: 1, bytes: 140, peers: [] });
    if (path === '/v1/append') { arrived(); return; } // received, written maybe; no answer yet
    if (path.startsWith('/v1/fate/')) {
      const after = Number(new URL(req.url!, 'http://x').searchParams.get('after'));
      return json(res, 200, after < fatesFrom ? { state: 'forgotten', since: fatesFrom } : { state: 'unknown' });
    }
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  const client = new LogClient({ servers: [a.url] });
  t.teardown(async () => { a.server.closeAllConnections(); a.server.close(); await client.close(); });
  const ac = new AbortController();
  const p = client.append(Buffer.from('x'), { signal: ac.signal });
  await posted;
  ac.abort();
  const e = await t.throwsAsync(p, { instanceOf: LogError });
  t.is(e?.code, 'aborted');
  t.is(e?.details.after, 640);
  t.regex(e?.message ?? '', /fate\("[0-9a-f-]+", \{ after: 640 \}\)/);
  // What README says to do with it.
  t.is((await client.fate(e!.details.uploadId as string, { after: e!.details.after as number })).state, 'unknown');
});

test('close() does not wait out a frozen member: background status asks and follows stop at once, upload copies after a short grace', async (t) => {
  const a = await fake();
  const frozen = await fake();
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [{ id: 'a', url: a.url }, { id: 'f', url: frozen.url }] });
    if (path === '/v1/append') return json(res, 200, { offset: 0, end: 34, term: 1 });
    if (path === '/v1/read') return; // a long poll that never ends
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  frozen.handler = () => { /* accepts everything, answers nothing (SIGSTOP) */ };
  const timeLimit = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), ms).unref())]);
  const client = new LogClient({ servers: [a.url], requestTimeoutMs: 30_000 });
  await client.append(Buffer.from('x')); // its copy goes to the frozen member
  const follow = (async () => { for await (const _ of client.read(34, { follow: true, server: a.url })) { /* none */ } })();
  follow.catch(() => {});
  await until('the follow and the copy are out', 5000, () => (a.log.includes('GET /v1/read') && frozen.log.some((l) => l.startsWith('PUT /v1/upload/')) ? true : undefined));
  t.not(await timeLimit(client.close(), 10_000), 'stuck', 'close() returned');
  const e = await timeLimit(follow.then(() => null, (x: unknown) => x), 5000);
  t.is((e as LogError | null)?.code, 'aborted');
  t.is((e as LogError | null)?.message, 'the client is closed', 'as a tail ended by close() says');
  for (const f of [a, frozen]) { f.server.closeAllConnections(); f.server.close(); }
});

test('a server that is not a loglogd (a 200 of its own, JSON or HTML) is bad_response at once, never an acknowledgement', async (t) => {
  const { Producer } = await import('../client/producer.ts');
  for (const kind of ['json', 'html'] as const) {
    const f = await fake();
    f.handler = (_req, res) => {
      if (kind === 'json') return json(res, 200, { ok: true });
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>welcome</html>');
    };
    const client = new LogClient({ servers: [f.url], retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 } });
    const expectBad = async (what: string, p: Promise<unknown>) => {
      const e = await t.throwsAsync(p, { instanceOf: LogError }, `${kind} ${what}`);
      t.is(e?.code, 'bad_response', `${kind} ${what}: ${e?.message}`);
      t.regex(e?.message ?? '', /is it a loglogd\?/);
    };
    await expectBad('append', client.append(Buffer.from('x')));
    await expectBad('end', client.end());
    await expectBad('read', (async () => { for await (const _ of client.read(0)) { /* none */ } })());
    await expectBad('tail', (async () => { for await (const _ of client.tail(0, { signal: AbortSignal.timeout(5000) })) { /* none */ } })());
    const producer = new Producer({ client });
    await expectBad('producer', producer.send(Buffer.from('r')));
    await producer.close().catch(() => {});
    await client.close();
    f.server.closeAllConnections(); f.server.close();
  }
});

/** A web server that is not a loglogd: `status` and `body` for every request; with `cutFirstPost`, it drops the connection of the first append after reading its body. */
async function notLoglogd(t: import('ava').ExecutionContext, status: number, body: string, cutFirstPost = false): Promise<Fake> {
  const f = await fake();
  let cut = cutFirstPost;
  f.handler = (req, res, _body, path) => {
    if (cut && path === '/v1/append') { cut = false; req.socket.destroy(); return; }
    res.writeHead(status, { 'content-type': 'text/html' });
    res.end(body);
  };
  t.teardown(() => { f.server.closeAllConnections(); f.server.close(); });
  return f;
}

test('an append to a server that is not a loglogd is bad_response, its error pages and a connection it cut included', async (t) => {
  const cases: [number, string, boolean][] = [[404, 'Not Found', false], [500, '<html>oops</html>', false], [404, 'Not Found', true], [502, '<html>Bad Gateway</html>', true], [200, '<html>welcome</html>', true]];
  for (const [status, body, cut] of cases) {
    const what = `HTTP ${status}${cut ? ' after a cut connection' : ''}`;
    const f = await notLoglogd(t, status, body, cut);
    const client = new LogClient({ servers: [f.url], retry: { retries: 4, minDelayMs: 1, maxDelayMs: 5 } });
    const e = await t.throwsAsync(client.append(Buffer.from('x')), { instanceOf: LogError }, what);
    await client.close();
    t.is(e?.code, 'bad_response', `${what}: ${e?.message}`);
    t.false(e?.retriable, what);
    t.regex(e?.message ?? '', /is it a loglogd\?/, what);
  }
});

test('a cut append at a server that answered as a loglogd stays outcome_unknown, whatever answers there next (a proxy\'s error page)', async (t) => {
  const a = await fake();
  t.teardown(() => { a.server.closeAllConnections(); a.server.close(); });
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    if (path === '/v1/append') { req.socket.destroy(); return; } // written, maybe; the answer is lost
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end('<html>Bad Gateway</html>');
  };
  const client = new LogClient({ servers: [a.url], retry: { retries: 4, minDelayMs: 1, maxDelayMs: 5 } });
  const e = await t.throwsAsync(client.append(Buffer.from('x')), { instanceOf: LogError });
  await client.close();
  t.is(e?.code, 'outcome_unknown', e?.message);
  t.regex(e?.message ?? '', /ask fate\(/);
});

test('CLI: loglog append to a web server that is not a loglogd is one bad_response line and exit 2', async (t) => {
  for (const [status, body] of [[404, 'Not Found'], [200, '<html>welcome</html>']] as const) {
    const f = await notLoglogd(t, status, body, true);
    const r = await runCli(['append', '--server', f.url], { stdin: 'a\nb\n' });
    t.is(r.code, 2, r.err);
    t.is(r.err.trim().split('\n').length, 1, r.err);
    t.regex(r.err, new RegExp(`^loglog: ${f.url} answered (POST|GET) /v1/\\S+ .*is it a loglogd\\? .*\\(bad_response\\); check --server`), `HTTP ${status}`);
  }
});

test('CLI: an append the server answers "aborted" (a body it could not store) is an error line and exit 2, not a silent Ctrl-C exit', async (t) => {
  const a = await fake();
  t.teardown(() => { a.server.close(); });
  a.handler = (_req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    json(res, 499, { error: { code: 'aborted', message: 'the request body did not arrive complete' } });
  };
  const r = await runCli(['append', '--server', a.url], { stdin: 'a\nb\n' });
  t.is(r.code, 2, r.err);
  t.is(r.err.trim().split('\n').length, 1, r.err);
  t.regex(r.err, /^loglog: the request body did not arrive complete.*\(aborted\); the server dropped the append before storing it/);
  t.like(JSON.parse(r.out), { records: 0, failed: 2, interrupted: false, error: { code: 'aborted' } });
});

test('an array append with a failed entry says which entries landed, so that only the failed ones are sent again', async (t) => {
  const a = await fake();
  let n = 0;
  a.handler = (_req, res, body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    if (path === '/v1/append') {
      if (body.length > 100) return json(res, 413, { error: { code: 'too_large', message: 'entry too large', max: 100 } });
      const offset = 1000 * ++n;
      return json(res, 200, { offset, end: offset + 33 + body.length, term: 1 });
    }
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  const client = new LogClient({ servers: [a.url] });
  const e = await t.throwsAsync(client.append([Buffer.from('a'), Buffer.alloc(500), Buffer.from('c')]), { instanceOf: LogError });
  await client.close(); a.server.close();
  t.is(e?.code, 'too_large');
  t.is(e?.details.index, 1);
  const results = e?.details.results as ({ offset: number } | null)[];
  t.is(results.length, 3);
  t.is(results[1], null);
  t.truthy(results[0] && results[2]);
  t.regex(e?.message ?? '', /entry 1 of 3: .*2 of the 3 entries are in the log \(details.results\); 1 were not appended: append only those again$/);
  t.deepEqual(e?.details.errors?.map((x) => x?.code ?? null), [null, 'too_large', null]);
});

test('an array append counts an unconfirmed entry as in the log and one stopped mid-request as maybe, each with its own upload id', async (t) => {
  const a = await fake();
  let n = 0;
  let held = false;
  a.handler = (req, res, body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    if (path === '/v1/append') {
      const what = body.toString();
      if (what === 'held') { held = true; return; } // answered never: the caller's signal stops it
      const offset = 1000 * ++n;
      const end = offset + 33 + body.length;
      if (what === 'all') return json(res, 504, { error: { code: 'unconfirmed', message: 'not every replica confirmed it', offset, end, term: 3, missing: ['f'] } });
      if (what === 'big') return json(res, 413, { error: { code: 'too_large', message: 'entry too large', max: 2 } });
      return json(res, 200, { offset, end, term: 3 });
    }
    if (path.startsWith('/v1/fate/')) return json(res, 200, { state: 'pending' });
    json(res, 404, { error: { code: 'not_found', message: 'no ' + req.url } });
  };
  const client = new LogClient({ servers: [a.url] });
  const stop = new AbortController();
  const appended = client.append(['ok', 'all', 'big', 'held'].map((x) => Buffer.from(x)), { acks: 'all', signal: stop.signal });
  await until('the other three are answered and one is held', 10_000, () => (n === 3 && held ? true : undefined));
  stop.abort();
  const e = await t.throwsAsync(appended, { instanceOf: LogError });
  await client.close(); a.server.close();
  const { results, errors } = e!.details;
  t.deepEqual(errors?.map((x) => x?.code ?? null), [null, 'unconfirmed', 'too_large', 'aborted']);
  t.deepEqual(results?.map((r) => r?.term ?? null), [3, 3, null, null], 'the unconfirmed entry is in the log: its result is given');
  t.is(errors?.[3]?.details.mayHaveLanded, true);
  t.is(typeof errors?.[3]?.details.uploadId, 'string');
  t.not(errors?.[3]?.details.uploadId, errors?.[1]?.details.uploadId);
  t.regex(e!.message, /2 of the 4 entries are in the log \(details.results\); 1 may be: ask their fate .*; 1 were not appended: append only those again$/);
});

test('many appends at once (each with its upload copies) raise no MaxListenersExceeded warning', async (t) => {
  const a = await fake();
  const f = await fake();
  let n = 0;
  a.handler = (_req, res, body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [{ id: 'a', url: a.url }, { id: 'f', url: f.url }] });
    const offset = 1000 * n++;
    json(res, 200, { offset, end: offset + 33 + body.length, term: 1 });
  };
  f.handler = (_req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'f', role: 'follower', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [{ id: 'a', url: a.url }, { id: 'f', url: f.url }] });
    json(res, 200, {});
  };
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  const client = new LogClient({ servers: [a.url] });
  await Promise.all(Array.from({ length: 40 }, (_, i) => client.append(Buffer.alloc(1000, i))));
  await client.close();
  process.off('warning', onWarning);
  for (const x of [a, f]) { x.server.closeAllConnections(); x.server.close(); }
  t.true(f.log.filter((l) => l.startsWith('PUT /v1/upload/')).length > 10, 'the copies went out');
  t.deepEqual(warnings, []);
});

test('a 409 conflict: "forgotten" on a first attempt goes again with after = since; on a later one it is outcome_unknown; "pending" asks the fate', async (t) => {
  const a = await fake();
  const afters: string[] = [];
  let script: string[] = [];
  a.handler = (req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 100, durable: 0, segments: 1, bytes: 0, peers: [] });
    if (path.startsWith('/v1/fate/')) return json(res, 200, script.shift() === 'unknown' ? { state: 'unknown' } : { state: 'committed', offset: 40, end: 74, term: 1 });
    if (path === '/v1/append') {
      afters.push(String(req.headers['x-loglog-after']));
      const next = script.shift();
      if (next === 'forgotten') return json(res, 409, { error: { code: 'conflict', message: 'may have forgotten', state: 'forgotten', since: 500 } });
      if (next === 'pending') return json(res, 409, { error: { code: 'conflict', message: 'already placed', state: 'pending', offset: 40, end: 74 } });
      if (next === 'lost') { req.socket.destroy(); return; }
      return json(res, 200, { offset: 600, end: 634, term: 1 });
    }
    json(res, 404, { error: { code: 'not_found', message: 'no' } });
  };
  const client = new LogClient({ servers: [a.url], retry: { retries: 4, minDelayMs: 1, maxDelayMs: 5 } });
  script = ['forgotten', 'ok'];
  t.like(await client.append(Buffer.from('x')), { offset: 600 });
  t.deepEqual(afters, ['100', '500'], 'the first attempt went again from where the leader remembers');
  script = ['pending', 'committed'];
  t.like(await client.append(Buffer.from('y')), { offset: 40 }, 'the stale attempt that landed first is the result');
  script = ['lost', 'unknown', 'forgotten'];
  const e = await t.throwsAsync(client.append(Buffer.from('z')), { instanceOf: LogError });
  t.is(e?.code, 'outcome_unknown', e?.message);
  await client.close(); a.server.close();
});

test('onReleased runs once, after the append has settled and after the copy it uploads to a follower has finished', async (t) => {
  const a = await fake();
  const f = await fake();
  const peers = [{ id: 'a', url: a.url }, { id: 'f', url: f.url }];
  a.handler = (_req, res, body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers });
    if (body.length === 2) return json(res, 400, { error: { code: 'bad_request', message: 'refused' } });
    json(res, 200, { offset: 0, end: 33 + body.length, term: 1 });
  };
  const heldUploads: ServerResponse[] = [];
  f.handler = (_req, res, _body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'f', role: 'follower', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers });
    heldUploads.push(res);
  };
  const client = new LogClient({ servers: [a.url, f.url], retry: { retries: 0 } });
  await client.discover();
  let released = 0;
  const r = await client.append(Buffer.from('x'), { onReleased: () => released++ });
  t.is(r.offset, 0);
  await until('the copy reached the follower', 5000, () => (heldUploads.length === 1 ? true : undefined));
  t.is(released, 0, 'the copy upload still reads the payload');
  json(heldUploads[0], 200, {});
  await until('released', 5000, () => (released === 1 ? true : undefined));
  // A refused append releases its payload too, and a throwing hook does not turn it into another error.
  const err = await t.throwsAsync(client.append(Buffer.from('xy'), { onReleased: () => { released++; throw new Error('hook'); } }));
  t.is((err as LogError).code, 'bad_request');
  await until('its copy reached the follower', 5000, () => (heldUploads.length === 2 ? true : undefined));
  t.is(released, 1);
  json(heldUploads[1], 200, {});
  await until('released again', 5000, () => (released === 2 ? true : undefined));
  const arr = await t.throwsAsync(client.append([Buffer.from('x')], { onReleased: () => {} }));
  t.regex(arr!.message, /onReleased applies to a single entry/);
  await client.close();
  for (const x of [a, f]) { x.server.closeAllConnections(); x.server.close(); }
  t.is(released, 2);
});

test('one caller signal shared by many calls in flight (appends, retry sleeps, waits) raises no MaxListenersExceeded warning, and aborting it stops them all', async (t) => {
  const a = await fake();
  const tried = new Set<string>();
  const held: ServerResponse[] = [];
  a.handler = (_req, res, body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', leaderUrl: a.url, start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    // Asked after the 503 below: "never written", so the client sends it again.
    if (path.startsWith('/v1/fate/')) return json(res, 200, { state: 'unknown' });
    const key = body.toString();
    // Each append is refused once (the client sleeps, then retries), then answered...
    if (!tried.has(key)) { tried.add(key); return json(res, 503, { error: { code: 'unavailable', message: 'busy' } }); }
    // ...except the "late" ones, which are held until the signal stops them.
    if (key.startsWith('late')) { held.push(res); return; }
    json(res, 200, { offset: 0, end: 33 + body.length, term: 1 });
  };
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  const client = new LogClient({ servers: [a.url], retry: { retries: 3, minDelayMs: 5, maxDelayMs: 10 } });
  const ctl = new AbortController();
  const signal = ctl.signal;
  await Promise.all(Array.from({ length: 30 }, (_, i) => client.append(Buffer.from(`ok ${i}`), { signal })));
  const late = Array.from({ length: 30 }, (_, i) => client.append(Buffer.from(`late ${i}`), { signal }).then(() => 'appended', (e: LogError) => e.code));
  // Every late one was refused once; those the client's connections carry are then held,
  // the rest wait in its queue.
  await until('the late appends are held', 10_000, () => (tried.size === 60 && held.length > 0 ? true : undefined));
  ctl.abort();
  const outcomes = await Promise.all(late);
  await client.close();
  process.off('warning', onWarning);
  a.server.closeAllConnections(); a.server.close();
  t.deepEqual(warnings, []);
  t.deepEqual(new Set(outcomes), new Set(['aborted']));
});

test('a malformed uploadId or acks of one append is refused before anything is sent, with a short message', async (t) => {
  const a = await fake();
  a.handler = (_req, res, body, path) => {
    if (path === '/v1/status') return json(res, 200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] });
    json(res, 200, { offset: 0, end: 33 + body.length, term: 1 });
  };
  const client = new LogClient({ servers: [a.url] });
  t.teardown(() => { void client.close(); a.server.close(); });
  const long = await t.throwsAsync(client.append(Buffer.from('x'), { uploadId: 'y'.repeat(5000) }), { instanceOf: LogError });
  t.is(long?.code, 'bad_request');
  t.is(long?.message, `uploadId must be a string of 1-128 characters of A-Z a-z 0-9 _ . : -, got "${'y'.repeat(40)}" (the first 40 of 5000 characters)`);
  await t.throwsAsync(client.append(Buffer.from('x'), { uploadId: 'has space' }), { code: 'bad_request', message: /got "has space"$/ });
  await t.throwsAsync(client.append(Buffer.from('x'), { uploadId: 42 as never }), { code: 'bad_request', message: /got the number "42"$/ });
  await t.throwsAsync(client.append(Buffer.from('x'), { acks: 'most' as never }), { code: 'bad_request', message: /^acks must be leader, quorum, all/ });
  t.deepEqual(a.log, [], 'nothing was sent');
  t.like(await client.append(Buffer.from('x'), { uploadId: 'order-17:v2' }), { offset: 0 });
});
