import TableStore from 'tablestore';
import { type Failure, isConditionFailure, MetaStoreError, rowFailure, type TablestoreCaller } from './client.js';
import {
  attributeColumns,
  type Columns,
  type ColumnUpdate,
  columnsOf,
  TABLES,
  type TableSchema,
  updateOf,
} from './rows.js';

// The row operations the Tablestore meta store is made of (get, put, update, delete, range scans and batches), each
// on one of its tables. Table names carry the configured prefix, which by default carries the deployment id, so
// deployments sharing an instance never see each other's rows. The tables are created on first use, once per
// process: a replica that loses the race to create one takes "already exists" as success, and every table is
// awaited until it reports itself active.

const TABLE_POLL_MS = 200;
/** Tablestore's limits on rows per batch. */
export const BATCH_GET_LIMIT = 100;
const BATCH_WRITE_LIMIT = 200;
/** Tablestore's TableStatus ACTIVE, and PrimaryKeyType by number. */
const TABLE_ACTIVE = 1;
const PK_TYPES: Record<number, string> = { 1: 'INTEGER', 2: 'STRING', 3: 'BINARY' };

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export type PrimaryKey = TableStore.PrimaryKeyInput;
type BatchChange = { schema: TableSchema; row: TableStore.BatchWriteRowChange };
type Existence = keyof typeof TableStore.RowExistenceExpectation;

export const condition = (existence: Existence, column?: TableStore.ColumnCondition) =>
  new TableStore.Condition(TableStore.RowExistenceExpectation[existence], column ?? null);

/** `name == value`; a row without the column fails it. */
export const equals = (name: string, value: string) =>
  new TableStore.SingleColumnCondition(name, value, TableStore.ComparatorType.EQUAL, false);

function combine(operator: number, conditions: TableStore.ColumnCondition[]): TableStore.ColumnCondition {
  const composite = new TableStore.CompositeCondition(operator);
  for (const c of conditions) composite.addSubCondition(c);
  return composite;
}
export const allOf = (...conditions: TableStore.ColumnCondition[]) =>
  combine(TableStore.LogicalOperator.AND, conditions);
export const anyOf = (...conditions: TableStore.ColumnCondition[]) =>
  combine(TableStore.LogicalOperator.OR, conditions);

/** Runs a conditional write: false when its condition failed, so the write did nothing. */
export async function conditionally(write: () => Promise<void>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (err) {
    if (isConditionFailure(err)) return false;
    throw err;
  }
}

