// A Server-Sent Events reader for the tests, written from the WHATWG rules rather than shared with the CLI's: lines
// `field: value`, an empty line ends an event, a line starting with `:` is a comment, `data` lines join with newlines.

export interface SseEvent {
  id?: string;
  event: string;
  data: any;
}

export interface SseStream {
  status: number;
  /** The events, as they arrive, until the server ends the stream or `close()` is called. */
  events: AsyncGenerator<SseEvent>;
  /** Comments received so far (heartbeats). */
  comments: string[];
  close(): void;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const comments: string[] = [];
  async function* events(): AsyncGenerator<SseEvent> {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffered = '';
    let current: { id?: string; event?: string; data: string[] } = { data: [] };
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(chunk, { stream: true });
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline).replace(/\r$/, '');
          buffered = buffered.slice(newline + 1);
          newline = buffered.indexOf('\n');
          if (line === '') {
            if (current.data.length > 0) {
              yield { id: current.id, event: current.event ?? 'message', data: JSON.parse(current.data.join('\n')) };
            }
            current = { data: [] };
          } else if (line.startsWith(':')) {
            comments.push(line.slice(1).trim());
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') current.data.push(value);
            else if (field === 'id') current.id = value;
            else if (field === 'event') current.event = value;
          }
        }
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    }
  }
  return { status: res.status, events: events(), comments, close: () => abort.abort() };
}
