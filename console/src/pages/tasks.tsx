import { useState } from 'preact/hooks';
import { api, messageOf } from '../api';
import { ErrorNote, StatusNote } from '../components/notice';
import { WorkflowLink } from '../components/workflow-link';
import { when } from '../format';
import { useResource } from '../hooks';
import { useSession } from '../session';
import { TASK_STATUSES, type TaskStatus, type TaskSummary } from '../types';

// Tasks, newest first, filtered by status, with cancel for an open one and retry for a failed or cancelled one.

const PAGE = 50;
const REFRESH_MS = 3000;

interface TaskPage {
  tasks: TaskSummary[];
  cursor?: string;
}

export function TasksPage() {
  const session = useSession();
  const [statuses, setStatuses] = useState<TaskStatus[]>([]);
  const [pages, setPages] = useState(1);
  const [note, setNote] = useState<string>();
  const [actionError, setActionError] = useState<string>();
  const filter = statuses.length > 0 ? `&status=${statuses.join(',')}` : '';
  const list = useResource(
    async (signal) => {
      // The pages shown so far are read again, so a refresh keeps what "Load more" added.
      const tasks: TaskSummary[] = [];
      let cursor: string | undefined;
      for (let n = 0; n < pages; n++) {
        const more = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
        const page = await api<TaskPage>(`/tasks?limit=${PAGE}${filter}${more}`, { signal });
        tasks.push(...page.tasks);
        cursor = page.cursor;
        if (!cursor) break;
      }
      return { tasks, cursor };
    },
    [filter, pages],
    REFRESH_MS,
  );

  const toggle = (status: TaskStatus, on: boolean) => {
    setPages(1);
    setStatuses((current) => TASK_STATUSES.filter((s) => (s === status ? on : current.includes(s))));
  };

  async function act(taskId: string, action: 'cancellation' | 'retry') {
    setActionError(undefined);
    try {
      const answer = await api<{ taskId: string; status: string }>(`/tasks/${encodeURIComponent(taskId)}/${action}`, {
        method: 'POST',
        headers: { 'Request-Type': 'async' },
      });
      setNote(action === 'retry' ? `Retried ${taskId} as ${answer.taskId}` : `Task ${taskId} is ${answer.status}`);
      list.reload();
    } catch (err) {
      setActionError(`${taskId}: ${messageOf(err)}`);
    }
  }

  const tasks = list.data?.tasks ?? [];
  return (
    <>
      <h1>Tasks</h1>
      <fieldset class="filters">
        <legend>Status</legend>
        {TASK_STATUSES.map((status) => (
          <label key={status}>
            <input
              type="checkbox"
              checked={statuses.includes(status)}
              onChange={(e) => toggle(status, e.currentTarget.checked)}
            />
            {status}
          </label>
        ))}
        <button type="button" onClick={list.reload}>
          Refresh
        </button>
      </fieldset>
      <StatusNote message={note} />
      <ErrorNote message={actionError ?? list.error} />
      <table class="tasks">
        <caption class="visually-hidden">Tasks, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Task</th>
            {session.role === 'admin' && <th scope="col">User</th>}
            <th scope="col">Kind</th>
            <th scope="col">Model</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
            <th scope="col">Finished</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((t) => (
            <tr key={t.taskId} data-task-id={t.taskId}>
              <th scope="row" class="task-id">
                {t.taskId}
                {t.retryOf && <span class="muted"> (retry of {t.retryOf})</span>}
              </th>
              {session.role === 'admin' && <td>{t.user}</td>}
              <td>{t.kind}</td>
              <td>{t.model}</td>
              <td>
                <span class={`status status-${t.status}`}>{t.status}</span>
                {t.message && <div class="muted message">{t.message}</div>}
              </td>
              <td>{when(t.createdAt)}</td>
              <td>{when(t.finishedAt)}</td>
              <td class="actions">
                {(t.status === 'waiting' || t.status === 'running') && (
                  <button type="button" aria-label={`Cancel ${t.taskId}`} onClick={() => act(t.taskId, 'cancellation')}>
                    Cancel
                  </button>
                )}
                {(t.status === 'failed' || t.status === 'cancelled') && (
                  <button type="button" aria-label={`Retry ${t.taskId}`} onClick={() => act(t.taskId, 'retry')}>
                    Retry
                  </button>
                )}
                <WorkflowLink workflowId={t.taskId} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.data && tasks.length === 0 && <p>No tasks.</p>}
      {list.data?.cursor && (
        <button type="button" onClick={() => setPages((n) => n + 1)}>
          Load more
        </button>
      )}
    </>
  );
}
