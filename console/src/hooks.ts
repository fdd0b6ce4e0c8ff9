import { useEffect, useState } from 'preact/hooks';
import { messageOf } from './api';

export interface Resource<T> {
  data?: T;
  error?: string;
  loading: boolean;
  reload(): void;
}

/**
 * Data from the API, loaded when `deps` change and, with `refreshMs`, again that long after each load ends (never
 * two loads at once). An error keeps the last data shown.
 */
export function useResource<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
  refreshMs?: number,
): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: string; loading: boolean }>({ loading: true });
  const [reloads, setReloads] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    let timer: number | undefined;
    const run = async () => {
      try {
        const data = await load(controller.signal);
        if (!controller.signal.aborted) setState({ data, loading: false });
      } catch (err) {
        if (!controller.signal.aborted) setState((s) => ({ ...s, error: messageOf(err), loading: false }));
      }
      if (refreshMs !== undefined && !controller.signal.aborted) timer = window.setTimeout(run, refreshMs);
    };
    void run();
    return () => {
      controller.abort();
      window.clearTimeout(timer);
    };
  }, [...deps, reloads, refreshMs]);
  return { ...state, reload: () => setReloads((n) => n + 1) };
}

const hashPage = () => window.location.hash.replace(/^#\/?/, '');

/** The location hash's page name (`#/tasks` → `tasks`), following navigation. */
export function useHashPage(): string {
  const [page, setPage] = useState(hashPage);
  useEffect(() => {
    const onChange = () => setPage(hashPage());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return page;
}
