import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import {
  type Cell,
  DELETE_ALL_VERSIONS,
  decodeRow,
  decodeVariant,
  encodeRows,
  type OutRow,
  PlainBufferError,
  type Row,
  type Value,
} from './tablestore-plainbuffer.js';

// An honest local stand-in for Alibaba Tablestore, for the operations the meta store uses: CreateTable, ListTable,
// DescribeTable, GetRow, PutRow, UpdateRow, DeleteRow, GetRange, BatchGetRow and BatchWriteRow.
//
// It speaks the service's protocol: POST /<Operation> with a protobuf body (decoded with the .proto files the SDK
// ships, not with the SDK's code), rows in PlainBuffer (its own codec, checksums checked), and protobuf answers,
// errors included (`Error { code, message }` with the service's HTTP status). It checks the headers the service
// requires, the body's MD5 and the request signature, with its own implementation of the documented algorithm:
//   signature = base64(HMAC-SHA1(secret, path + "\n" + "POST" + "\n" + "" + "\n" + canonical headers))
//   canonical headers = every x-ots-* header but x-ots-signature, name lower-cased, sorted, each "name:value\n".
// Rows live in memory with the service's semantics: row existence and column conditions, primary-key order, and
// GetRange pages of at most `pageLimit` rows with next_start_primary_key. Faults can be injected, and every request
// is recorded (operation, table, condition) for tests to assert on.

const API_VERSION = '2015-12-31';
const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
const MAX_COLUMN_BYTES = 2 * 1024 * 1024;
const MAX_BATCH_GET_ROWS = 100;
const MAX_BATCH_WRITE_ROWS = 200;
const MAX_RANGE_LIMIT = 5000;

const require = createRequire(import.meta.url);
const protoDir = dirname(require.resolve('tablestore/lib/protocol/tablestore.proto'));
const root = protobuf.loadSync([join(protoDir, 'tablestore.proto'), join(protoDir, 'tablestore_filter.proto')]);
const type = (name: string) => root.lookupType(name);
const pb = {
  Error: type('main.proto.Error'),
  Filter: type('filter.proto.Filter'),
  SingleColumnValueFilter: type('filter.proto.SingleColumnValueFilter'),
  CompositeColumnValueFilter: type('filter.proto.CompositeColumnValueFilter'),
};
const OPERATIONS: Record<string, { request: protobuf.Type; response: protobuf.Type }> = Object.fromEntries(
  [
    'CreateTable',
    'ListTable',
    'DescribeTable',
    'GetRow',
    'PutRow',
    'UpdateRow',
    'DeleteRow',
    'GetRange',
    'BatchGetRow',
    'BatchWriteRow',
  ].map((op) => [op, { request: type(`main.proto.${op}Request`), response: type(`main.proto.${op}Response`) }]),
);

const ROW_EXISTENCE = ['IGNORE', 'EXPECT_EXIST', 'EXPECT_NOT_EXIST'] as const;
type RowExistence = (typeof ROW_EXISTENCE)[number];
const PK_TYPE_NAMES: Record<number, 'INTEGER' | 'STRING' | 'BINARY'> = { 1: 'INTEGER', 2: 'STRING', 3: 'BINARY' };
const TABLE_STATUS = { ACTIVE: 1, LOADING: 3 };
const FILTER_TYPE = { SINGLE: 1, COMPOSITE: 2 };
const COMPARATORS: Record<number, string> = { 1: '==', 2: '!=', 3: '>', 4: '>=', 5: '<', 6: '<=' };
const LOGICAL: Record<number, string> = { 1: 'NOT', 2: 'AND', 3: 'OR' };