export class Tables {
  private tablesReady: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly caller: TablestoreCaller,
    private readonly prefix: string,
    private readonly tableReadyTimeoutMs: number,
  ) {}

  close(): void {
    this.closed = true;
    this.caller.close();
  }

  async getRow(schema: TableSchema, primaryKey: PrimaryKey): Promise<Columns | null> {
    await this.ready();
    const tableName = this.tableName(schema);
    const data = await this.caller.call<{ row: TableStore.RowOutput }>('GetRow', tableName, (client, done) =>
      client.getRow({ tableName, primaryKey, maxVersions: 1 }, done),
    );
    return columnsOf(data.row);
  }

  async putRow(
    schema: TableSchema,
    primaryKey: PrimaryKey,
    columns: Columns,
    expectation: Existence | TableStore.Condition,
  ): Promise<void> {
    await this.ready();
    const tableName = this.tableName(schema);
    const attributes = attributeColumns(tableName, columns);
    const rowCondition = typeof expectation === 'string' ? condition(expectation) : expectation;
    await this.caller.call('PutRow', tableName, (client, done) =>
      client.putRow({ tableName, primaryKey, attributeColumns: attributes, condition: rowCondition }, done),
    );
  }

  async updateRow(
    schema: TableSchema,
    primaryKey: PrimaryKey,
    update: ColumnUpdate,
    rowCondition: TableStore.Condition,
  ): Promise<void> {
    await this.ready();
    const tableName = this.tableName(schema);
    const updateOfAttributeColumns = updateOf(tableName, update);
    await this.caller.call('UpdateRow', tableName, (client, done) =>
      client.updateRow({ tableName, primaryKey, updateOfAttributeColumns, condition: rowCondition }, done),
    );
  }

  async deleteRow(schema: TableSchema, primaryKey: PrimaryKey, rowCondition: TableStore.Condition) {
    await this.ready();
    const tableName = this.tableName(schema);
    await this.caller.call('DeleteRow', tableName, (client, done) =>
      client.deleteRow({ tableName, primaryKey, condition: rowCondition }, done),
    );
  }

  /** Rows of one table from start to end, following next_start_primary_key until the range is done. */
  async *scan(
    schema: TableSchema,
    direction: 'FORWARD' | 'BACKWARD',
    start: PrimaryKey,
    end: PrimaryKey,
    limit: number,
  ): AsyncGenerator<Columns> {
    await this.ready();
    const tableName = this.tableName(schema);
    let next: PrimaryKey | null = start;
    while (next) {
      const inclusiveStartPrimaryKey: PrimaryKey = next;
      const data: TableStore.GetRangeOutput = await this.caller.call<TableStore.GetRangeOutput>(
        'GetRange',
        tableName,
        (client, done) =>
          client.getRange(
            { tableName, direction, inclusiveStartPrimaryKey, exclusiveEndPrimaryKey: end, limit, maxVersions: 1 },
            done,
          ),
      );
      for (const row of data.rows) {
        const columns = columnsOf(row);
        if (columns) yield columns;
      }
      next = data.nextStartPrimaryKey?.map(({ name, value }) => ({ [name]: value })) ?? null;
    }
  }

  scanAll(schema: TableSchema): AsyncGenerator<Columns> {
    const edge = (value: TableStore.RangeEnd) => schema.primaryKey.map((pk) => ({ [pk.name]: value }));
    return this.scan(schema, 'FORWARD', edge(TableStore.INF_MIN), edge(TableStore.INF_MAX), 1000);
  }

  /** Rows by key, in the order asked (null for a missing row), BATCH_GET_LIMIT keys a request. */
  async batchGet(schema: TableSchema, keys: PrimaryKey[]): Promise<Array<Columns | null>> {
    await this.ready();
    const tableName = this.tableName(schema);
    const rows: Array<Columns | null> = [];
    for (let i = 0; i < keys.length; i += BATCH_GET_LIMIT) {
      const primaryKey = keys.slice(i, i + BATCH_GET_LIMIT);
      const data = await this.caller.call<{ tables: TableStore.BatchRowResult[][] }>(
        'BatchGetRow',
        tableName,
        (client, done) => client.batchGetRow({ tables: [{ tableName, primaryKey, maxVersions: 1 }] }, done),
        (result) => batchFailure(result.tables.flat()),
      );
      rows.push(...(data.tables[0] ?? []).map((row) => columnsOf(row)));
    }
    return rows;
  }

  /** Unconditional batch writes, BATCH_WRITE_LIMIT rows a request; each row is idempotent, so a batch is retried whole. */
  async batchWrite(changes: BatchChange[]): Promise<void> {
    if (changes.length === 0) return;
    await this.ready();
    for (let i = 0; i < changes.length; i += BATCH_WRITE_LIMIT) {
      const slice = changes.slice(i, i + BATCH_WRITE_LIMIT);
      const byTable = new Map<string, TableStore.BatchWriteRowChange[]>();
      for (const change of slice) {
        const name = this.tableName(change.schema);
        byTable.set(name, [...(byTable.get(name) ?? []), change.row]);
      }
      const tables = [...byTable].map(([tableName, rows]) => ({ tableName, rows }));
      await this.caller.call<{ tables: TableStore.BatchRowResult[] }>(
        'BatchWriteRow',
        [...byTable.keys()].join(', '),
        (client, done) => client.batchWriteRow({ tables }, done),
        (result) => batchFailure(result.tables),
      );
    }
  }

  private tableName(schema: TableSchema): string {
    return `${this.prefix}${schema.name}`;
  }

  /** Creates the tables on first use, once per process; a failure lets the next call try again. */
  private ready(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the Tablestore meta store is closed'));
    this.tablesReady ??= this.createTables().catch((err: unknown) => {
      this.tablesReady = undefined;
      throw err;
    });
    return this.tablesReady;
  }

  private async createTables(): Promise<void> {
    const listed = await this.caller.call<{ tableNames: string[] }>('ListTable', undefined, (client, done) =>
      client.listTable({}, done),
    );
    const existing = new Set(listed.tableNames);
    await Promise.all(
      Object.values(TABLES).map(async (schema: TableSchema) => {
        const tableName = this.tableName(schema);
        if (!existing.has(tableName)) await this.createTable(schema);
        await this.awaitActive(schema);
      }),
    );
  }

  private async createTable(schema: TableSchema): Promise<void> {
    const tableName = this.tableName(schema);
    try {
      await this.caller.call('CreateTable', tableName, (client, done) =>
        client.createTable(
          {
            tableMeta: { tableName, primaryKey: schema.primaryKey },
            reservedThroughput: { capacityUnit: { read: 0, write: 0 } },
            tableOptions: { timeToLive: -1, maxVersions: 1 },
          },
          done,
        ),
      );
    } catch (err) {
      // Another replica created it first.
      if (!(err instanceof MetaStoreError && err.code === 'OTSObjectAlreadyExist')) throw err;
    }
  }

  /** Waits until the table answers as active, and checks that it has this adapter's primary key. */
  private async awaitActive(schema: TableSchema): Promise<void> {
    const tableName = this.tableName(schema);
    const deadline = Date.now() + this.tableReadyTimeoutMs;
    for (;;) {
      let described: TableStore.DescribeTableOutput | undefined;
      try {
        described = await this.caller.call<TableStore.DescribeTableOutput>('DescribeTable', tableName, (client, done) =>
          client.describeTable({ tableName }, done),
        );
      } catch (err) {
        // A table created a moment ago may not be visible yet.
        if (!(err instanceof MetaStoreError && err.code === 'OTSObjectNotExist')) throw err;
      }
      if (described) {
        const actual = described.tableMeta.primaryKey.map((pk) => `${pk.name}:${PK_TYPES[pk.type] ?? pk.type}`);
        const expected = schema.primaryKey.map((pk) => `${pk.name}:${pk.type}`);
        if (actual.join(',') !== expected.join(',')) {
          throw new Error(
            `Tablestore table ${tableName} exists with primary key (${actual.join(', ')}), not (${expected.join(', ')}); ` +
              'choose another SDFLOW_TABLESTORE_TABLE_PREFIX',
          );
        }
        if (described.tableStatus === TABLE_ACTIVE) return;
      }
      if (Date.now() >= deadline) {
        throw new Error(`Tablestore table ${tableName} did not become active within ${this.tableReadyTimeoutMs} ms`);
      }
      await sleep(TABLE_POLL_MS);
    }
  }
}

/** The first failed row of a batch, as a failure of the whole request (its rows are idempotent, so it may be retried). */
function batchFailure(rows: TableStore.BatchRowResult[]): Failure | undefined {
  const failed = rows.find((row) => !row.isOk);
  if (!failed) return undefined;
  return rowFailure(failed.errorCode ?? 'UnknownRowError', failed.errorMessage ?? 'a row of the batch failed');
}
