import type { TaskUpdate } from '../follow-task';
import { ordinal, percent } from '../format';
import { isFinal } from '../types';
import { ErrorNote } from './notice';
import { WorkflowLink } from './workflow-link';

// The task the prompt form started: where it stands, its progress and the preview as it forms.

export interface Run {
  taskId: string;
  update: TaskUpdate;
  error?: string;
}

function stage(u: TaskUpdate): string {
  switch (u.phase) {
    case 'queued':
      return u.queuePosition ? `Waiting for a GPU slot: ${ordinal(u.queuePosition)} in line` : 'Waiting for a GPU slot';
    case 'starting':
      return u.coldStart ? 'Starting an instance (cold start)' : 'Starting';
    case 'sampling':
      return u.step !== undefined && u.steps ? `Sampling: step ${u.step} of ${u.steps}` : 'Sampling';
    case 'uploading':
      return 'Saving the images';
    default:
      return u.status ?? 'Submitted';
  }
}

export function RunStatus({ run, onCancel }: { run: Run; onCancel(): void }) {
  const { update } = run;
  const finished = update.status !== undefined && isFinal(update.status);
  const progress = update.progress ?? 0;
  return (
    <section class="run" aria-labelledby="run-title">
      <h2 id="run-title">
        Task <span class="task-id">{run.taskId}</span>
      </h2>
      <p aria-live="polite">{finished ? `Task ${update.status}` : stage(update)}</p>
      <div class="progress-line">
        <progress id="run-progress" max={1} value={progress} aria-label="Progress" />
        <output for="run-progress">{percent(progress)}</output>
      </div>
      <ErrorNote message={run.error} />
      <div class="actions">
        {!finished && (
          <button type="button" onClick={onCancel}>
            Cancel task
          </button>
        )}
        <WorkflowLink workflowId={run.taskId} />
      </div>
      {!finished && update.previewUrl && <img class="preview" src={update.previewUrl} alt="Live preview" />}
    </section>
  );
}