/** The canonical string Tablestore signs for a request (its path, method, and x-ots-* headers but the signature). */
export function stringToSign(path: string, method: string, headers: Record<string, string | string[] | undefined>) {
  const canonical = Object.entries(headers)
    .map(([name, value]) => [name.toLowerCase(), String(value).trim()] as const)
    .filter(([name]) => name.startsWith('x-ots-') && name !== 'x-ots-signature')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}:${value}\n`)
    .join('');
  return `${path}\n${method}\n\n${canonical}`;
}

export function signature(secret: string, toSign: string): string {
  return createHmac('sha1', secret).update(toSign, 'utf8').digest('base64');
}

/** An error the service answers with. */
class OtsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string) => new OtsError(400, 'OTSParameterInvalid', message);
const conditionFailed = () => new OtsError(403, 'OTSConditionCheckFail', 'Condition check failed.');

export type Fault =
  | { kind: 'error'; status: number; code: string; message: string }
  /** Never answers: the client's timeout must fire. */
  | { kind: 'hang' }
  /** Carries the request out, then drops the connection instead of answering: the response is lost. */
  | { kind: 'drop' }
  /** Holds the request this long before carrying it out (to line up concurrent writers). */
  | { kind: 'delay'; ms: number };

export const FAULTS = {
  throttled: { kind: 'error', status: 503, code: 'OTSServerBusy', message: 'Server is busy.' },
  unavailable: { kind: 'error', status: 503, code: 'OTSServerUnavailable', message: 'Server is not available.' },
  tooFrequent: { kind: 'error', status: 403, code: 'OTSQuotaExhausted', message: 'Too frequent table operations.' },
  authFailed: { kind: 'error', status: 403, code: 'OTSAuthFailed', message: 'The AccessKeyID is disabled.' },
  hang: { kind: 'hang' },
  drop: { kind: 'drop' },
} as const satisfies Record<string, Fault>;

interface PendingFault {
  fault: Fault;
  remaining: number;
  /** Matching requests to let through untouched first. */
  skip: number;
  operation?: string;
  table?: string;
}

export interface RecordedRequest {
  operation: string;
  /** The table(s) the request names. */
  tables: string[];
  rowExistence?: RowExistence;
  /** The column condition, readably: `status == "waiting" OR status == "running"`. */
  columnCondition?: string;
  /** The HTTP status answered; 0 when no answer was sent (a hang or a dropped response). */
  status: number;
  errorCode?: string;
  fault?: Fault['kind'];
}

interface StoredCell {
  value: Value;
  timestamp: bigint;
}

interface StoredRow {
  primaryKey: Value[];
  cells: Map<string, StoredCell>;
}

interface Table {
  name: string;
  primaryKey: Array<{ name: string; type: 'INTEGER' | 'STRING' | 'BINARY' }>;
  rows: Map<string, StoredRow>;
  /** DescribeTable answers LOADING this many more times, and data operations fail until then. */
  loadingDescribes: number;
  createdAt: number;
}

interface Condition {
  rowExistence: RowExistence;
  filter?: Filter;
}

type Filter =
  | { kind: 'single'; comparator: number; column: string; value: Value; filterIfMissing: boolean }
  | { kind: 'composite'; operator: number; subs: Filter[] };

export interface TablestoreFakeOptions {
  instance?: string;
  accessKeyId?: string;
  accessKeySecret?: string;
  /** When set, requests must carry it as x-ots-ststoken. */
  securityToken?: string;
  /** The most rows one GetRange answers (the service's is 5000): small, so that callers must follow pages. */
  pageLimit?: number;
  /** How many DescribeTable calls see a new table as LOADING before it is ACTIVE. */
  loadingDescribes?: number;
}

const compareValues = (a: Value, b: Value): number => {
  const rank = (v: Value) => (v.type === 'inf_min' ? 0 : v.type === 'inf_max' ? 2 : 1);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (a.type === 'string' && b.type === 'string') return Buffer.compare(Buffer.from(a.value), Buffer.from(b.value));
  if (a.type === 'integer' && b.type === 'integer') return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
  if (a.type === 'blob' && b.type === 'blob') return Buffer.compare(a.value, b.value);
  return 0;
};

const compareKeys = (a: Value[], b: Value[]) => {
  for (let i = 0; i < a.length; i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
};

const keyString = (pk: Value[]) =>
  JSON.stringify(
    pk.map((v) => (v.type === 'blob' ? v.value.toString('hex') : 'value' in v ? String(v.value) : v.type)),
  );

function render(value: Value): string {
  if (value.type === 'string') return JSON.stringify(value.value);
  if (value.type === 'blob') return `0x${value.value.toString('hex')}`;
  return 'value' in value ? String(value.value) : value.type;
}

function renderFilter(filter: Filter): string {
  if (filter.kind === 'single') return `${filter.column} ${COMPARATORS[filter.comparator]} ${render(filter.value)}`;
  const parts = filter.subs.map((s) => (s.kind === 'composite' ? `(${renderFilter(s)})` : renderFilter(s)));
  return filter.operator === 1 ? `NOT ${parts[0]}` : parts.join(` ${LOGICAL[filter.operator]} `);
}

/** A decoded `Filter { type, filter }` message, as a condition to evaluate. */
function decodeFilter(filter: { type: number; filter: Uint8Array }): Filter {
  if (filter.type === FILTER_TYPE.SINGLE) {
    const single = pb.SingleColumnValueFilter.decode(filter.filter) as unknown as {
      comparator: number;
      columnName: string;
      columnValue: Uint8Array;
      filterIfMissing: boolean;
    };
    if (!COMPARATORS[single.comparator]) throw invalid(`unknown comparator ${single.comparator}`);
    return {
      kind: 'single',
      comparator: single.comparator,
      column: single.columnName,
      value: decodeVariant(Buffer.from(single.columnValue)),
      filterIfMissing: single.filterIfMissing,
    };
  }
  if (filter.type === FILTER_TYPE.COMPOSITE) {
    const composite = pb.CompositeColumnValueFilter.decode(filter.filter) as unknown as {
      combinator: number;
      subFilters: Array<{ type: number; filter: Uint8Array }>;
    };
    const operator = LOGICAL[composite.combinator];
    if (!operator) throw invalid(`unknown combinator ${composite.combinator}`);
    const subs = composite.subFilters.map(decodeFilter);
    if (operator === 'NOT' ? subs.length !== 1 : subs.length < 2) {
      throw invalid(`${operator} takes ${operator === 'NOT' ? 'one condition' : 'two or more conditions'}`);
    }
    return { kind: 'composite', operator: composite.combinator, subs };
  }
  throw invalid(`filter type ${filter.type} cannot be a row condition`);
}

function evaluate(filter: Filter, row: StoredRow | undefined): boolean {
  if (filter.kind === 'composite') {
    const results = filter.subs.map((s) => evaluate(s, row));
    if (filter.operator === 1) return !results[0];
    return filter.operator === 2 ? results.every(Boolean) : results.some(Boolean);
  }
  const cell = row?.cells.get(filter.column);
  if (!cell) return !filter.filterIfMissing;
  if (cell.value.type !== filter.value.type) return false;
  const c =
    cell.value.type === 'double' && filter.value.type === 'double'
      ? Math.sign(cell.value.value - filter.value.value)
      : cell.value.type === 'boolean' && filter.value.type === 'boolean'
        ? Number(cell.value.value) - Number(filter.value.value)
        : compareValues(cell.value, filter.value);
  switch (filter.comparator) {
    case 1:
      return c === 0;
    case 2:
      return c !== 0;
    case 3:
      return c > 0;
    case 4:
      return c >= 0;
    case 5:
      return c < 0;
    default:
      return c <= 0;
  }
}

function decodeCondition(raw: { rowExistence: number; columnCondition?: Buffer | Uint8Array } | undefined): Condition {
  if (!raw) throw invalid('condition is required');
  const rowExistence = ROW_EXISTENCE[raw.rowExistence];
  if (!rowExistence) throw invalid(`unknown row existence expectation ${raw.rowExistence}`);
  const bytes = raw.columnCondition ? Buffer.from(raw.columnCondition) : undefined;
  if (!bytes || bytes.length === 0) return { rowExistence };
  try {
    return {
      rowExistence,
      filter: decodeFilter(pb.Filter.decode(bytes) as unknown as { type: number; filter: Uint8Array }),
    };
  } catch (err) {
    if (err instanceof OtsError) throw err;
    throw invalid(`bad column condition: ${(err as Error).message}`);
  }
}

function checkCondition(condition: Condition, existing: StoredRow | undefined): void {
  if (condition.rowExistence === 'EXPECT_EXIST' && !existing) throw conditionFailed();
  if (condition.rowExistence === 'EXPECT_NOT_EXIST' && existing) throw conditionFailed();
  if (condition.filter && !evaluate(condition.filter, existing)) throw conditionFailed();
}

function plainRow(bytes: Buffer | Uint8Array | undefined): Row {
  try {
    return decodeRow(Buffer.from(bytes ?? []));
  } catch (err) {
    if (err instanceof PlainBufferError) throw invalid(`bad plain buffer: ${err.message}`);
    throw err;
  }
}

const consumed = (read: number, write: number) => ({ capacityUnit: { read, write } });

export class TablestoreFake {
  readonly requests: RecordedRequest[] = [];
  readonly instance: string;
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
  pageLimit: number;
  private readonly securityToken: string | undefined;
  private readonly loadingDescribes: number;
  private readonly tables = new Map<string, Table>();
  private readonly faults: PendingFault[] = [];
  private readonly hung = new Set<http.ServerResponse>();
  private lastTimestamp = 0n;
  private requestCounter = 0;

  private constructor(
    private readonly server: http.Server,
    options: TablestoreFakeOptions,
  ) {
    this.instance = options.instance ?? 'sdflow-test';
    this.accessKeyId = options.accessKeyId ?? 'test-access-key-id';
    this.accessKeySecret = options.accessKeySecret ?? 'test-access-key-secret';
    this.securityToken = options.securityToken;
    this.pageLimit = options.pageLimit ?? MAX_RANGE_LIMIT;
    this.loadingDescribes = options.loadingDescribes ?? 1;
  }

  static async start(options: TablestoreFakeOptions = {}): Promise<TablestoreFake> {
    const server = http.createServer();
    const fake = new TablestoreFake(server, options);
    server.on('request', (req, res) => fake.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** After `skip` of them, the next `count` requests (of that operation, on that table, when given) meet `fault`. */
  inject(fault: Fault, options: { count?: number; skip?: number; operation?: string; table?: string } = {}): void {
    this.faults.push({
      fault,
      remaining: options.count ?? 1,
      skip: options.skip ?? 0,
      operation: options.operation,
      table: options.table,
    });
  }

  tableNames(): string[] {
    return [...this.tables.keys()].sort();
  }

  /** A table's rows as plain records (primary key and attributes), in primary-key order. */
  rows(tableName: string): Array<Record<string, string | number | boolean | bigint>> {
    const table = this.tables.get(tableName);
    if (!table) return [];
    return this.sorted(table).map((row) => {
      const out: Record<string, string | number | boolean | bigint> = {};
      table.primaryKey.forEach((pk, i) => {
        const v = row.primaryKey[i];
        if ('value' in v) out[pk.name] = Buffer.isBuffer(v.value) ? v.value.toString('hex') : v.value;
      });
      for (const [name, cell] of row.cells) {
        if ('value' in cell.value)
          out[name] = Buffer.isBuffer(cell.value.value) ? cell.value.value.toString('hex') : cell.value.value;
      }
      return out;
    });
  }

  /** Requests of one operation (on one table, when given). */
  recorded(operation: string, table?: string): RecordedRequest[] {
    return this.requests.filter((r) => r.operation === operation && (table === undefined || r.tables.includes(table)));
  }

  async close(): Promise<void> {
    for (const res of this.hung) res.socket?.destroy();
    this.hung.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void this.respond(req, res, Buffer.concat(chunks)));
  }

  private async respond(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> {
    const requestId = `fake-${++this.requestCounter}`;
    const operation = (req.url ?? '/').split('?')[0].slice(1);
    const record: RecordedRequest = { operation, tables: [], status: 0 };
    this.requests.push(record);
    try {
      if (req.method !== 'POST')
        throw new OtsError(405, 'OTSMethodNotAllowed', 'Only POST method for requests is supported.');
      this.authenticate(req, body);
      const spec = OPERATIONS[operation];
      if (!spec) throw invalid(`unsupported operation: ${operation}`);
      let message: Record<string, unknown>;
      try {
        message = spec.request.toObject(spec.request.decode(body), { defaults: false, longs: Number });
      } catch (err) {
        throw invalid(`cannot decode the ${operation} request: ${(err as Error).message}`);
      }
      this.describe(record, operation, message);
      const fault = this.takeFault(record);
      if (fault?.kind === 'error') throw new OtsError(fault.status, fault.code, fault.message);
      if (fault?.kind === 'hang') {
        record.fault = 'hang';
        this.hung.add(res);
        res.on('close', () => this.hung.delete(res));
        return;
      }
      if (fault?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms));
      const answer = this.execute(operation, message);
      if (fault?.kind === 'drop') {
        record.fault = 'drop';
        res.socket?.destroy();
        return;
      }
      this.send(res, 200, spec.response.encode(spec.response.fromObject(answer)).finish(), requestId);
      record.status = 200;
    } catch (err) {
      const e = err instanceof OtsError ? err : new OtsError(500, 'OTSInternalServerError', (err as Error).message);
      record.status = e.status;
      record.errorCode = e.code;
      this.send(
        res,
        e.status,
        pb.Error.encode(pb.Error.fromObject({ code: e.code, message: e.message })).finish(),
        requestId,
      );
    }
  }

  private send(res: http.ServerResponse, status: number, body: Uint8Array, requestId: string): void {
    res.writeHead(status, {
      'content-type': 'application/x-protobuf',
      'content-length': body.length,
      'x-ots-contentmd5': createHash('md5').update(body).digest('base64'),
      'x-ots-requestid': requestId,
      'x-ots-date': new Date().toISOString(),
    });
    res.end(Buffer.from(body));
  }

  private authenticate(req: http.IncomingMessage, body: Buffer): void {
    const header = (name: string) => {
      const value = req.headers[name];
      if (typeof value !== 'string' || value === '') throw invalid(`Missing header: '${name}'.`);
      return value;
    };
    const date = header('x-ots-date');
    const apiVersion = header('x-ots-apiversion');
    const accessKeyId = header('x-ots-accesskeyid');
    const instance = header('x-ots-instancename');
    const md5 = header('x-ots-contentmd5');
    const sig = header('x-ots-signature');
    if (apiVersion !== API_VERSION) throw invalid(`Unsupported API version: ${apiVersion}.`);
    const at = Date.parse(date);
    if (Number.isNaN(at)) throw invalid(`Invalid date format: ${date}.`);
    if (accessKeyId !== this.accessKeyId) throw new OtsError(403, 'OTSAuthFailed', 'The AccessKeyID does not exist.');
    if (instance !== this.instance) throw new OtsError(403, 'OTSAuthFailed', 'The instance is not found.');
    if (Math.abs(Date.now() - at) > MAX_CLOCK_SKEW_MS) {
      throw new OtsError(403, 'OTSAuthFailed', `Mismatch between system time and x-ots-date: ${date}.`);
    }
    if (createHash('md5').update(body).digest('base64') !== md5) {
      throw new OtsError(
        403,
        'OTSAuthFailed',
        'Mismatch between MD5 value of request body and x-ots-contentmd5 in header.',
      );
    }
    if (this.securityToken !== undefined && req.headers['x-ots-ststoken'] !== this.securityToken) {
      throw new OtsError(403, 'OTSAuthFailed', 'The security token is invalid.');
    }
    const path = (req.url ?? '/').split('?')[0];
    const expected = Buffer.from(signature(this.accessKeySecret, stringToSign(path, req.method ?? '', req.headers)));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new OtsError(403, 'OTSAuthFailed', 'Signature mismatch.');
    }
  }

  private takeFault(record: RecordedRequest): Fault | undefined {
    const index = this.faults.findIndex(
      (f) =>
        (f.operation === undefined || f.operation === record.operation) &&
        (f.table === undefined || record.tables.includes(f.table)),
    );
    if (index < 0) return undefined;
    const pending = this.faults[index];
    if (pending.skip > 0) {
      pending.skip--;
      return undefined;
    }
    if (--pending.remaining <= 0) this.faults.splice(index, 1);
    return pending.fault;
  }

  /** Fills the record from the decoded request. */
  private describe(record: RecordedRequest, operation: string, message: Record<string, unknown>): void {
    const m = message as {
      tableName?: string;
      tableMeta?: { tableName?: string };
      tables?: Array<{ tableName?: string }>;
      condition?: { rowExistence: number; columnCondition?: Buffer };
    };
    const name = m.tableName ?? m.tableMeta?.tableName;
    record.tables = name ? [name] : (m.tables ?? []).map((t) => t.tableName ?? '');
    if (m.condition && ['PutRow', 'UpdateRow', 'DeleteRow'].includes(operation)) {
      const condition = decodeCondition(m.condition);
      record.rowExistence = condition.rowExistence;
      if (condition.filter) record.columnCondition = renderFilter(condition.filter);
    }
  }

  private execute(operation: string, message: Record<string, unknown>): Record<string, unknown> {
    const m = message as any;
    switch (operation) {
      case 'CreateTable':
        return this.createTable(m);
      case 'ListTable':
        return { tableNames: this.tableNames() };
      case 'DescribeTable':
        return this.describeTable(m);
      case 'GetRow':
        return this.getRow(m);
      case 'PutRow':
        return this.write(m.tableName, 'PUT', m.row, m.condition);
      case 'UpdateRow':
        return this.write(m.tableName, 'UPDATE', m.rowChange, m.condition);
      case 'DeleteRow':
        return this.write(m.tableName, 'DELETE', m.primaryKey, m.condition);
      case 'GetRange':
        return this.getRange(m);
      case 'BatchGetRow':
        return this.batchGetRow(m);
      default:
        return this.batchWriteRow(m);
    }
  }

  private createTable(m: {
    tableMeta: { tableName: string; primaryKey?: Array<{ name: string; type: number; option?: number }> };
    tableOptions?: { maxVersions?: number; timeToLive?: number };
  }): Record<string, unknown> {
    const name = m.tableMeta.tableName;
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,254}$/.test(name)) throw invalid(`Invalid table name: '${name}'.`);
    const primaryKey = (m.tableMeta.primaryKey ?? []).map((pk) => {
      const pkType = PK_TYPE_NAMES[pk.type];
      if (!pkType) throw invalid(`Invalid primary key type of '${pk.name}'.`);
      return { name: pk.name, type: pkType };
    });
    if (primaryKey.length < 1 || primaryKey.length > 4) throw invalid('A table takes 1 to 4 primary key columns.');
    if (!m.tableOptions || m.tableOptions.maxVersions === undefined || m.tableOptions.timeToLive === undefined) {
      throw invalid('table_options must set max_versions and time_to_live.');
    }
    if (this.tables.has(name)) throw new OtsError(409, 'OTSObjectAlreadyExist', 'Requested table already exists.');
    this.tables.set(name, {
      name,
      primaryKey,
      rows: new Map(),
      loadingDescribes: this.loadingDescribes,
      createdAt: Math.floor(Date.now() / 1000),
    });
    return {};
  }

  private describeTable(m: { tableName: string }): Record<string, unknown> {
    const table = this.table(m.tableName, { allowLoading: true });
    const loading = table.loadingDescribes > 0;
    if (loading) table.loadingDescribes--;
    const typeCode = { INTEGER: 1, STRING: 2, BINARY: 3 };
    return {
      tableMeta: {
        tableName: table.name,
        primaryKey: table.primaryKey.map((pk) => ({ name: pk.name, type: typeCode[pk.type] })),
      },
      reservedThroughputDetails: { capacityUnit: { read: 0, write: 0 }, lastIncreaseTime: table.createdAt },
      tableOptions: { timeToLive: -1, maxVersions: 1 },
      tableStatus: loading ? TABLE_STATUS.LOADING : TABLE_STATUS.ACTIVE,
    };
  }

  private table(name: string, options: { allowLoading?: boolean } = {}): Table {
    const table = this.tables.get(name);
    if (!table) throw new OtsError(404, 'OTSObjectNotExist', 'Requested table does not exist.');
    if (table.loadingDescribes > 0 && !options.allowLoading) {
      throw new OtsError(404, 'OTSTableNotReady', 'The table is not ready.');
    }
    return table;
  }

  /** Checks a primary key against the table's schema and returns its values. */
  private key(table: Table, cells: Cell[], options: { allowInfinity?: boolean } = {}): Value[] {
    if (cells.length !== table.primaryKey.length) {
      throw invalid(`The number of primary key columns must be ${table.primaryKey.length}, got ${cells.length}.`);
    }
    return table.primaryKey.map((schema, i) => {
      const cell = cells[i];
      if (cell.name !== schema.name) throw invalid(`Validate PK name fail. Input: ${cell.name}, Meta: ${schema.name}.`);
      const value = cell.value;
      if (!value) throw invalid(`The primary key column ${schema.name} has no value.`);
      if ((value.type === 'inf_min' || value.type === 'inf_max') && options.allowInfinity) return value;
      const expected = { INTEGER: 'integer', STRING: 'string', BINARY: 'blob' }[schema.type];
      if (value.type !== expected) throw invalid(`Validate PK type fail. Input: ${value.type}, Meta: ${schema.type}.`);
      return value;
    });
  }

  private timestamp(): bigint {
    const now = BigInt(Date.now());
    this.lastTimestamp = now > this.lastTimestamp ? now : this.lastTimestamp + 1n;
    return this.lastTimestamp;
  }

  private outRow(table: Table, row: StoredRow): OutRow {
    return {
      primaryKey: table.primaryKey.map((pk, i) => ({ name: pk.name, value: row.primaryKey[i] })),
      attributes: [...row.cells].map(([name, cell]) => ({ name, value: cell.value, timestamp: cell.timestamp })),
    };
  }

  private getRow(m: { tableName: string; primaryKey: Buffer; maxVersions?: number }) {
    const table = this.table(m.tableName);
    if (m.maxVersions === undefined) throw invalid('Neither column max versions nor time range is set.');
    const key = this.key(table, plainRow(m.primaryKey).primaryKey);
    const row = table.rows.get(keyString(key));
    return {
      consumed: consumed(1, 0),
      row: row ? encodeRows([this.outRow(table, row)]) : Buffer.alloc(0),
    };
  }

  /** One write with its condition; throws OTSConditionCheckFail when the condition does not hold. */
  private applyWrite(table: Table, kind: 'PUT' | 'UPDATE' | 'DELETE', change: Row, condition: Condition): void {
    const key = this.key(table, change.primaryKey);
    const id = keyString(key);
    const existing = table.rows.get(id);
    if (kind === 'DELETE' && !change.deleteMarker) throw invalid('A row to delete must carry the delete marker.');
    if (kind !== 'DELETE' && change.deleteMarker) throw invalid('Only a delete carries the delete marker.');
    for (const cell of change.cells) {
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,254}$/.test(cell.name)) throw invalid(`Invalid column name: '${cell.name}'.`);
      const v = cell.value;
      const size = v?.type === 'string' ? Buffer.byteLength(v.value) : v?.type === 'blob' ? v.value.length : 0;
      if (size > MAX_COLUMN_BYTES)
        throw invalid(`The length of attribute column: '${cell.name}' exceeds the MaxLength.`);
      if (kind === 'PUT' && (cell.op !== undefined || !v)) throw invalid(`PutRow cell ${cell.name} must have a value.`);
      if (kind === 'UPDATE' && cell.op === undefined && !v)
        throw invalid(`UpdateRow PUT of ${cell.name} needs a value.`);
      if (kind === 'UPDATE' && cell.op !== undefined && cell.op !== DELETE_ALL_VERSIONS) {
        throw invalid(`unsupported cell operation ${cell.op} on ${cell.name}`);
      }
    }
    checkCondition(condition, existing);
    if (kind === 'DELETE') {
      table.rows.delete(id);
      return;
    }
    const ts = this.timestamp();
    if (kind === 'PUT') {
      table.rows.set(id, {
        primaryKey: key,
        cells: new Map(change.cells.map((c) => [c.name, { value: c.value!, timestamp: c.timestamp ?? ts }])),
      });
      return;
    }
    const row = existing ?? { primaryKey: key, cells: new Map<string, StoredCell>() };
    for (const cell of change.cells) {
      if (cell.op === DELETE_ALL_VERSIONS) row.cells.delete(cell.name);
      else row.cells.set(cell.name, { value: cell.value!, timestamp: cell.timestamp ?? ts });
    }
    if (existing || row.cells.size > 0) table.rows.set(id, row);
  }

  private write(
    tableName: string,
    kind: 'PUT' | 'UPDATE' | 'DELETE',
    rowBytes: Buffer,
    rawCondition: { rowExistence: number; columnCondition?: Buffer },
  ) {
    const table = this.table(tableName);
    this.applyWrite(table, kind, plainRow(rowBytes), decodeCondition(rawCondition));
    return { consumed: consumed(0, 1) };
  }

  private sorted(table: Table): StoredRow[] {
    return [...table.rows.values()].sort((a, b) => compareKeys(a.primaryKey, b.primaryKey));
  }

  private getRange(m: {
    tableName: string;
    direction: number;
    inclusiveStartPrimaryKey: Buffer;
    exclusiveEndPrimaryKey: Buffer;
    limit?: number;
    maxVersions?: number;
  }) {
    const table = this.table(m.tableName);
    if (m.maxVersions === undefined) throw invalid('Neither column max versions nor time range is set.');
    const start = this.key(table, plainRow(m.inclusiveStartPrimaryKey).primaryKey, { allowInfinity: true });
    const end = this.key(table, plainRow(m.exclusiveEndPrimaryKey).primaryKey, { allowInfinity: true });
    const backward = m.direction === 1;
    const order = compareKeys(start, end);
    if (backward ? order < 0 : order > 0) {
      throw invalid(
        `Begin key must ${backward ? 'more' : 'less'} than end key in ${backward ? 'BACKWARD' : 'FORWARD'}.`,
      );
    }
    if (m.limit !== undefined && (m.limit <= 0 || m.limit > MAX_RANGE_LIMIT))
      throw invalid(`Invalid limit: ${m.limit}.`);
    const inRange = this.sorted(table).filter((row) => {
      const fromStart = compareKeys(row.primaryKey, start);
      const fromEnd = compareKeys(row.primaryKey, end);
      return backward ? fromStart <= 0 && fromEnd > 0 : fromStart >= 0 && fromEnd < 0;
    });
    if (backward) inRange.reverse();
    const take = Math.min(m.limit ?? MAX_RANGE_LIMIT, this.pageLimit);
    const page = inRange.slice(0, take);
    const next = inRange[take];
    return {
      consumed: consumed(Math.max(1, page.length), 0),
      rows: encodeRows(page.map((row) => this.outRow(table, row))),
      ...(next
        ? { nextStartPrimaryKey: encodeRows([{ primaryKey: this.outRow(table, next).primaryKey, attributes: [] }]) }
        : {}),
    };
  }

  private batchGetRow(m: { tables?: Array<{ tableName: string; primaryKey?: Buffer[]; maxVersions?: number }> }) {
    const requested = m.tables ?? [];
    const total = requested.reduce((n, t) => n + (t.primaryKey?.length ?? 0), 0);
    if (total > MAX_BATCH_GET_ROWS) throw invalid('Rows count exceeds the upper limit.');
    return {
      tables: requested.map((t) => {
        const table = this.table(t.tableName);
        if (t.maxVersions === undefined) throw invalid('Neither column max versions nor time range is set.');
        return {
          tableName: t.tableName,
          rows: (t.primaryKey ?? []).map((bytes) => {
            const row = table.rows.get(keyString(this.key(table, plainRow(bytes).primaryKey)));
            return {
              isOk: true,
              consumed: consumed(1, 0),
              row: row ? encodeRows([this.outRow(table, row)]) : Buffer.alloc(0),
            };
          }),
        };
      }),
    };
  }

  private batchWriteRow(m: {
    tables?: Array<{
      tableName: string;
      rows?: Array<{ type: number; rowChange: Buffer; condition: { rowExistence: number; columnCondition?: Buffer } }>;
    }>;
  }) {
    const requested = m.tables ?? [];
    const total = requested.reduce((n, t) => n + (t.rows?.length ?? 0), 0);
    if (total === 0) throw invalid('No row in the batch.');
    if (total > MAX_BATCH_WRITE_ROWS) throw invalid('Rows count exceeds the upper limit.');
    // Validate the whole batch first: a malformed or repeated row fails the request, as the service does.
    const prepared = requested.map((t) => {
      const table = this.table(t.tableName);
      const seen = new Set<string>();
      const rows = (t.rows ?? []).map((r) => {
        const kind = ({ 1: 'PUT', 2: 'UPDATE', 3: 'DELETE' } as const)[r.type as 1 | 2 | 3];
        if (!kind) throw invalid(`unknown operation type ${r.type}`);
        const change = plainRow(r.rowChange);
        const id = keyString(this.key(table, change.primaryKey));
        if (seen.has(id)) throw invalid('The input parameter is invalid: a row appears twice in the batch.');
        seen.add(id);
        return { kind, change, condition: decodeCondition(r.condition) };
      });
      return { table, rows };
    });
    return {
      tables: prepared.map(({ table, rows }) => ({
        tableName: table.name,
        rows: rows.map(({ kind, change, condition }) => {
          try {
            this.applyWrite(table, kind, change, condition);
            return { isOk: true, consumed: consumed(0, 1) };
          } catch (err) {
            if (!(err instanceof OtsError)) throw err;
            return { isOk: false, error: { code: err.code, message: err.message } };
          }
        }),
      })),
    };
  }
}
