import { api } from '../api';
import { ErrorNote } from '../components/notice';
import { WorkflowLink } from '../components/workflow-link';
import { percent, when } from '../format';
import { useResource } from '../hooks';
import { useSession } from '../session';
import type { ProgressView, TaskSummary } from '../types';

// The GPU queue: the running tasks, then the waiting ones in the order the semaphore will grant them their slots.

const REFRESH_MS = 2000;
/** The queue as one page: a console is no place for thousands of rows. */
const LIMIT = 200;

interface QueueRow {
  task: TaskSummary;
  progress?: ProgressView;
}

/** Running first, then waiting by place in line (a place the API could not say goes last). */
const order = (row: QueueRow) =>
  row.task.status === 'running' ? 0 : (row.progress?.queuePosition ?? Number.MAX_SAFE_INTEGER);

export function QueuePage() {
  const session = useSession();
  const queue = useResource(
    async (signal) => {
      const { tasks } = await api<{ tasks: TaskSummary[] }>(`/tasks?status=waiting,running&limit=${LIMIT}`, {
        signal,
      });
      const rows = await Promise.all(
        tasks.map(async (task): Promise<QueueRow> => {
          try {
            return {
              task,
              progress: await api<ProgressView>(`/tasks/${encodeURIComponent(task.taskId)}/progress`, { signal }),
            };
          } catch {
            // The task may have ended since the list was read; it still shows, without progress.
            return { task };
          }
        }),
      );
      return rows.sort((a, b) => order(a) - order(b));
    },
    [],
    REFRESH_MS,
  );
  const rows = queue.data ?? [];
  const running = rows.filter((r) => r.task.status === 'running').length;
  return (
    <>
      <h1>Queue</h1>
      <p role="status">{queue.data ? `${running} running, ${rows.length - running} waiting` : 'Reading the queue…'}</p>
      <ErrorNote message={queue.error} />
      <table>
        <caption class="visually-hidden">Running and waiting tasks</caption>
        <thead>
          <tr>
            <th scope="col">Place</th>
            <th scope="col">Task</th>
            {session.role === 'admin' && <th scope="col">User</th>}
            <th scope="col">Model</th>
            <th scope="col">Phase</th>
            <th scope="col">Progress</th>
            <th scope="col">Since</th>
            <th scope="col">Workflow</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ task, progress }) => (
            <tr key={task.taskId} data-task-id={task.taskId}>
              <td>{task.status === 'running' ? 'running' : (progress?.queuePosition ?? '—')}</td>
              <th scope="row" class="task-id">
                {task.taskId}
              </th>
              {session.role === 'admin' && <td>{task.user}</td>}
              <td>{task.model}</td>
              <td>{progress?.phase ?? task.status}</td>
              <td>
                {progress && (
                  <>
                    <progress max={1} value={progress.progress} aria-label={`Progress of ${task.taskId}`} />{' '}
                    {percent(progress.progress)}
                  </>
                )}
              </td>
              <td>{when(task.startedAt ?? task.createdAt)}</td>
              <td>
                <WorkflowLink workflowId={task.taskId} label="Open" />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
