import { appendFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// The simulator's counters, and the busy intervals other processes can read back. While a job holds the queue
// lock the simulator is busy; each holding is one interval. With a stats dir, every start and end is appended as
// an NDJSON line to `<statsDir>/<pid>.ndjson` (synchronously, so a killed process leaves what it wrote), which is
// how tests sum concurrency across many simulator processes.
//
// It also keeps the process's own account of its time, as a GPU provider would bill it: its cold start (process
// start to listening), then active (a job holds the lock, checkpoint loads included) and idle (listening, no job).

/** What held the lock: a generation, an upscale, or a checkpoint load. */
export type JobKind = 'txt2img' | 'img2img' | 'extras' | 'load';

/** The kinds that count as GPU work by default when reading intervals back. */
export const WORK_KINDS: readonly JobKind[] = ['txt2img', 'img2img', 'extras'];

export interface Interval {
  start: number;
  end: number;
  kind?: string;
  pid?: number;
  job?: number;
  /** True when no end was recorded: the interval is counted as open until it was read. */
  open?: boolean;
}

export interface StatsEvent {
  event: 'start' | 'end';
  job: number;
  t: number;
  pid: number;
  /** The simulator's port: tells apart two simulators in one process sharing a stats file. */
  port?: number;
  kind: JobKind;
  [extra: string]: unknown;
}

const MAX_INTERVALS = 1000;

export class SimStats {
  jobs = 0;
  interruptedJobs = 0;
  modelLoads = 0;
  loadedModel: string | null = null;
  port = 0;
  private seq = 0;
  private current: { job: number; kind: JobKind; start: number } | undefined;
  private intervals: Array<{ start: number; end: number; kind: JobKind }> = [];
  private readonly file: string | undefined;
  /** When the server began listening (epoch ms); until then the process is starting. */
  private listeningAt: number | undefined;
  /** The lock's holding time of the jobs that have ended, in ms. */
  private activeMs = 0;

  constructor(statsDir?: string) {
    if (statsDir) {
      mkdirSync(statsDir, { recursive: true });
      this.file = join(statsDir, `${process.pid}.ndjson`);
    }
  }

  /** Records that a job began holding the lock; returns its number. */
  begin(kind: JobKind): number {
    const job = ++this.seq;
    const t = Date.now();
    this.current = { job, kind, start: t };
    if (kind !== 'load') this.jobs++;
    this.write({ event: 'start', job, t, pid: process.pid, port: this.port, kind });
    return job;
  }

  /** Records that the job let go of the lock. */
  end(job: number, extra: Record<string, unknown> = {}): void {
    const cur = this.current;
    if (!cur || cur.job !== job) return;
    const t = Date.now();
    this.current = undefined;
    this.activeMs += t - cur.start;
    if (extra.interrupted === true) this.interruptedJobs++;
    this.intervals.push({ start: cur.start, end: t, kind: cur.kind });
    if (this.intervals.length > MAX_INTERVALS) this.intervals.splice(0, this.intervals.length - MAX_INTERVALS);
    this.write({ ...extra, event: 'end', job, t, pid: process.pid, port: this.port, kind: cur.kind });
  }

  /** The server is listening: the process's cold start ends here. */
  listening(at = Date.now()): void {
    this.listeningAt ??= at;
  }

  /**
   * Seconds of the process's life so far: starting (from the process's start to listening), active (a job held the
   * lock, the current one included) and idle (the rest since listening).
   */
  accounting(now = Date.now()) {
    const listeningAt = this.listeningAt ?? now;
    const activeMs = this.activeMs + (this.current ? now - this.current.start : 0);
    return {
      coldStartS: (listeningAt - performance.timeOrigin) / 1000,
      activeS: activeMs / 1000,
      idleS: Math.max(0, now - listeningAt - activeMs) / 1000,
    };
  }

  modelLoaded(title: string): void {
    this.modelLoads++;
    this.loadedModel = title;
  }

  modelUnloaded(): void {
    this.loadedModel = null;
  }

  private write(event: StatsEvent): void {
    if (!this.file) return;
    try {
      appendFileSync(this.file, `${JSON.stringify(event)}\n`);
    } catch {
      // stats are a diagnostic; a full disk must not fail the job
    }
  }

  snapshot() {
    return {
      pid: process.pid,
      port: this.port,
      jobs: this.jobs,
      interruptedJobs: this.interruptedJobs,
      modelLoads: this.modelLoads,
      loadedModel: this.loadedModel,
      busy: this.current !== undefined,
      busyIntervals: this.intervals.map((i) => ({ ...i })),
      accounting: this.accounting(),
    };
  }
}

function parseLines(text: string): StatsEvent[] {
  const out: StatsEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as StatsEvent);
    } catch {
      // a line cut short by a kill
    }
  }
  return out;
}

function intervalsOfFile(events: StatsEvent[], now: number): Interval[] {
  const open = new Map<string, StatsEvent>();
  const out: Interval[] = [];
  for (const e of events) {
    const key = `${e.port ?? ''}:${e.job}`;
    if (e.event === 'start') open.set(key, e);
    else if (e.event === 'end') {
      const s = open.get(key);
      open.delete(key);
      if (s) out.push({ start: s.t, end: e.t, kind: s.kind, pid: s.pid, job: s.job });
    }
  }
  for (const s of open.values())
    out.push({ start: s.t, end: Math.max(now, s.t), kind: s.kind, pid: s.pid, job: s.job, open: true });
  return out;
}

/** The events of every stats file under a stats dir, one list per simulator process. */
function readEventFiles(statsDir: string): StatsEvent[][] {
  let files: string[];
  try {
    files = readdirSync(statsDir).filter((n) => n.endsWith('.ndjson'));
  } catch {
    return [];
  }
  const out: StatsEvent[][] = [];
  for (const name of files) {
    try {
      out.push(parseLines(readFileSync(join(statsDir, name), 'utf8')));
    } catch {
      // removed meanwhile
    }
  }
  return out;
}

/**
 * Every busy interval recorded under a stats dir, across all simulator processes, sorted by start. A start with
 * no end counts as open until now. Only `kinds` are returned: generation and extras by default; pass
 * `kinds: 'all'` to include checkpoint loads.
 */
export function readBusyIntervals(statsDir: string, opts: { kinds?: readonly string[] | 'all' } = {}): Interval[] {
  const kinds = opts.kinds ?? WORK_KINDS;
  const now = Date.now();
  return readEventFiles(statsDir)
    .flatMap((events) => intervalsOfFile(events, now))
    .filter((i) => kinds === 'all' || (i.kind !== undefined && kinds.includes(i.kind)))
    .sort((a, b) => a.start - b.start);
}

/**
 * When each checkpoint load ended, across all simulator processes under a stats dir, sorted: a load job that loaded,
 * or a generation that had to load its checkpoint first.
 */
export function readCheckpointLoads(statsDir: string): number[] {
  return readEventFiles(statsDir)
    .flat()
    .filter((e) => e.event === 'end' && (e.loaded === true || e.loadedModel === true))
    .map((e) => e.t)
    .sort((a, b) => a - b);
}

/** The peak number of intervals open at once. Touching intervals ([a,b] then [b,c]) do not overlap. */
export function maxOverlap(intervals: ReadonlyArray<Pick<Interval, 'start' | 'end'>>): number {
  const points: Array<[number, number]> = [];
  for (const i of intervals) {
    points.push([i.start, 1]);
    points.push([i.end, -1]);
  }
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let current = 0;
  let peak = 0;
  for (const [, delta] of points) {
    current += delta;
    peak = Math.max(peak, current);
  }
  return peak;
}
