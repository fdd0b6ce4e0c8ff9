// The API key, entered once and kept in this browser. It travels only in the Authorization header, never in a URL.

const STORAGE_KEY = 'sdflow.apiKey';

export const storedKey = (): string | null => localStorage.getItem(STORAGE_KEY);

export const storeKey = (key: string) => localStorage.setItem(STORAGE_KEY, key);

export const forgetKey = () => localStorage.removeItem(STORAGE_KEY);

/** The headers that authenticate a request: none when no key is stored (loopback with auth off). */
export function authHeaders(): Record<string, string> {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}
