// Types for the parts of the official `tablestore` SDK (5.x, plain JavaScript) that the Tablestore meta store uses.
// Only what the adapter calls is declared; the shapes follow the SDK's encoder/decoder under lib/protocol.

declare module 'tablestore' {
  namespace TableStore {
    /** A 64-bit integer as the SDK carries it (int64-buffer's Int64LE). */
    interface Int64 {
      toNumber(): number;
      toString(radix?: number): string;
    }

    /** INF_MIN / INF_MAX: the open ends of a primary-key range. */
    type RangeEnd = { readonly __tablestoreRangeEnd: true };

    type CellValue = string | number | boolean | Buffer | Int64;
    type PrimaryKeyValue = string | Buffer | Int64 | RangeEnd;

    /** One primary-key column per element, in the table's order: `[{ taskId: 't1' }]`. */
    type PrimaryKeyInput = Array<Record<string, PrimaryKeyValue>>;
    /** One attribute column per element: `[{ status: 'waiting' }]`. */
    type AttributeInput = Array<Record<string, CellValue>>;

    interface UpdateOfAttributeColumns {
      PUT?: AttributeInput;
      DELETE_ALL?: string[];
    }

    interface RowOutput {
      primaryKey?: Array<{ name: string; value: CellValue }>;
      attributes?: Array<{ columnName: string; columnValue: CellValue; timestamp: Int64 | null }>;
    }

    interface ColumnCondition {
      getType(): number;
    }

    class SingleColumnCondition implements ColumnCondition {
      constructor(
        columnName: string,
        columnValue: CellValue,
        comparator: number,
        passIfMissing?: boolean,
        latestVersionOnly?: boolean,
      );
      getType(): number;
    }

    class CompositeCondition implements ColumnCondition {
      constructor(combinator: number);
      addSubCondition(condition: ColumnCondition): void;
      getType(): number;
    }

    class Condition {
      constructor(rowExistenceExpectation: number, columnCondition?: ColumnCondition | null);
      readonly rowExistenceExpectation: number;
      readonly columnCondition: ColumnCondition | null;
    }

    interface PrimaryKeySchema {
      name: string;
      type: 'STRING' | 'INTEGER' | 'BINARY';
    }

    interface CreateTableParams {
      tableMeta: { tableName: string; primaryKey: PrimaryKeySchema[] };
      reservedThroughput: { capacityUnit: { read: number; write: number } };
      tableOptions: { timeToLive: number; maxVersions: number };
    }

    interface DescribeTableOutput {
      tableMeta: { tableName: string; primaryKey: Array<{ name: string; type: number }> };
      tableStatus: number;
    }

    interface GetRowParams {
      tableName: string;
      primaryKey: PrimaryKeyInput;
      maxVersions?: number;
    }

    interface PutRowParams {
      tableName: string;
      primaryKey: PrimaryKeyInput;
      attributeColumns: AttributeInput;
      condition: Condition;
    }

    interface UpdateRowParams {
      tableName: string;
      primaryKey: PrimaryKeyInput;
      updateOfAttributeColumns: UpdateOfAttributeColumns[];
      condition: Condition;
    }

    interface DeleteRowParams {
      tableName: string;
      primaryKey: PrimaryKeyInput;
      condition: Condition;
    }

    interface GetRangeParams {
      tableName: string;
      direction: 'FORWARD' | 'BACKWARD';
      inclusiveStartPrimaryKey: PrimaryKeyInput;
      exclusiveEndPrimaryKey: PrimaryKeyInput;
      limit?: number;
      maxVersions?: number;
    }

    interface GetRangeOutput {
      rows: RowOutput[];
      nextStartPrimaryKey: Array<{ name: string; value: PrimaryKeyValue }> | null;
    }

    interface BatchGetRowParams {
      tables: Array<{ tableName: string; primaryKey: PrimaryKeyInput[]; maxVersions?: number }>;
    }

    interface BatchRowResult {
      isOk: boolean;
      errorCode: string | null;
      errorMessage: string | null;
      tableName: string;
      primaryKey: Array<{ name: string; value: CellValue }> | null;
      attributes: Array<{ columnName: string; columnValue: CellValue; timestamp: Int64 | null }> | null;
    }

    type BatchWriteRowChange =
      | { type: 'PUT'; primaryKey: PrimaryKeyInput; attributeColumns: AttributeInput; condition: Condition }
      | { type: 'DELETE'; primaryKey: PrimaryKeyInput; condition: Condition };

    interface BatchWriteRowParams {
      tables: Array<{ tableName: string; rows: BatchWriteRowChange[] }>;
    }

    /** What an SDK callback receives as `this`: the raw HTTP exchange, also when the call failed. */
    interface Response {
      httpResponse: { statusCode?: number; headers?: Record<string, string>; body?: Buffer };
      retryCount: number;
    }

    interface SdkError extends Error {
      code?: string | number;
    }

    type Callback<T> = (this: Response, err: SdkError | null, data: T) => void;

    interface ClientConfig {
      accessKeyId: string;
      secretAccessKey: string;
      stsToken?: string;
      endpoint: string;
      instancename: string;
      maxRetries?: number;
      httpOptions?: { timeout?: number; agent?: unknown };
    }

    class Client {
      constructor(config: ClientConfig);
      createTable(params: CreateTableParams, callback: Callback<object>): unknown;
      listTable(params: object, callback: Callback<{ tableNames: string[] }>): unknown;
      describeTable(params: { tableName: string }, callback: Callback<DescribeTableOutput>): unknown;
      getRow(params: GetRowParams, callback: Callback<{ row: RowOutput }>): unknown;
      putRow(params: PutRowParams, callback: Callback<object>): unknown;
      updateRow(params: UpdateRowParams, callback: Callback<object>): unknown;
      deleteRow(params: DeleteRowParams, callback: Callback<object>): unknown;
      getRange(params: GetRangeParams, callback: Callback<GetRangeOutput>): unknown;
      batchGetRow(params: BatchGetRowParams, callback: Callback<{ tables: BatchRowResult[][] }>): unknown;
      batchWriteRow(params: BatchWriteRowParams, callback: Callback<{ tables: BatchRowResult[] }>): unknown;
    }

    const RowExistenceExpectation: { IGNORE: number; EXPECT_EXIST: number; EXPECT_NOT_EXIST: number };
    const ComparatorType: { EQUAL: number; NOT_EQUAL: number };
    const LogicalOperator: { NOT: number; AND: number; OR: number };
    const Long: { fromNumber(value: number): Int64 };
    const INF_MIN: RangeEnd;
    const INF_MAX: RangeEnd;
  }

  export = TableStore;
}
