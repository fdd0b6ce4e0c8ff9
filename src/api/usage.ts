import { z } from 'zod';
import { MAX_PAGE_LIMIT } from '../platform/meta-store/cursor.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import type { TaskRecord } from '../records.js';
import type { Principal } from './auth.js';
import { badRequest, forbidden } from './errors.js';

// GET /usage: the cost of the tasks created in [from, to), summed by user and checkpoint, from the task records'
// `cost` (docs/ARCHITECTURE.md, "Cost"). Succeeded tasks carry one, and keep it once deleted.

/** The window when `from` is not given: the day before `to`. */
const DEFAULT_WINDOW_MS = 24 * 60 * 60 * 1000;

const instant = z.iso
  .datetime({ offset: true, error: 'must be an ISO 8601 instant, e.g. 2026-01-31T12:00:00Z' })
  .optional();

export const usageQuery = z.object({
  from: instant.describe('start of the window, inclusive (default: 24 h before `to`)'),
  to: instant.describe('end of the window, exclusive (default: now)'),
  user: z.string().min(1).max(200).optional().describe("one user's rows (yours unless you are an admin)"),
});

export interface UsageRow {
  user: string;
  model: string;
  tasks: number;
  images: number;
  queueS: number;
  coldStartS: number;
  gpuS: number;
  billedGpuS: number;
}

export interface UsageWindow {
  from: string;
  to: string;
  /** One user's tasks; every user's when absent. */
  user?: string;
}

/** The window and user a caller asks for: who may see what, and defaults. Throws 400 or 403 naming the parameter. */
export function usageWindow(query: z.output<typeof usageQuery>, principal: Principal, now = Date.now()): UsageWindow {
  if (principal.role !== 'admin' && query.user !== undefined && query.user !== principal.user) {
    throw forbidden("user: only an admin may read another user's usage");
  }
  const to = query.to === undefined ? now : Date.parse(query.to);
  const from = query.from === undefined ? to - DEFAULT_WINDOW_MS : Date.parse(query.from);
  if (from > to) throw badRequest('from: must not be after to');
  const user = principal.role === 'admin' ? query.user : principal.user;
  return {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    ...(user === undefined ? {} : { user }),
  };
}

/** Seconds summed to the millisecond, as each task's cost is stored. */
const addS = (a: number, b: number) => Math.round((a + b) * 1000) / 1000;

function addTask(rows: Map<string, UsageRow>, task: TaskRecord): void {
  const cost = task.cost;
  if (!cost) return;
  const key = JSON.stringify([task.user, task.model]);
  const row = rows.get(key) ?? {
    user: task.user,
    model: task.model,
    tasks: 0,
    images: 0,
    queueS: 0,
    coldStartS: 0,
    gpuS: 0,
    billedGpuS: 0,
  };
  row.tasks++;
  row.images += cost.images;
  row.queueS = addS(row.queueS, cost.queueS);
  row.coldStartS = addS(row.coldStartS, cost.coldStartS);
  row.gpuS = addS(row.gpuS, cost.gpuS);
  row.billedGpuS = addS(row.billedGpuS, cost.billedGpuS);
  rows.set(key, row);
}

/** The usage rows of a window, by user then checkpoint: newest task pages are read until one predates `from`. */
export async function usageRows(meta: MetaStore, window: UsageWindow): Promise<UsageRow[]> {
  const rows = new Map<string, UsageRow>();
  let cursor: string | undefined;
  do {
    const page = await meta.listTasks({
      ...(window.user === undefined ? {} : { user: window.user }),
      status: ['succeeded', 'deleted'],
      createdBefore: window.to,
      limit: MAX_PAGE_LIMIT,
      ...(cursor === undefined ? {} : { cursor }),
    });
    for (const task of page.items) {
      if (task.createdAt < window.from) return sorted(rows);
      addTask(rows, task);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return sorted(rows);
}

const sorted = (rows: Map<string, UsageRow>) =>
  [...rows.values()].sort((a, b) => a.user.localeCompare(b.user) || a.model.localeCompare(b.model));
