import { useSession, workflowUrl } from '../session';

/** A link to a workflow in the Temporal Web UI, opened in a new tab. */
export function WorkflowLink({ workflowId, label = 'Workflow' }: { workflowId: string; label?: string }) {
  const session = useSession();
  return (
    <a href={workflowUrl(session, workflowId)} target="_blank" rel="noopener noreferrer">
      {label}
      <span class="visually-hidden"> of {workflowId} in the Temporal Web UI (new tab)</span>
    </a>
  );
}
