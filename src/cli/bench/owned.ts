// What the benchmark started and must stop: its Temporal server, its stacks and its simulators. Each is stopped once,
// when its scenarios are done, or by stopAll() at the end of the run, on an error or on Ctrl-C.

export class Owned {
  private readonly stops: { name: string; stop: () => Promise<void> }[] = [];

  /** Registers something to stop; returns its stop, which runs it once and forgets it. */
  add(name: string, stop: () => Promise<void>): () => Promise<void> {
    let done: Promise<void> | undefined;
    const entry = {
      name,
      stop: () => {
        done ??= stop();
        return done;
      },
    };
    this.stops.push(entry);
    return async () => {
      const i = this.stops.indexOf(entry);
      if (i >= 0) this.stops.splice(i, 1);
      await entry.stop();
    };
  }

  /** Stops everything still running, the latest started first; a failure to stop one does not keep the others. */
  async stopAll(onError: (name: string, err: unknown) => void): Promise<void> {
    while (this.stops.length > 0) {
      const entry = this.stops.pop()!;
      try {
        await entry.stop();
      } catch (err) {
        onError(entry.name, err);
      }
    }
  }
}
