import { DefaultLogger, Runtime } from '@temporalio/worker';

// In-process workers (semaphore and replay tests) log through Temporal's runtime, once per test process: warnings
// and errors only, so the run's output stays readable.
Runtime.install({ logger: new DefaultLogger('WARN') });
