import { useEffect, useState } from 'preact/hooks';
import { api, messageOf } from '../api';
import { infotexts } from '../format';
import type { TaskResult, TaskSummary } from '../types';
import { ErrorNote } from './notice';

// Finished images with their infotext: the caller's latest succeeded generations, then each new one on top.

const RECENT = 8;

export interface GalleryImage {
  url: string;
  infotext: string;
}

export interface GalleryItem {
  taskId: string;
  images: GalleryImage[];
}

export const galleryItemOf = (result: TaskResult): GalleryItem => {
  const texts = infotexts(result.info, result.ossUrl.length);
  return { taskId: result.taskId, images: result.ossUrl.map((url, i) => ({ url, infotext: texts[i] })) };
};

/** The gallery's items: the recent ones from the API, and `add` for one that has just finished. */
export function useGallery() {
  const [items, setItems] = useState<GalleryItem[]>([]);
  const [error, setError] = useState<string>();
  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    (async () => {
      const { tasks } = await api<{ tasks: TaskSummary[] }>(`/tasks?status=succeeded&limit=${RECENT}`, { signal });
      const generations = tasks.filter((t) => t.kind === 'txt2img' || t.kind === 'img2img');
      const results = await Promise.all(
        generations.map((t) => api<TaskResult>(`/tasks/${encodeURIComponent(t.taskId)}/result`, { signal })),
      );
      // Items added while the recent ones loaded stay on top.
      setItems((added) => [
        ...added,
        ...results.map(galleryItemOf).filter((item) => !added.some((a) => a.taskId === item.taskId)),
      ]);
    })().catch((err) => {
      if (!signal.aborted) setError(messageOf(err));
    });
    return () => controller.abort();
  }, []);
  const add = (result: TaskResult) =>
    setItems((current) => [galleryItemOf(result), ...current.filter((i) => i.taskId !== result.taskId)]);
  return { items, error, add };
}

export function Gallery({ items, error }: { items: GalleryItem[]; error?: string }) {
  return (
    <section aria-labelledby="gallery-title">
      <h2 id="gallery-title">Gallery</h2>
      <ErrorNote message={error} />
      {items.length === 0 && !error && <p>No images yet.</p>}
      <ul class="gallery">
        {items.flatMap((item) =>
          item.images.map((image, n) => (
            <li key={`${item.taskId}-${n}`}>
              <figure>
                <a href={image.url} target="_blank" rel="noopener noreferrer">
                  <img src={image.url} alt={image.infotext.split('\n')[0] || `image ${n + 1} of ${item.taskId}`} />
                </a>
                <figcaption>
                  <span class="task-id">{item.taskId}</span>
                  <pre class="infotext">{image.infotext}</pre>
                </figcaption>
              </figure>
            </li>
          )),
        )}
      </ul>
    </section>
  );
}
