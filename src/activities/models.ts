import type { Readable } from 'node:stream';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { FunctionNotFoundError } from '../platform/functions/port.js';
import { ObjectKeyError, objectKeyForModel } from '../platform/object-store/keys.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import type { ModelStatus, ModelType } from '../records.js';
import { NON_RETRYABLE } from '../types.js';
import type { ActivityDeps } from './index.js';
import { provideFunction } from './tasks.js';

// The steps of a model registration (src/workflows/registration.ts): stage the file at its canonical key and check
// it, move the row through its statuses, create and warm a checkpoint's function, recycle instances that may hold
// the old weights.

/** safetensors' own reader refuses headers over 100 MB; anything bigger is a broken or hostile file. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/** A model file that retrying cannot fix: missing, empty, or not what its name says. */
export class BrokenModelError extends Error {}

/**
 * The JSON header's length from a safetensors file's first 8 bytes (little-endian u64), checked against the file
 * size: the header must fit in the file and be of a sane size.
 */
export function safetensorsHeaderLength(prefix: Buffer, fileSize: number): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new BrokenModelError(`not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const length = prefix.readBigUInt64LE(0);
  if (length < 2n) throw new BrokenModelError(`not a safetensors file: header length ${length} is too short`);
  if (length > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
    throw new BrokenModelError(
      `not a safetensors file: header length ${length} is over the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit`,
    );
  }
  if (length > BigInt(fileSize - 8)) {
    throw new BrokenModelError(`not a safetensors file: header length ${length} runs past the end of the file`);
  }
  return Number(length);
}

/** Checks a safetensors JSON header: an object whose tensors all lie within the `dataBytes` that follow it. */
export function checkSafetensorsHeader(header: Buffer, dataBytes: number): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(header.toString('utf8'));
  } catch {
    throw new BrokenModelError('not a safetensors file: its header is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new BrokenModelError('not a safetensors file: its header is not a JSON object');
  }
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') continue;
    const tensor = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const offsets = tensor?.data_offsets;
    if (
      typeof tensor?.dtype !== 'string' ||
      !Array.isArray(tensor.shape) ||
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new BrokenModelError(`safetensors header: tensor "${name}" has no valid dtype, shape and data_offsets`);
    }
    if (offsets[1] > dataBytes) {
      throw new BrokenModelError(
        `safetensors header: tensor "${name}" ends at byte ${offsets[1]} of data, but the file holds ${dataBytes}`,
      );
    }
  }
}

/** Reads only as much of the object as its header takes; the rest of a multi-gigabyte file is never read. */
async function verifySafetensors(store: ObjectStore, key: string, size: number): Promise<void> {
  const stream: Readable = await store.getStream(key);
  const chunks: Buffer[] = [];
  let have = 0;
  let headerLength: number | undefined;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      have += (chunk as Buffer).length;
      if (headerLength === undefined && have >= 8) headerLength = safetensorsHeaderLength(Buffer.concat(chunks), size);
      if (headerLength !== undefined && have >= 8 + headerLength) break;
    }
  } finally {
    stream.destroy();
  }
  if (headerLength === undefined) headerLength = safetensorsHeaderLength(Buffer.concat(chunks), size);
  const all = Buffer.concat(chunks);
  if (all.length < 8 + headerLength) throw new BrokenModelError(`${key} ended before its safetensors header did`);
  checkSafetensorsHeader(all.subarray(8, 8 + headerLength), size - 8 - headerLength);
}

const broken = (message: string) => ApplicationFailure.nonRetryable(message, NON_RETRYABLE.badInput);

/** Heartbeats while `work` runs, and hands it the activity's cancellation (a delete cancels a registration). */
async function heartbeating<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), 5000);
  try {
    return await work(ctx.cancellationSignal);
  } finally {
    clearInterval(timer);
  }
}

export interface StagedModel {
  key: string;
  etag: string;
  size: number;
}

export function createModelActivities(deps: ActivityDeps) {
  const { meta, store, functions, logger } = deps;

  return {
    /**
     * Puts the model's file at its canonical key (a streamed copy when it is elsewhere) and checks it: present,
     * not empty, and for `.safetensors` a well-formed header. The etag is the store's content hash.
     */
    async stageModel(input: { name: string; type: ModelType; source: string }): Promise<StagedModel> {
      const key = objectKeyForModel(input.type, input.name);
      return heartbeating(async (signal) => {
        try {
          if (input.source !== key) {
            if (!(await store.head(input.source))) throw broken(`ossPath: no object at ${input.source}`);
            const source = await store.getStream(input.source);
            const stop = () => source.destroy(new Error('registration cancelled'));
            signal.addEventListener('abort', stop);
            try {
              await store.put(key, source, { contentType: 'application/octet-stream' });
            } finally {
              signal.removeEventListener('abort', stop);
            }
            logger.info({ model: input.name, from: input.source, to: key }, 'model file copied to its canonical key');
          }
          const info = await store.head(key);
          if (!info) throw broken(`no model file at ${key}`);
          if (info.size === 0) throw broken(`the model file ${key} is empty`);
          if (/\.safetensors$/i.test(input.name)) await verifySafetensors(store, key, info.size);
          return { key, etag: info.etag, size: info.size };
        } catch (err) {
          if (err instanceof BrokenModelError || err instanceof ObjectKeyError) throw broken(err.message);
          throw err;
        }
      });
    },

    /**
     * Moves the model's row to `to` if it is still in one of `from`: a registration never resurrects a model that was
     * deleted meanwhile. Returns whether it moved.
     */
    async setModelStatus(input: {
      name: string;
      from: ModelStatus[];
      to: ModelStatus;
      etag?: string;
      message?: string;
    }): Promise<boolean> {
      const model = await meta.getModel(input.name);
      if (!model || !input.from.includes(model.status)) return false;
      await meta.putModel({
        ...model,
        status: input.to,
        etag: input.etag ?? model.etag,
        message: input.to === 'failed' ? input.message : undefined,
        lastModificationTime: new Date().toISOString(),
      });
      return true;
    },

    /** Creates the checkpoint's function, or re-asserts it in the runtime: the model is still `loading` here. */
    async prepareCheckpointFunction({ model }: { model: string }): Promise<{ functionName: string }> {
      return { functionName: await provideFunction(deps, model, true) };
    },

    /** Recycles the instances of one function, or of all (a VAE may be used by any checkpoint). */
    async recycleInstances({ functionName }: { functionName?: string }): Promise<void> {
      try {
        await functions.restartInstances(functionName);
      } catch (err) {
        // A function the runtime does not have has no instances to recycle.
        if (!(err instanceof FunctionNotFoundError)) throw err;
      }
    },

    /**
     * Makes the runtime start an instance: its start pins and loads the checkpoint, so an instance that cannot load
     * it fails, and that failure is the registration's reason.
     */
    async warmFunction({ functionName }: { functionName: string }): Promise<void> {
      await heartbeating(async (signal) => {
        const answer = await functions.passthrough(functionName, { method: 'GET', path: '/sdapi/v1/options', signal });
        if (answer.status >= 400) {
          const text = answer.body.toString('utf8').slice(0, 300);
          throw new Error(`the warmed instance answered HTTP ${answer.status}: ${text}`);
        }
      });
    },

    /** Removes the file a model had under its previous type, once it is loaded under the new one. */
    async retireModelFile({ key }: { key: string }): Promise<void> {
      await store.delete(key);
    },
  };
}
