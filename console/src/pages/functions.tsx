import { api, messageOf } from '../api';
import { ErrorNote } from '../components/notice';
import { when } from '../format';
import { useResource } from '../hooks';
import { useSession } from '../session';
import type { FunctionView } from '../types';

// The GPU functions, one per checkpoint: the WebUI settings every instance starts with, and for an admin the
// resources asked for, the limits in effect and the instances running.

const REFRESH_MS = 3000;

interface FunctionDetails {
  functionName: string;
  model: string;
  view?: FunctionView;
  options?: Record<string, unknown>;
  error?: string;
}

const json = (value: unknown) => JSON.stringify(value, null, 2);

function FunctionSection({ fn }: { fn: FunctionDetails }) {
  const runtime = fn.view?.runtime;
  const titleId = `fn-${fn.functionName}`;
  return (
    <section class="function" aria-labelledby={titleId}>
      <h2 id={titleId}>
        {fn.model} <span class="muted task-id">{fn.functionName}</span>
      </h2>
      <ErrorNote message={fn.error ?? fn.view?.runtimeError} />
      <div class="columns">
        <div>
          {fn.view && (
            <>
              <h3>Resources</h3>
              <pre>{json(fn.view.resources)}</pre>
              {runtime?.limits && (
                <p>
                  At most {runtime.limits.maxInstances} instances, kept {runtime.limits.keepAliveS} s when idle
                  {runtime.limits.timeoutS !== undefined && `, ${runtime.limits.timeoutS} s per request`}.
                </p>
              )}
            </>
          )}
          <h3>WebUI settings</h3>
          <pre>{json(fn.options ?? {})}</pre>
        </div>
        {fn.view && (
          <div>
            <h3>Instances</h3>
            {!runtime && <p>The runtime has no such function yet: its first request creates it.</p>}
            {runtime && runtime.instances.length === 0 && <p>No instance is running.</p>}
            {runtime && runtime.instances.length > 0 && (
              <table>
                <caption class="visually-hidden">Instances of {fn.functionName}</caption>
                <thead>
                  <tr>
                    <th scope="col">Instance</th>
                    <th scope="col">State</th>
                    <th scope="col">Started</th>
                  </tr>
                </thead>
                <tbody>
                  {runtime.instances.map((i) => (
                    <tr key={i.id}>
                      <th scope="row">{i.id}</th>
                      <td>{i.busy ? 'busy' : 'idle'}</td>
                      <td>{when(i.startedAt)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </div>
        )}
      </div>
    </section>
  );
}

export function FunctionsPage() {
  const admin = useSession().role === 'admin';
  const functions = useResource(
    async (signal) => {
      const list = await api<{ functions: { functionName: string; model: string }[] }>('/list/sdapi/functions', {
        signal,
      });
      return Promise.all(
        list.functions.map(async (fn): Promise<FunctionDetails> => {
          const path = `/functions/${encodeURIComponent(fn.functionName)}`;
          try {
            // How a function runs is an admin's to see; its settings, anyone's.
            const [view, settings] = await Promise.all([
              admin ? api<FunctionView>(path, { signal }) : undefined,
              api<{ options: Record<string, unknown> }>(`${path}/options`, { signal }),
            ]);
            return { ...fn, view, options: settings.options };
          } catch (err) {
            return { ...fn, error: messageOf(err) };
          }
        }),
      );
    },
    [admin],
    REFRESH_MS,
  );
  return (
    <>
      <h1>Functions</h1>
      <ErrorNote message={functions.error} />
      {functions.data?.length === 0 && <p>No function yet: a checkpoint's first request creates its function.</p>}
      {functions.data?.map((fn) => (
        <FunctionSection key={fn.functionName} fn={fn} />
      ))}
    </>
  );
}
