import type { Command } from 'commander';
import { followTask } from './follow.js';
import { printOrFollow } from './generate.js';
import { action, clientCommand, clientFor, type GlobalOptions, parsePositiveInteger, usageExit } from './options.js';
import { fields, printJson, printLines, table } from './output.js';
import { exitCodeFor, reportResult } from './results.js';

// sdflow tasks list, and sdflow tasks result | progress | cancel | wait | retry <taskId>

interface ResultOptions extends GlobalOptions {
  out?: string;
}

interface ListOptions extends GlobalOptions {
  status?: string;
  user?: string;
  limit?: number;
  cursor?: string;
}

interface RetryOptions extends ResultOptions {
  async?: boolean;
  taskId?: string;
}

export function registerTaskCommands(program: Command): Command {
  const tasks = usageExit(program.command('tasks').description('list, read, follow, cancel and retry tasks'));

  clientCommand(tasks.command('list').description('your tasks, newest first (an admin sees every user’s)'))
    .option('--status <list>', 'only these statuses, comma-separated: waiting, running, succeeded, failed, cancelled')
    .option('--user <user>', 'only this user’s tasks (admin)')
    .option('--limit <n>', 'at most this many (1..1000; default 100)', parsePositiveInteger)
    .option('--cursor <cursor>', 'the next page, from the cursor an earlier list printed')
    .action(
      action(async (o: ListOptions) => {
        const page = await clientFor(o).tasks({ status: o.status, user: o.user, limit: o.limit, cursor: o.cursor });
        if (o.json) printJson(page);
        else if (page.tasks.length === 0) printLines('no tasks');
        else {
          printLines(
            table(
              ['TASK', 'STATUS', 'KIND', 'MODEL', 'USER', 'CREATED', 'MESSAGE'],
              page.tasks.map((t) => [
                t.taskId,
                t.status,
                t.kind,
                t.model,
                t.user,
                t.createdAt,
                t.retryOf ? `retry of ${t.retryOf}${t.message ? `; ${t.message}` : ''}` : (t.message ?? ''),
              ]),
            ),
          );
          if (page.cursor) {
            // The next page keeps this one's filters.
            const filters = [
              o.status ? ` --status ${o.status}` : '',
              o.user ? ` --user ${o.user}` : '',
              o.limit ? ` --limit ${o.limit}` : '',
            ].join('');
            printLines(`more: sdflow tasks list${filters} --cursor ${page.cursor}`);
          }
        }
        return 0;
      }),
    );

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

  clientCommand(
    tasks
      .command('retry')
      .description('run a failed or cancelled task again as a new task, and follow it (Ctrl-C cancels the new one)'),
  )
    .argument('<taskId>', 'the failed or cancelled task')
    .option('--async', 'print the new taskId at once instead of following it')
    .option('--task-id <id>', 'choose the new task’s id')
    .option('--out <dir>', 'download the images of the new task into this directory')
    .action(
      action(async (taskId: string, o: RetryOptions) => {
        const client = clientFor(o);
        const started = performance.now();
        return printOrFollow(client, await client.retry(taskId, { taskId: o.taskId }), o, started);
      }),
    );

  return tasks;
}
