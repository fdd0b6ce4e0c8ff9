import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, api, messageOf, UNAUTHORIZED_EVENT } from './api';
import { KeyForm } from './components/key-form';
import { ErrorNote } from './components/notice';
import { useHashPage } from './hooks';
import { forgetKey, storedKey } from './key';
import { FunctionsPage } from './pages/functions';
import { GeneratePage } from './pages/generate';
import { ModelsPage } from './pages/models';
import { QueuePage } from './pages/queue';
import { TasksPage } from './pages/tasks';
import { SessionContext } from './session';
import type { ConsoleConfig } from './types';

// The shell: it finds out who the caller is (asking for a key when the API wants one), then shows one page at a
// time, chosen by the location hash so that each page has a link.

const PAGES = [
  { name: 'generate', title: 'Generate', Page: GeneratePage },
  { name: 'tasks', title: 'Tasks', Page: TasksPage },
  { name: 'queue', title: 'Queue', Page: QueuePage },
  { name: 'models', title: 'Models', Page: ModelsPage },
  { name: 'functions', title: 'Functions', Page: FunctionsPage },
];

type Session =
  | { state: 'loading' }
  | { state: 'needs-key'; message?: string }
  | { state: 'error'; message: string }
  | { state: 'ready'; config: ConsoleConfig };

export function App() {
  const [session, setSession] = useState<Session>({ state: 'loading' });
  const page = useHashPage();
  const current = PAGES.find((p) => p.name === page) ?? PAGES[0];

  const signIn = useCallback(async () => {
    try {
      setSession({ state: 'ready', config: await api<ConsoleConfig>('/console/config.json') });
    } catch (err) {
      // A 401 has already asked for a key (below).
      if (!(err instanceof ApiError && err.status === 401)) setSession({ state: 'error', message: messageOf(err) });
    }
  }, []);

  useEffect(() => {
    // Any 401, at sign-in or later, means no key or a refused one: ask for one.
    const onUnauthorized = () => {
      const refused = storedKey() !== null;
      forgetKey();
      setSession({ state: 'needs-key', message: refused ? 'The API refused that key.' : undefined });
    };
    window.addEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
    void signIn();
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
  }, [signIn]);

  useEffect(() => {
    document.title = `${current.title} · sdflow console`;
  }, [current]);

  if (session.state === 'loading') return <p class="loading">Connecting…</p>;
  if (session.state === 'needs-key') {
    return (
      <main id="main" class="narrow">
        <KeyForm message={session.message} onKey={signIn} />
      </main>
    );
  }
  if (session.state === 'error') {
    return (
      <main id="main" class="narrow">
        <h1>sdflow console</h1>
        <ErrorNote message={session.message} />
        <button type="button" onClick={signIn}>
          Try again
        </button>
      </main>
    );
  }
  const { config } = session;
  const signOut = () => {
    forgetKey();
    setSession({ state: 'needs-key' });
  };
  return (
    <SessionContext.Provider value={config}>
      <header>
        <span class="brand">sdflow</span>
        <nav aria-label="Console">
          <ul>
            {PAGES.map((p) => (
              <li key={p.name}>
                <a href={`#/${p.name}`} aria-current={p === current ? 'page' : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          {config.user} ({config.role})
          {config.auth === 'keys' && (
            <button type="button" onClick={signOut}>
              Forget key
            </button>
          )}
        </span>
      </header>
      <main id="main">
        <current.Page />
      </main>
    </SessionContext.Provider>
  );
}
