// V8 CPU profiles of every Node process of a run, over a window you choose: preload it in all of them with
//   CPU_PROFILE_DIR=/tmp/prof NODE_OPTIONS="--import $PWD/scripts/cpu-profile.mjs" node dist/cli/main.js bench …
// (NODE_OPTIONS reaches every process the run starts; --cpu-prof is not allowed there). Each process starts its
// profiler once the file START exists in that directory, and writes <role>-<pid>.cpuprofile there once STOP exists
// (checked every 200 ms), so that the window can be the scenario's and not the processes' start. Open the files in
// Chrome's DevTools (Performance) or any .cpuprofile viewer. Write STOP before the run stops its processes.
import { existsSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.CPU_PROFILE_DIR;
/** The sdflow role (`worker`, `agent`, …) or the script's first argument. */
const role = process.argv.slice(2).find((arg) => !arg.startsWith('-')) ?? 'node';
/** Microseconds between samples: coarser than V8's default, so that profiling eight agents stays affordable. */
const SAMPLING_US = 1000;

if (dir && isMainThread) {
  let session;
  let done = false;
  const check = setInterval(() => {
    if (done) return;
    if (!session && existsSync(join(dir, 'START'))) {
      session = new Session();
      session.connect();
      session.post('Profiler.enable');
      session.post('Profiler.setSamplingInterval', { interval: SAMPLING_US });
      session.post('Profiler.start');
    } else if (session && existsSync(join(dir, 'STOP'))) {
      done = true;
      clearInterval(check);
      session.post('Profiler.stop', (err, result) => {
        if (err) process.stderr.write(`cpu-profile: ${err.message}\n`);
        else writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
        session.disconnect();
      });
    }
  }, 200);
  check.unref();
}
