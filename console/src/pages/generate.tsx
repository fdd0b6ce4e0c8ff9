import type { TargetedSubmitEvent } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, messageOf } from '../api';
import { Gallery, useGallery } from '../components/gallery';
import { ErrorNote } from '../components/notice';
import { type Run, RunStatus } from '../components/run-status';
import { followTask, mergeUpdate } from '../follow-task';
import { useResource } from '../hooks';
import type { ModelView } from '../types';

// Trying a prompt: the form (checkpoint and the common parameters), the task it starts followed live, and the
// gallery of results.

interface PromptForm {
  model: string;
  prompt: string;
  negativePrompt: string;
  steps: number;
  width: number;
  height: number;
  seed: number;
  batchSize: number;
}

const DEFAULTS: PromptForm = {
  model: '',
  prompt: '',
  negativePrompt: '',
  steps: 20,
  width: 512,
  height: 512,
  seed: -1,
  batchSize: 1,
};

function NumberField(props: {
  id: string;
  label: string;
  value: number;
  min: number;
  max?: number;
  step?: number;
  onInput(value: number): void;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        type="number"
        required
        min={props.min}
        max={props.max}
        step={props.step ?? 1}
        value={props.value}
        onInput={(e) => props.onInput(e.currentTarget.valueAsNumber)}
      />
    </div>
  );
}

export function GeneratePage() {
  const checkpoints = useResource(
    (signal) => api<ModelView[]>('/models?type=stableDiffusion&status=loaded', { signal }),
    [],
  );
  const [form, setForm] = useState(DEFAULTS);
  const [run, setRun] = useState<Run>();
  const [submitError, setSubmitError] = useState<string>();
  const [submitting, setSubmitting] = useState(false);
  const following = useRef<AbortController | null>(null);
  const gallery = useGallery();
  const set = (change: Partial<PromptForm>) => setForm((f) => ({ ...f, ...change }));

  const names = checkpoints.data?.map((m) => m.name) ?? [];
  // The first checkpoint is chosen until the reader picks one.
  const model = names.includes(form.model) ? form.model : (names[0] ?? '');

  useEffect(() => () => following.current?.abort(), []);

  function follow(taskId: string) {
    following.current?.abort();
    const controller = new AbortController();
    following.current = controller;
    const update = (change: (r: Run) => Run) => setRun((r) => (r?.taskId === taskId ? change(r) : r));
    setRun({ taskId, update: { status: 'waiting', progress: 0 } });
    followTask(taskId, (u) => update((r) => ({ ...r, update: mergeUpdate(r.update, u) })), controller.signal)
      .then((result) => {
        const progress = result.status === 'succeeded' ? 1 : undefined;
        update((r) => ({
          ...r,
          update: mergeUpdate(r.update, { status: result.status, phase: 'finished', progress }),
          error: result.message,
        }));
        if (result.status === 'succeeded') gallery.add(result);
      })
      .catch((err) => {
        if (!controller.signal.aborted) update((r) => ({ ...r, error: messageOf(err) }));
      });
  }

  async function submit(e: TargetedSubmitEvent<HTMLFormElement>) {
    e.preventDefault();
    setSubmitError(undefined);
    setSubmitting(true);
    try {
      const accepted = await api<{ taskId: string }>('/txt2img', {
        method: 'POST',
        headers: { 'Request-Type': 'async' },
        body: {
          stable_diffusion_model: model,
          prompt: form.prompt,
          negative_prompt: form.negativePrompt,
          steps: form.steps,
          width: form.width,
          height: form.height,
          seed: form.seed,
          batch_size: form.batchSize,
        },
      });
      follow(accepted.taskId);
    } catch (err) {
      setSubmitError(messageOf(err));
    } finally {
      setSubmitting(false);
    }
  }

  async function cancel(taskId: string) {
    try {
      await api(`/tasks/${encodeURIComponent(taskId)}/cancellation`, { method: 'POST' });
    } catch (err) {
      setRun((r) => (r?.taskId === taskId ? { ...r, error: messageOf(err) } : r));
    }
  }

  return (
    <>
      <h1>Generate</h1>
      <form class="prompt-form" onSubmit={submit}>
        <div class="field">
          <label for="checkpoint">Checkpoint</label>
          <select id="checkpoint" required value={model} onChange={(e) => set({ model: e.currentTarget.value })}>
            {names.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </div>
        <ErrorNote message={checkpoints.error} />
        {checkpoints.data && names.length === 0 && <p>No checkpoint is loaded yet.</p>}
        <div class="field wide">
          <label for="prompt">Prompt</label>
          <textarea
            id="prompt"
            rows={3}
            required
            value={form.prompt}
            onInput={(e) => set({ prompt: e.currentTarget.value })}
          />
        </div>
        <div class="field wide">
          <label for="negative-prompt">Negative prompt</label>
          <textarea
            id="negative-prompt"
            rows={2}
            value={form.negativePrompt}
            onInput={(e) => set({ negativePrompt: e.currentTarget.value })}
          />
        </div>
        <div class="row">
          <NumberField
            id="steps"
            label="Steps"
            min={1}
            max={500}
            value={form.steps}
            onInput={(steps) => set({ steps })}
          />
          <NumberField
            id="width"
            label="Width"
            min={64}
            step={8}
            value={form.width}
            onInput={(width) => set({ width })}
          />
          <NumberField
            id="height"
            label="Height"
            min={64}
            step={8}
            value={form.height}
            onInput={(height) => set({ height })}
          />
          <NumberField
            id="seed"
            label="Seed (-1: random)"
            min={-1}
            value={form.seed}
            onInput={(seed) => set({ seed })}
          />
          <NumberField
            id="batch-size"
            label="Batch size"
            min={1}
            max={16}
            value={form.batchSize}
            onInput={(batchSize) => set({ batchSize })}
          />
        </div>
        <button type="submit" class="primary" disabled={submitting || !model}>
          Generate
        </button>
        <ErrorNote message={submitError} />
      </form>
      {run && <RunStatus run={run} onCancel={() => cancel(run.taskId)} />}
      <Gallery items={gallery.items} error={gallery.error} />
    </>
  );
}
