// The shapes of the API answers the console reads (the README documents them).

export type TaskStatus = 'waiting' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const TASK_STATUSES: TaskStatus[] = ['waiting', 'running', 'succeeded', 'failed', 'cancelled'];
export const isFinal = (s: string) => s === 'succeeded' || s === 'failed' || s === 'cancelled';

export interface ConsoleConfig {
  user: string;
  role: 'admin' | 'user';
  auth: 'keys' | 'off';
  temporalUiUrl: string;
  temporalNamespace: string;
}

/** A task as GET /tasks lists it. */
export interface TaskSummary {
  taskId: string;
  user: string;
  kind: string;
  model: string;
  status: TaskStatus;
  images: string[];
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  message?: string;
  retryOf?: string;
}

/** GET /tasks/{id}/result, and the `completed` event. */
export interface TaskResult {
  taskId: string;
  status: TaskStatus;
  images: string[];
  ossUrl: string[];
  /** A1111's info, a JSON string holding `infotexts`. */
  info: string | null;
  parameters: Record<string, unknown> | null;
  message?: string;
}

/** GET /tasks/{id}/progress. */
export interface ProgressView {
  taskId: string;
  status: TaskStatus;
  phase: string;
  progress: number;
  state: { sampling_step: number; sampling_steps: number };
  queuePosition?: number;
  currentImageUrl?: string;
}

export interface ModelView {
  type: string;
  name: string;
  ossPath: string;
  etag: string;
  status: string;
  registeredTime: string;
  lastModificationTime: string;
  message?: string;
  workflowId?: string;
}

/** GET /functions/{name}. */
export interface FunctionView {
  functionName: string;
  model: string;
  resources: Record<string, unknown>;
  runtime: {
    resources: Record<string, unknown>;
    limits: { maxInstances: number; keepAliveS: number; timeoutS?: number } | null;
    instances: { id: string; busy: boolean; startedAt: string }[];
  } | null;
  runtimeError?: string;
}
