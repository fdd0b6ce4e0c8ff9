// Messages the page shows: errors are announced at once, other news when the reader is idle.

export function ErrorNote({ message }: { message?: string }) {
  if (!message) return null;
  return (
    <p class="error" role="alert">
      {message}
    </p>
  );
}

export function StatusNote({ message }: { message?: string }) {
  return (
    <p class="note" role="status">
      {message}
    </p>
  );
}
