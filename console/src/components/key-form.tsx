import type { TargetedSubmitEvent } from 'preact';
import { useState } from 'preact/hooks';
import { storeKey } from '../key';
import { ErrorNote } from './notice';

/** Asks for the API key once; it is kept in this browser until "Forget key". */
export function KeyForm({ message, onKey }: { message?: string; onKey(): void }) {
  const [key, setKey] = useState('');
  const submit = (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    storeKey(key.trim());
    onKey();
  };
  return (
    <form class="key-form" onSubmit={submit}>
      <h1>Sign in</h1>
      <p>This deployment needs an API key. It is kept in this browser and sent only in request headers.</p>
      <ErrorNote message={message} />
      <div class="field">
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          required
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
        />
      </div>
      <button type="submit" class="primary">
        Use this key
      </button>
    </form>
  );
}
