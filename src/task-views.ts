import type { ObjectStore } from './platform/object-store/port.js';
import type { TaskRecord } from './records.js';
import type { ProgressSnapshot } from './types.js';

// How a task is shown, with links signed at the moment it is shown: by the API (`/result`, `/progress`, the event
// stream) and in webhook bodies, which are built afresh at each delivery attempt so a late one never carries an
// expired link.

/** `GET /tasks/{id}/result`: the task's record and signed links to its images. */
export async function taskResultView(task: TaskRecord, store: ObjectStore, urlTtlS: number) {
  return {
    taskId: task.taskId,
    status: task.status,
    images: task.images,
    ossUrl: await Promise.all(task.images.map((key) => store.signedUrl(key, urlTtlS))),
    info: task.info ?? null,
    parameters: task.parameters ?? null,
    ...(task.message ? { message: task.message } : {}),
    ...(task.errorKind ? { errorKind: task.errorKind } : {}),
    ...(task.retryOf ? { retryOf: task.retryOf } : {}),
    ...(task.cost ? { cost: task.cost } : {}),
  };
}

/** `GET /tasks/{id}/progress` of a running task: its progress, and a signed link to its live preview if it has one. */
export async function runningProgressView(
  taskId: string,
  snapshot: ProgressSnapshot,
  store: ObjectStore,
  urlTtlS: number,
) {
  if (!snapshot.currentImage) return { taskId, status: 'running' as const, ...snapshot, currentImage: null };
  const currentImageUrl = await store.signedUrl(snapshot.currentImage, urlTtlS);
  return { taskId, status: 'running' as const, ...snapshot, currentImageUrl };
}
