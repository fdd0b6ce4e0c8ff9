import type { TargetedSubmitEvent } from 'preact';
import { useState } from 'preact/hooks';
import { api, messageOf } from '../api';
import { ErrorNote, StatusNote } from '../components/notice';
import { WorkflowLink } from '../components/workflow-link';
import { percent, when } from '../format';
import { useResource } from '../hooks';
import { useSession } from '../session';
import type { ModelView } from '../types';
import { uploadModel } from '../upload';

// The model registry: upload a model with a progress bar, watch its registration load it, delete one.

const MODEL_TYPES = ['stableDiffusion', 'sdVae', 'lora', 'controlNet'];
const REFRESH_MS = 2000;

interface UploadState {
  name: string;
  sent: number;
  workflowId?: string;
  error?: string;
}

function UploadForm({ onUploaded }: { onUploaded(): void }) {
  const [type, setType] = useState('lora');
  const [name, setName] = useState('');
  const [file, setFile] = useState<File>();
  const [upload, setUpload] = useState<UploadState>();

  function submit(e: TargetedSubmitEvent<HTMLFormElement>) {
    e.preventDefault();
    if (!file) return;
    const modelName = name || file.name;
    setUpload({ name: modelName, sent: 0 });
    uploadModel(type, modelName, file, (sent) => setUpload((u) => u && { ...u, sent }))
      .done.then((model) => {
        setUpload((u) => u && { ...u, sent: 1, workflowId: model.workflowId });
        onUploaded();
      })
      .catch((err) => setUpload((u) => u && { ...u, error: messageOf(err) }));
  }

  const busy = upload !== undefined && upload.sent < 1 && !upload.error;
  return (
    <form class="upload" onSubmit={submit} aria-labelledby="upload-title">
      <h2 id="upload-title">Upload a model</h2>
      <div class="row">
        <div class="field">
          <label for="model-type">Type</label>
          <select id="model-type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
            {MODEL_TYPES.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="model-name">Name</label>
          <input
            id="model-name"
            value={name}
            placeholder={file?.name ?? 'the file name'}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="model-file">File</label>
          <input id="model-file" type="file" required onChange={(e) => setFile(e.currentTarget.files?.[0])} />
        </div>
      </div>
      <button type="submit" class="primary" disabled={busy || !file}>
        Upload
      </button>
      {upload && (
        <div class="progress-line">
          <progress id="upload-progress" max={1} value={upload.sent} aria-label={`Upload of ${upload.name}`} />
          <output for="upload-progress">{percent(upload.sent)}</output>
          {upload.workflowId && (
            <span>
              uploaded; registering <WorkflowLink workflowId={upload.workflowId} label="(workflow)" />
            </span>
          )}
        </div>
      )}
      <ErrorNote message={upload?.error} />
    </form>
  );
}

export function ModelsPage() {
  const session = useSession();
  const [type, setType] = useState('');
  const [note, setNote] = useState<string>();
  const [deleteError, setDeleteError] = useState<string>();
  const models = useResource(
    (signal) => api<ModelView[]>(type ? `/models?type=${type}` : '/models', { signal }),
    [type],
    REFRESH_MS,
  );

  async function remove(name: string) {
    if (!window.confirm(`Delete the model ${name}? New requests naming it will get 404.`)) return;
    setDeleteError(undefined);
    try {
      await api(`/models/${encodeURIComponent(name)}`, { method: 'DELETE' });
      setNote(`Deleted ${name}`);
      models.reload();
    } catch (err) {
      setDeleteError(`${name}: ${messageOf(err)}`);
    }
  }

  const admin = session.role === 'admin';
  return (
    <>
      <h1>Models</h1>
      {admin && <UploadForm onUploaded={models.reload} />}
      <h2>Registry</h2>
      <div class="field">
        <label for="type-filter">Type</label>
        <select id="type-filter" value={type} onChange={(e) => setType(e.currentTarget.value)}>
          <option value="">all</option>
          {MODEL_TYPES.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </div>
      <StatusNote message={note} />
      <ErrorNote message={deleteError ?? models.error} />
      <table>
        <caption class="visually-hidden">Registered models</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">Status</th>
            <th scope="col">Hash</th>
            <th scope="col">Changed</th>
            {admin && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {(models.data ?? []).map((m) => (
            <tr key={m.name} data-model={m.name}>
              <th scope="row">{m.name}</th>
              <td>{m.type}</td>
              <td>
                <span class={`status status-${m.status}`}>{m.status}</span>
                {m.message && <div class="muted message">{m.message}</div>}
              </td>
              <td class="hash">{m.etag.slice(0, 10)}</td>
              <td>{when(m.lastModificationTime)}</td>
              {admin && (
                <td class="actions">
                  <button type="button" aria-label={`Delete ${m.name}`} onClick={() => remove(m.name)}>
                    Delete
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
