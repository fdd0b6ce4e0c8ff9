import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { runtimeDir, runtimeFunctionsFile, runtimeInstancesFile } from '../../../data-dir.js';

// What the runtime keeps in the data dir so that a restarted runtime re-adopts its instances instead of orphaning
// or duplicating them. Files are replaced atomically (temp file + rename): a crash never leaves half a file.

export const functionEntrySchema = z.object({
  functionName: z.string(),
  model: z.string(),
  resources: z.record(z.string(), z.unknown()),
});
export type FunctionEntry = z.infer<typeof functionEntrySchema>;

export const instanceRecordSchema = z.object({
  id: z.string(),
  functionName: z.string(),
  model: z.string(),
  pid: z.number().int(),
  port: z.number().int(),
  startedAt: z.string(),
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

export class RuntimeState {
  readonly functionsFile: string;
  readonly instancesFile: string;

  constructor(dataDir: string) {
    this.functionsFile = runtimeFunctionsFile(dataDir);
    this.instancesFile = runtimeInstancesFile(dataDir);
    mkdirSync(runtimeDir(dataDir), { recursive: true });
  }

  readFunctions(): FunctionEntry[] {
    return readList(this.functionsFile, functionEntrySchema);
  }

  readInstances(): InstanceRecord[] {
    return readList(this.instancesFile, instanceRecordSchema);
  }

  writeFunctions(entries: FunctionEntry[]): void {
    writeAtomic(this.functionsFile, entries);
  }

  writeInstances(records: InstanceRecord[]): void {
    writeAtomic(this.instancesFile, records);
  }
}

function readList<T>(file: string, schema: z.ZodType<T>): T[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  const parsed = z.array(schema).safeParse(raw);
  if (!parsed.success) throw new Error(`${file} is malformed: ${parsed.error.message}`);
  return parsed.data;
}

function writeAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(temp, file);
}
