import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { ConsoleConfig } from './types';

// Who the caller is and where the Temporal Web UI is, as GET /console/config.json told the page.

export const SessionContext = createContext<ConsoleConfig | null>(null);

export function useSession(): ConsoleConfig {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside the signed-in console');
  return session;
}

/** A workflow's page in the Temporal Web UI; a task's workflow id is its taskId. */
export const workflowUrl = (session: ConsoleConfig, workflowId: string) =>
  `${session.temporalUiUrl}/namespaces/${encodeURIComponent(session.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}`;
