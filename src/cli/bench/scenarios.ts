import { SCENARIOS, type ScenarioName, type ScenarioResults, type Skipped } from './report.js';

// The results of a run as they come in: every scenario starts as "not selected", and a scenario that fails is
// reported as skipped with the reason, while the run goes on.

export type Results = { -readonly [K in keyof ScenarioResults]: ScenarioResults[K] };

/** An error's message with its causes' (a Temporal failure's reason is its cause). */
export function describeError(err: unknown): string {
  const messages: string[] = [];
  for (let e: unknown = err; e !== undefined && messages.length < 5; e = (e as { cause?: unknown }).cause) {
    messages.push(e instanceof Error ? e.message : String(e));
  }
  return messages.join(': ');
}

export class Scenarios {
  readonly results: Results;
  failures = 0;

  constructor(
    private readonly chosen: readonly ScenarioName[],
    readonly say: (line: string) => void,
  ) {
    const notSelected: Skipped = { skipped: 'not selected (--scenarios)' };
    this.results = Object.fromEntries(SCENARIOS.map((name) => [name, notSelected])) as Results;
  }

  selected(...names: readonly ScenarioName[]): boolean {
    return names.some((name) => this.chosen.includes(name));
  }

  skip(name: ScenarioName, why: string): void {
    if (this.selected(name)) this.results[name] = { skipped: why };
  }

  /** Runs a selected scenario; a failure becomes its skip reason. */
  async run<K extends ScenarioName>(name: K, measure: () => Promise<Results[K]>): Promise<void> {
    if (!this.selected(name)) return;
    const started = performance.now();
    this.say(`${name}: running`);
    try {
      this.results[name] = await measure();
      this.say(`${name}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (err) {
      this.failed([name], err);
    }
  }

  /**
   * Runs scenarios measured by one workload (throughput and footprint, multimodel and eta) when any is selected;
   * `measure` answers the results of the selected ones, and a failure is theirs all.
   */
  async runTogether(names: readonly ScenarioName[], measure: () => Promise<Partial<Results>>): Promise<void> {
    const chosen = names.filter((name) => this.selected(name));
    if (chosen.length === 0) return;
    const label = chosen.join(' and ');
    const started = performance.now();
    this.say(`${label}: running`);
    try {
      const results = await measure();
      for (const name of chosen) this.assign(name, results);
      this.say(`${label}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (err) {
      this.failed(chosen, err);
    }
  }

  private assign<K extends ScenarioName>(name: K, results: Partial<Results>): void {
    const result = results[name];
    if (result) this.results[name] = result as Results[K];
  }

  /** Marks the selected ones of these scenarios as failed: their stack could not start, or the measure threw. */
  failed(names: readonly ScenarioName[], err: unknown): void {
    const message = describeError(err);
    for (const name of names) {
      if (!this.selected(name)) continue;
      this.failures++;
      this.results[name] = { skipped: `failed: ${message}` };
      this.say(`${name}: failed: ${message}`);
    }
  }
}
