/**
 * The loglog client SDK.
 *
 * ```ts
 * import { LogClient, Producer, records } from 'loglog/client/index.ts';
 * const client = new LogClient({ servers: ['http://127.0.0.1:7400'] });
 * const { offset } = await client.append(Buffer.from('hello'));
 * for await (const e of client.read(offset)) console.log(e.offset, e.payload.toString());
 * const producer = new Producer({ client });
 * await Promise.all(['a', 'b', 'c'].map((s) => producer.send(Buffer.from(s))));
 * for await (const r of records(client, 0)) console.log(r.offset, r.index, r.value.toString());
 * await producer.close();
 * await client.close();
 * ```
 */
export { LogClient, DEFAULT_SERVER, DEFAULT_SERVERS, serversFromEnv, mayBeInLog } from './log-client.ts';
export type { LogClientOptions } from './log-client.ts';
export { Producer } from './producer.ts';
export type { ProducerOptions, ProducerStats, EntryAppender } from './producer.ts';
export { records, decodeRecords, entryRecords } from './consumer.ts';
export type { RecordsOptions, EnvelopeMode, EntryReader } from './consumer.ts';
export { encodeBatch, decodeBatch, isBatch, batchSize, BATCH_HEADER_SIZE, BATCH_MAGIC, BATCH_VERSION, FLAG_SHA256 } from './envelope.ts';
export type { EncodeBatchOptions } from './envelope.ts';
export { normalizeServer } from './http.ts';
export type { TransportOptions } from './http.ts';
export { LogError, isLogError, ERROR_CODES } from '../spec/errors.ts';
export type { ErrorCode, ErrorDetails } from '../spec/errors.ts';
export type * from './types.ts';
