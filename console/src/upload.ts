import { ApiError, UNAUTHORIZED_EVENT } from './api';
import { authHeaders } from './key';
import type { ModelView } from './types';

// A model upload with progress: fetch() cannot report how much of a request body has been sent, XMLHttpRequest can.
// The multipart body is type, name, then the file last, as POST /models reads it (streamed, in order).

export interface Upload {
  done: Promise<ModelView>;
  abort(): void;
}

export function uploadModel(type: string, name: string, file: File, onProgress: (sent: number) => void): Upload {
  const form = new FormData();
  form.append('type', type);
  form.append('name', name);
  form.append('file', file, file.name);
  const xhr = new XMLHttpRequest();
  const done = new Promise<ModelView>((resolve, reject) => {
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let body: { message?: string } = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // A non-JSON answer keeps its status text as the message.
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body as ModelView);
      if (xhr.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
      reject(new ApiError(xhr.status, body.message ?? `${xhr.status} ${xhr.statusText}`));
    });
    xhr.addEventListener('error', () => reject(new Error('the upload failed: the connection was lost')));
    xhr.addEventListener('abort', () => reject(new Error('the upload was stopped')));
  });
  xhr.open('POST', '/models');
  for (const [header, value] of Object.entries(authHeaders())) xhr.setRequestHeader(header, value);
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.send(form);
  return { done, abort: () => xhr.abort() };
}
