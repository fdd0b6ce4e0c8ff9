// A background loop a worker runs beside its Temporal work (warm-instance reports, pre-warm on bursts): one tick
// every period, never two at once, a failed tick logged and tried again next period.

/**
 * Runs `tick` every `periodS` seconds (0: never), skipping a period while the previous tick still runs. Errors go to
 * `onError`. Returns a stop function. The timer does not keep the process alive.
 */
export function everyPeriod(periodS: number, tick: () => Promise<void>, onError: (err: unknown) => void): () => void {
  if (periodS <= 0) return () => undefined;
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      await tick();
    } catch (err) {
      onError(err);
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void run(), periodS * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
