import type { Command } from 'commander';
import { followTask } from './follow.js';
import { action, clientCommand, clientFor, type GlobalOptions, usageExit } from './options.js';
import { fields, printJson, printLines } from './output.js';
import { exitCodeFor, reportResult } from './results.js';

// sdflow tasks result | progress | cancel | wait <taskId>

interface ResultOptions extends GlobalOptions {
  out?: string;
}

export function registerTaskCommands(program: Command): Command {
  const tasks = usageExit(program.command('tasks').description('read, follow and cancel tasks'));

  clientCommand(tasks.command('result').description("a task's status, images, signed URLs and seeds"))
    .argument('<taskId>')
    .option('--out <dir>', 'also download the images of a succeeded task into this directory')
    .action(
      action(async (taskId: string, o: ResultOptions) => {
        const client = clientFor(o);
        await reportResult(client, await client.result(taskId), { json: o.json, out: o.out });
        return 0;
      }),
    );

  clientCommand(tasks.command('progress').description("a task's status, phase, sampling step and ETA"))
    .argument('<taskId>')
    .action(
      action(async (taskId: string, o: GlobalOptions) => {
        const p = await clientFor(o).progress(taskId);
        if (o.json) {
          printJson(p);
          return 0;
        }
        const s = p.state;
        printLines(
          fields([
            ['taskId', p.taskId],
            ['status', p.status],
            ['phase', p.phase],
            ['progress', `${(p.progress * 100).toFixed(1)}%`],
            ['step', s && s.sampling_steps > 0 ? `${s.sampling_step}/${s.sampling_steps}` : undefined],
            ['job', s && s.job_count > 1 ? `${Math.min(s.job_no + 1, s.job_count)}/${s.job_count}` : undefined],
            ['eta', p.etaRelative > 0 ? `${p.etaRelative.toFixed(1)} s` : undefined],
            ['queue', p.queuePosition !== undefined ? `#${p.queuePosition}` : undefined],
          ]),
        );
        return 0;
      }),
    );

  clientCommand(tasks.command('cancel').description('cancel a waiting or running task'))
    .argument('<taskId>')
    .action(
      action(async (taskId: string, o: GlobalOptions) => {
        const answer = await clientFor(o).cancel(taskId);
        if (o.json) printJson(answer);
        else
          printLines(
            fields([
              ['taskId', answer.taskId],
              ['status', answer.status],
            ]),
          );
        return 0;
      }),
    );

  clientCommand(
    tasks
      .command('wait')
      .description('follow a task with a progress bar until it ends (Ctrl-C stops waiting; the task goes on)'),
  )
    .argument('<taskId>')
    .option('--out <dir>', 'download the images of a succeeded task into this directory')
    .action(
      action(async (taskId: string, o: ResultOptions) => {
        const client = clientFor(o);
        const started = performance.now();
        const { result } = await followTask(client, taskId, { json: o.json === true, interruptCancels: false });
        await reportResult(client, result, { json: o.json, out: o.out, elapsedMs: performance.now() - started });
        return exitCodeFor(result);
      }),
    );

  return tasks;
}
