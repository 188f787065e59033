/**
 * The one error hierarchy of loglog, shared by server, SDK, CLI and simulator.
 * Every error has a stable `code` (part of the HTTP API: `{"error":{"code","message"}}`),
 * an HTTP status, and a `retriable` flag that the SDK's retry loop obeys.
 */

export interface ErrorInfo {
  status: number;
  retriable: boolean;
}

/** Stable error codes. Never renumber or rename: clients match on them. */
export const ERROR_CODES = {
  bad_request: { status: 400, retriable: false },
  bad_offset: { status: 400, retriable: false },
  checksum_mismatch: { status: 400, retriable: false },
  unauthorized: { status: 401, retriable: false },
  not_found: { status: 404, retriable: false },
  method_not_allowed: { status: 405, retriable: false },
  // An append under an upload id that is already placed (pending, or aborted): a stale
  // duplicate of an earlier attempt, or an id used twice. Ask its fate. Or (`state:
  // reused`) an id that already names other data, committed or not.
  conflict: { status: 409, retriable: false },
  // The client stopped sending an append's body: its fault (408), but a retry may well succeed.
  body_timeout: { status: 408, retriable: true },
  trimmed: { status: 410, retriable: false },
  length_required: { status: 411, retriable: false },
  too_large: { status: 413, retriable: false },
  out_of_range: { status: 416, retriable: false },
  not_leader: { status: 421, retriable: true },
  aborted: { status: 499, retriable: false },
  internal: { status: 500, retriable: true },
  // This replica's copy of the range is unreadable (a sealed segment found damaged: bit rot,
  // a file edited by hand): the SDK reads the range from another replica.
  damaged: { status: 500, retriable: true },
  unavailable: { status: 503, retriable: true },
  timeout: { status: 504, retriable: true },
  // Client side: the entry is committed, but every replica did not confirm it (acks=all)
  // before the answer was lost. Appending it again would duplicate it.
  unconfirmed: { status: 504, retriable: false },
  disk_full: { status: 507, retriable: true },
  network: { status: 0, retriable: true },
  // Client side: the answer is not one a loglogd gives (another web server, a proxy's page):
  // the address is wrong, and asking again will not help.
  bad_response: { status: 0, retriable: false },
  // Client side: an append failed after an earlier attempt that may have been written (its
  // answer was lost). Ask `fate(uploadId)` before appending it again.
  outcome_unknown: { status: 0, retriable: false },
} as const satisfies Record<string, ErrorInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Extra machine-readable facts an error may carry. The fields below are the ones the HTTP
 * API and the SDK document; an error carries those that apply to it.
 */
export interface ErrorDetails {
  /** The node's log start (errors about an offset). */
  start?: number;
  /** The node's commit end (errors about an offset); an `unconfirmed` entry's end. */
  end?: number;
  /** `not_leader`: the leader's id, if known. */
  leader?: string | null;
  /** `not_leader`: the leader's URL, if known. */
  leaderUrl?: string | null;
  /** `not_leader`: whether the refused append had been placed (it may yet commit). */
  placed?: boolean;
  /** `unconfirmed`, `conflict`: the entry's offset. */
  offset?: number;
  /** `unconfirmed`: the entry's term. */
  term?: number;
  /** `unconfirmed`: ids of the replicas that did not confirm the entry. */
  missing?: string[];
  /** `checksum_mismatch` on a read: the replica that served the bad bytes. */
  replica?: string;
  /** Client side: the server that gave the answer. */
  server?: string;
  /** `too_large`: the largest entry the servers take. */
  max?: number;
  /** `too_large` from the Producer: the refused record's size. */
  recordBytes?: number;
  /** `conflict`: the upload id's state on the leader (`reused`, `forgotten`, ...). */
  state?: string;
  /** `conflict` with `state: forgotten`: where the leader's memory of upload ids starts. */
  since?: number;
  /** `outcome_unknown`, `aborted` appends, `unconfirmed`: the append's upload id, to ask `fate(uploadId, { after })`. */
  uploadId?: string;
  /** With `uploadId`: a commit end known before the append's first attempt. */
  after?: number;
  /** `aborted` append: an attempt may have been written all the same (ask its fate). */
  mayHaveLanded?: boolean;
  /** An array append: the index of the first entry that failed. */
  index?: number;
  /** An array append: per entry, its result if it is in the log, else null. */
  results?: ({ offset: number; end: number; term: number } | null)[];
  /** An array append: per entry, its error, or null if it succeeded. */
  errors?: (LogError | null)[];
  [k: string]: unknown;
}

export class LogError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retriable: boolean;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LogError';
    this.code = code;
    const info: ErrorInfo = ERROR_CODES[code] ?? ERROR_CODES.internal;
    this.status = info.status;
    this.retriable = info.retriable;
    this.details = details;
  }

  /** The JSON body the HTTP API sends for this error. */
  toJSON(): { error: { code: ErrorCode; message: string } & ErrorDetails } {
    return { error: { ...this.details, code: this.code, message: this.message } };
  }

  /** Rebuilds an error from an HTTP error body (the SDK side of `toJSON`). */
  static fromBody(status: number, body: unknown): LogError {
    const e = errorOfBody(body);
    if (e) {
      const { code, message, ...details } = e;
      return new LogError(code, message ?? code, details);
    }
    const code: ErrorCode = status === 503 ? 'unavailable' : status >= 500 ? 'internal' : 'bad_request';
    return new LogError(code, `HTTP ${status}`);
  }
}

/** The `error` of a loglog error body (`{"error":{"code","message",...}}`), or null if `body` is not one. */
export function errorOfBody(body: unknown): ({ code: ErrorCode; message?: string } & ErrorDetails) | null {
  const e = (body as { error?: { code?: string; message?: string } } | null)?.error;
  return e && typeof e.code === 'string' && e.code in ERROR_CODES ? (e as { code: ErrorCode; message?: string } & ErrorDetails) : null;
}

export function isLogError(e: unknown): e is LogError {
  return e instanceof LogError;
}
