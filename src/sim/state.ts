// A1111's shared job state (what /sdapi/v1/progress reports) and its queue lock. One job holds the lock at a time;
// the others wait in FIFO order. Interrupt and skip set flags, as in A1111, and also wake a job that is sleeping
// through a simulated step so it notices at once.

export interface StateDict {
  skipped: boolean;
  interrupted: boolean;
  stopping_generation: boolean;
  job: string;
  job_count: number;
  job_timestamp: string;
  job_no: number;
  sampling_step: number;
  sampling_steps: number;
}

export interface ProgressResponse {
  progress: number;
  eta_relative: number;
  state: StateDict;
  current_image: string | null;
  textinfo: string | null;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** A1111's job_timestamp: local time as YYYYMMDDhhmmss. */
export function jobTimestamp(d = new Date()): string {
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

export class SdState {
  skipped = false;
  interrupted = false;
  job = '';
  jobCount = 0;
  jobNo = 0;
  jobTimestamp = '0';
  samplingStep = 0;
  samplingSteps = 0;
  textinfo: string | null = null;
  /** When the current job is expected to end (epoch ms), for eta_relative; undefined when unknown. */
  expectedEnd: number | undefined;
  private timeStart = 0;
  private shutDown = false;
  private wakers = new Set<() => void>();
  /** Draws the live preview of the latest previewed step; encoded only when a client asks for it, then kept. */
  private previewRender: (() => Promise<Buffer>) | undefined;
  private previewBase64: Promise<string> | undefined;

  begin(job: string, jobCount: number): void {
    this.skipped = false;
    this.interrupted = this.shutDown;
    this.job = job;
    this.jobCount = jobCount;
    this.jobNo = 0;
    this.samplingStep = 0;
    this.samplingSteps = 0;
    this.textinfo = null;
    this.jobTimestamp = jobTimestamp();
    this.timeStart = Date.now();
    this.expectedEnd = undefined;
    this.previewRender = undefined;
    this.previewBase64 = undefined;
  }

  /** A1111's set_current_image: the sampler offers a new preview (a PNG drawn on demand). */
  setPreview(render: () => Promise<Buffer>): void {
    this.previewRender = render;
    this.previewBase64 = undefined;
  }

  /** The live preview as A1111's progress sends it (plain base64), or null while the job has none. */
  currentImage(): Promise<string | null> {
    const render = this.previewRender;
    if (this.jobCount <= 0 || !render) return Promise.resolve(null);
    this.previewBase64 ??= render().then((png) => png.toString('base64'));
    return this.previewBase64;
  }

  end(): void {
    this.job = '';
    this.jobCount = 0;
    this.expectedEnd = undefined;
  }

  nextJob(): void {
    this.jobNo++;
    this.samplingStep = 0;
  }

  interrupt(): void {
    this.interrupted = true;
    this.wake();
  }

  /** Interrupts the current job and every later one: the server is closing. */
  shutdown(): void {
    this.shutDown = true;
    this.interrupt();
  }

  skip(): void {
    this.skipped = true;
    this.wake();
  }

  /** Resolves at `until` (epoch ms), or as soon as interrupt or skip is called. */
  sleepUntil(until: number): Promise<void> {
    const ms = until - Date.now();
    if (ms <= 0) return new Promise((resolve) => setImmediate(resolve));
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }

  /** Like sleepUntil, but neither interrupt nor skip cuts it short (a checkpoint load cannot be interrupted). */
  static sleep(ms: number): Promise<void> {
    return new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  dict(): StateDict {
    return {
      skipped: this.skipped,
      interrupted: this.interrupted,
      stopping_generation: false,
      job: this.job,
      job_count: this.jobCount,
      job_timestamp: this.jobTimestamp,
      job_no: this.jobNo,
      sampling_step: this.samplingStep,
      sampling_steps: this.samplingSteps,
    };
  }

  /** /sdapi/v1/progress: progress is the fraction of the job's sampling steps done; 0 with job_count 0 when idle. */
  progress(): ProgressResponse {
    const state = this.dict();
    if (this.jobCount <= 0)
      return { progress: 0, eta_relative: 0, state, current_image: null, textinfo: this.textinfo };
    const within = this.samplingSteps > 0 ? Math.min(this.samplingStep / this.samplingSteps, 1) : 0;
    const progress = Math.min(Math.max((this.jobNo + within) / this.jobCount, 0), 1);
    const now = Date.now();
    let eta: number;
    if (this.expectedEnd !== undefined) eta = Math.max(0, this.expectedEnd - now) / 1000;
    else if (progress > 0) eta = ((now - this.timeStart) / progress - (now - this.timeStart)) / 1000;
    else eta = 0;
    return { progress, eta_relative: eta, state, current_image: null, textinfo: this.textinfo };
  }
}

/** A1111's queue lock: jobs run one at a time, in the order they asked. */
export class JobQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  /** How many jobs hold or wait for the lock. */
  get length(): number {
    return this.waiting;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.waiting++;
    const result = this.tail.then(job).finally(() => {
      this.waiting--;
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}
